package verify

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/rundir"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// want is what a scenario must produce: the verdict and, per named check,
// its status; cxOp, when set, must be among the failed check's
// counterexamples.
type want struct {
	verdict string
	exit    int
	checks  map[string]string // check -> status
	cxCheck string
	cxOp    int
	cxWhy   string // substring of that counterexample's why
	figure  map[string]string
	detail  map[string]string // check -> substring of its detail
}

func TestVerifyScenarios(t *testing.T) {
	const n = 200
	tests := []struct {
		name   string
		break_ func(t *testing.T, s *runSpec)
		want   want
	}{
		{
			name: "clean run holds",
			want: want{verdict: VerdictHeld, exit: 0, checks: map[string]string{
				CheckEffectsEqualOps: StatusHeld, CheckExactlyOncePerOp: StatusHeld, CheckRaceSingleWinner: StatusHeld,
				CheckKeyReuse422: StatusHeld, CheckRetryAfterHonoured: StatusHeld, CheckFullJitter: StatusHeld,
				CheckRelayCrashDeduped: StatusHeld, CheckOutboxDrained: StatusHeld, CheckDLQExact: StatusHeld,
			}, figure: map[string]string{
				CheckEffectsEqualOps:  "200 of 200 (ledger 200 of 200)",
				CheckRaceSingleWinner: "1 of 1 races with a single winner",
				CheckKeyReuse422:      "1 of 1 reuses got 422, none charged",
			}},
		},
		{
			name: "double charge in the ledger",
			break_: func(t *testing.T, s *runSpec) {
				s.setLedger("k-7", 2)
			},
			want: want{verdict: VerdictViolated, exit: 1, checks: map[string]string{
				CheckExactlyOncePerOp: StatusFailed, CheckEffectsEqualOps: StatusFailed,
			}, cxCheck: CheckExactlyOncePerOp, cxOp: 7, cxWhy: "applied 2 times"},
		},
		{
			name: "charge lost by the consumer",
			break_: func(t *testing.T, s *runSpec) {
				s.pages["consumer"] = page(map[string]float64{DefaultSideEffectMetric: n - 1, MetricInboxDuplicates: 1, MetricDLQMessages: 0})
				s.setLedger("k-42", 0)
			},
			// The inbox deduped the relay's repeat: a charge the consumer
			// lost is not the relay check's (it read failed before).
			want: want{verdict: VerdictViolated, exit: 1, checks: map[string]string{
				CheckEffectsEqualOps: StatusFailed, CheckExactlyOncePerOp: StatusFailed, CheckRelayCrashDeduped: StatusHeld,
			}, cxCheck: CheckExactlyOncePerOp, cxOp: 42, cxWhy: "lost", figure: map[string]string{
				CheckEffectsEqualOps: "199 of 200 (ledger 199 of 200)",
			}},
		},
		{
			name: "metrics count one effect short",
			break_: func(t *testing.T, s *runSpec) {
				s.pages["consumer"] = page(map[string]float64{DefaultSideEffectMetric: n - 1, MetricInboxDuplicates: 1, MetricDLQMessages: 0})
			},
			want: want{verdict: VerdictViolated, exit: 1, checks: map[string]string{
				CheckEffectsEqualOps: StatusFailed, CheckExactlyOncePerOp: StatusHeld,
			}},
		},
		{
			name: "race with two winners",
			break_: func(t *testing.T, s *runSpec) {
				a := s.findAttempt(t, 3, 1, 1)
				a.Outcome, a.Status, a.RetryAfterMS = rundir.OutcomeNew, 200, 0
				s.setLedger("k-3", 2)
			},
			want: want{verdict: VerdictViolated, exit: 1, checks: map[string]string{
				CheckRaceSingleWinner: StatusFailed, CheckExactlyOncePerOp: StatusFailed,
			}, cxCheck: CheckRaceSingleWinner, cxOp: 3, cxWhy: "more than one winner"},
		},
		{
			name: "key reuse answered 200",
			break_: func(t *testing.T, s *runSpec) {
				a := s.findAttempt(t, n, 0, 1)
				a.Outcome, a.Status = rundir.OutcomeNew, 200
				s.setLedger("k-0", 2)
			},
			want: want{verdict: VerdictViolated, exit: 1, checks: map[string]string{
				CheckKeyReuse422: StatusFailed,
			}, cxCheck: CheckKeyReuse422, cxOp: n, cxWhy: "not 422"},
		},
		{
			name: "retry sooner than Retry-After",
			break_: func(t *testing.T, s *runSpec) {
				s.findAttempt(t, 120, 0, 2).DelayMS = 40
			},
			want: want{verdict: VerdictViolated, exit: 1, checks: map[string]string{
				CheckRetryAfterHonoured: StatusFailed,
			}, cxCheck: CheckRetryAfterHonoured, cxOp: 120, cxWhy: "Retry-After 100 ms"},
		},
		{
			name: "a reconcile long after a Retry-After is not early",
			break_: func(t *testing.T, s *runSpec) {
				prev := s.findAttempt(t, 120, 0, 1)
				a := s.findAttempt(t, 120, 0, 2)
				a.DelayMS, a.DelayReason, a.CapMS = 0, rundir.ReasonReconcile, 0
				a.Start = prev.End.Add(5 * time.Second)
				a.End = a.Start.Add(time.Millisecond)
			},
			want: want{verdict: VerdictHeld, exit: 0, checks: map[string]string{CheckRetryAfterHonoured: StatusHeld}},
		},
		{
			name: "a retry the budget refused is not judged against Retry-After",
			break_: func(t *testing.T, s *runSpec) {
				first := s.findAttempt(t, 120, 0, 1)
				refused := *first
				refused.Attempt, refused.Status, refused.Outcome, refused.RetryAfterMS = 2, 0, rundir.OutcomeBudget, 0
				refused.DelayMS, refused.DelayReason = 0, rundir.ReasonRetryAfter
				s.findAttempt(t, 120, 0, 2).Attempt = 3
				i := slices.IndexFunc(s.attempts, func(a rundir.Attempt) bool { return a.Op == 120 && a.Attempt == 1 })
				s.attempts = slices.Insert(s.attempts, i+1, refused)
			},
			want: want{verdict: VerdictHeld, exit: 0, checks: map[string]string{CheckRetryAfterHonoured: StatusHeld}},
		},
		{
			name: "ledger effects under a key no operation used",
			break_: func(t *testing.T, s *runSpec) {
				s.ledger = append(s.ledger, rundir.LedgerRow{Merchant: "demo", Key: "stray", Effects: 1})
			},
			want: want{verdict: VerdictViolated, exit: 1, checks: map[string]string{
				CheckEffectsEqualOps: StatusFailed,
			}, cxCheck: CheckEffectsEqualOps, cxOp: -1, cxWhy: "a key no operation of the plan used"},
		},
		{
			name: "no plan and no ledger: the number of operations is unknown",
			break_: func(t *testing.T, s *runSpec) {
				s.plan, s.ledger = nil, nil
			},
			want: want{verdict: VerdictInconclusive, exit: 3, checks: map[string]string{
				CheckEffectsEqualOps: StatusInconclusive,
			}, figure: map[string]string{CheckEffectsEqualOps: "200 of 0"},
				detail: map[string]string{CheckEffectsEqualOps: "the number of logical operations is unknown"}},
		},
		{
			name: "neither side-effect metric nor ledger",
			break_: func(t *testing.T, s *runSpec) {
				delete(s.pages, "consumer")
				s.ledger = nil
			},
			want: want{verdict: VerdictInconclusive, exit: 3, checks: map[string]string{
				CheckEffectsEqualOps: StatusInconclusive,
			}, figure: map[string]string{CheckEffectsEqualOps: "? of 200"},
				detail: map[string]string{CheckEffectsEqualOps: "neither metrics nor ledger"}},
		},
		{
			name: "a race sender answered neither 409 nor replay",
			break_: func(t *testing.T, s *runSpec) {
				a := s.findAttempt(t, 3, 1, 1)
				a.Status, a.Outcome = 400, rundir.OutcomeRejected
			},
			want: want{verdict: VerdictViolated, exit: 1, checks: map[string]string{
				CheckRaceSingleWinner: StatusFailed,
			}, cxCheck: CheckRaceSingleWinner, cxOp: 3, cxWhy: "answers other than 409 or replay"},
		},
		{
			name: "no race sender won",
			break_: func(t *testing.T, s *runSpec) {
				for _, a := range []*rundir.Attempt{s.findAttempt(t, 3, 0, 1), s.findAttempt(t, 3, 1, 2)} {
					a.Status, a.Outcome, a.Replayed = 409, rundir.OutcomeConflict, false
				}
				s.setLedger("k-3", 0)
			},
			want: want{verdict: VerdictViolated, exit: 1, checks: map[string]string{
				CheckRaceSingleWinner: StatusFailed,
			}, cxCheck: CheckRaceSingleWinner, cxOp: 3, cxWhy: "no sender won"},
		},
		{
			name: "a race acknowledged but not in the ledger is exactly-once-per-op's",
			break_: func(t *testing.T, s *runSpec) {
				s.setLedger("k-3", 0)
			},
			want: want{verdict: VerdictViolated, exit: 1, checks: map[string]string{
				CheckRaceSingleWinner: StatusHeld, CheckExactlyOncePerOp: StatusFailed,
			}, detail: map[string]string{CheckRaceSingleWinner: "1 acknowledged but not in the ledger"}},
		},
		{
			name: "no jitter: every retry at the cap",
			break_: func(t *testing.T, s *runSpec) {
				for i := range s.attempts {
					if a := &s.attempts[i]; a.DelayReason == rundir.ReasonBackoff {
						a.DelayMS = a.CapMS
					}
				}
			},
			want: want{verdict: VerdictViolated, exit: 1, checks: map[string]string{
				CheckFullJitter: StatusFailed, CheckEffectsEqualOps: StatusHeld,
			}},
		},
		{
			// Without events.jsonl, no duplicate seen cannot rule out an
			// event applied twice (this case read failed before: a kill the
			// broker's dedup absorbed is no failure).
			name: "relay killed, no duplicate deduped, no events evidence",
			break_: func(t *testing.T, s *runSpec) {
				s.pages["consumer"] = page(map[string]float64{DefaultSideEffectMetric: n, MetricInboxDuplicates: 0, MetricDLQMessages: 0})
			},
			want: want{verdict: VerdictHeld, exit: 0, checks: map[string]string{
				CheckRelayCrashDeduped: StatusInconclusive, CheckEffectsEqualOps: StatusHeld,
			}},
		},
		{
			name: "relay killed, an event applied twice",
			break_: func(t *testing.T, s *runSpec) {
				s.pages["consumer"] = page(map[string]float64{DefaultSideEffectMetric: n + 1, MetricInboxDuplicates: 0, MetricDLQMessages: 0})
				s.setLedger("k-9", 2)
				s.events = []rundir.EventRow{{Event: "ev-9", Merchant: "demo", Key: "k-9", Applied: 2}}
			},
			want: want{verdict: VerdictViolated, exit: 1, checks: map[string]string{
				CheckRelayCrashDeduped: StatusFailed, CheckExactlyOncePerOp: StatusFailed, CheckEffectsEqualOps: StatusFailed,
			}, cxCheck: CheckExactlyOncePerOp, cxOp: 9, cxWhy: "the consumer applied a repeated event",
				figure: map[string]string{CheckRelayCrashDeduped: "1 events applied more than once, 0 repeats deduped, for 1 relay kills"}},
		},
		{
			name: "outbox not drained",
			break_: func(t *testing.T, s *runSpec) {
				s.pages["relay"] = page(map[string]float64{MetricOutboxPending: 3, MetricOutboxLag: 2.5})
			},
			want: want{verdict: VerdictViolated, exit: 1, checks: map[string]string{CheckOutboxDrained: StatusFailed},
				figure: map[string]string{CheckOutboxDrained: "pending 3, lag 2.5 s"}},
		},
		{
			name: "DLQ holds less than the poison injected",
			break_: func(t *testing.T, s *runSpec) {
				s.faults = append(s.faults, rundir.Fault{Time: t0.Add(5e9), Fault: "poison", Action: "inject", Target: "consumer", Count: 2})
				s.pages["consumer"] = page(map[string]float64{DefaultSideEffectMetric: n, MetricInboxDuplicates: 1, MetricDLQMessages: 1})
			},
			want: want{verdict: VerdictViolated, exit: 1, checks: map[string]string{CheckDLQExact: StatusFailed},
				figure: map[string]string{CheckDLQExact: "1 in the DLQ for 2 poison injected"}},
		},
		{
			name: "metrics missing is inconclusive",
			break_: func(t *testing.T, s *runSpec) {
				s.pages = nil
			},
			want: want{verdict: VerdictInconclusive, exit: 3, checks: map[string]string{
				CheckEffectsEqualOps: StatusInconclusive, CheckRelayCrashDeduped: StatusInconclusive, CheckOutboxDrained: StatusNothing,
			}},
		},
		{
			name: "ledger missing is inconclusive",
			break_: func(t *testing.T, s *runSpec) {
				s.ledger = nil
			},
			want: want{verdict: VerdictInconclusive, exit: 3, checks: map[string]string{
				CheckEffectsEqualOps: StatusInconclusive, CheckExactlyOncePerOp: StatusInconclusive,
			}},
		},
		{
			name: "no ledger still catches two new answers with distinct resource ids",
			break_: func(t *testing.T, s *runSpec) {
				s.ledger = nil
				s.findAttempt(t, 3, 0, 1).ChargeID = "ch-3"
				a := s.findAttempt(t, 3, 1, 1)
				a.Outcome, a.Status, a.ChargeID = rundir.OutcomeNew, 200, "ch-3-b"
			},
			want: want{verdict: VerdictViolated, exit: 1, checks: map[string]string{
				CheckExactlyOncePerOp: StatusFailed, CheckEffectsEqualOps: StatusInconclusive,
			}, cxCheck: CheckExactlyOncePerOp, cxOp: 3, cxWhy: "2 distinct resource ids or bodies (id ch-3, id ch-3-b): applied at least 2 times"},
		},
		{
			// Two `new` answers with neither a resource id nor a body: a
			// hint, not a double charge (the metrics count is exact).
			name: "no ledger: two new answers that cannot be told apart are not failed",
			break_: func(t *testing.T, s *runSpec) {
				s.ledger = nil
				a := s.findAttempt(t, 3, 1, 1)
				a.Outcome, a.Status = rundir.OutcomeNew, 200
			},
			want: want{verdict: VerdictInconclusive, exit: 3, checks: map[string]string{
				CheckExactlyOncePerOp: StatusInconclusive, CheckRaceSingleWinner: StatusInconclusive, CheckEffectsEqualOps: StatusInconclusive,
			}},
		},
		{
			name: "a target run with metrics only holds on them",
			break_: func(t *testing.T, s *runSpec) {
				s.ledger = nil
				s.pages = map[string]string{"target": page(map[string]float64{"shop_charges_applied_total": n})}
				s.sources = &rundir.Collected{Pages: map[string]string{"target": "http://127.0.0.1:1/metrics"}, SideEffectMetric: "shop_charges_applied_total"}
				s.faults = nil
			},
			want: want{verdict: VerdictHeld, exit: 0, checks: map[string]string{
				CheckEffectsEqualOps: StatusHeld, CheckExactlyOncePerOp: StatusInconclusive, CheckOutboxDrained: StatusNothing,
				CheckRelayCrashDeduped: StatusNothing, CheckDLQExact: StatusNothing,
			}, figure: map[string]string{CheckEffectsEqualOps: "200 of 200"}},
		},
		{
			name: "side effects from Prometheus answers",
			break_: func(t *testing.T, s *runSpec) {
				v, zero, one := float64(n), 0.0, 1.0
				s.pages = nil
				s.sources = &rundir.Collected{PrometheusURL: "http://127.0.0.1:1", SideEffectMetric: DefaultSideEffectMetric, Database: "postgres://x"}
				s.prom = &rundir.PromAnswers{Answers: map[string]rundir.PromAnswer{
					promSideEffects: {Value: &v}, promInboxDuplicates: {Value: &one}, promDLQ: {Value: &zero},
					promOutboxPending: {Value: &zero}, promOutboxLag: {Value: &zero},
				}}
			},
			want: want{verdict: VerdictHeld, exit: 0, checks: map[string]string{
				CheckEffectsEqualOps: StatusHeld, CheckRelayCrashDeduped: StatusHeld, CheckOutboxDrained: StatusHeld, CheckDLQExact: StatusHeld,
			}},
		},
		{
			name: "two-column ledger (key, effects)",
			break_: func(t *testing.T, s *runSpec) {
				for i := range s.ledger {
					s.ledger[i].Merchant = ""
				}
			},
			want: want{verdict: VerdictHeld, exit: 0, checks: map[string]string{CheckExactlyOncePerOp: StatusHeld, CheckKeyReuse422: StatusHeld}},
		},
		{
			name: "ledger effects under a key no op used",
			break_: func(t *testing.T, s *runSpec) {
				s.ledger = append(s.ledger, rundir.LedgerRow{Merchant: "demo", Key: "stranger", Effects: 1})
			},
			want: want{verdict: VerdictViolated, exit: 1, checks: map[string]string{CheckEffectsEqualOps: StatusFailed},
				cxCheck: CheckEffectsEqualOps, cxOp: -1, cxWhy: "no operation of the plan"},
		},
		{
			name: "definitely failed op applied",
			break_: func(t *testing.T, s *runSpec) {
				a := s.findAttempt(t, 160, 0, 1)
				a.Outcome, a.Status = rundir.OutcomeRejected, 400
				s.pages["consumer"] = page(map[string]float64{DefaultSideEffectMetric: n, MetricInboxDuplicates: 1, MetricDLQMessages: 0})
			},
			want: want{verdict: VerdictViolated, exit: 1, checks: map[string]string{CheckExactlyOncePerOp: StatusFailed},
				cxCheck: CheckExactlyOncePerOp, cxOp: 160, cxWhy: "definitely failed"},
		},
		{
			name: "nothing to check without races, reuses or faults",
			break_: func(t *testing.T, s *runSpec) {
				s.plan[3].Race, s.plan[3].Senders = false, 1
				s.plan = s.plan[:len(s.plan)-1]
				var keep []rundir.Attempt
				for _, a := range s.attempts {
					if a.Kind != rundir.KindReuse && !(a.Op == 3 && a.Sender == 1) {
						keep = append(keep, a)
					}
				}
				s.attempts = keep
				s.faults = nil
			},
			want: want{verdict: VerdictHeld, exit: 0, checks: map[string]string{
				CheckRaceSingleWinner: StatusNothing, CheckKeyReuse422: StatusNothing, CheckRelayCrashDeduped: StatusNothing,
			}, figure: map[string]string{CheckRaceSingleWinner: "0 races"}},
		},
		{
			name: "too few retries to judge jitter",
			break_: func(t *testing.T, s *runSpec) {
				var keep []rundir.Attempt
				for _, a := range s.attempts {
					if a.Attempt == 1 || a.Op < 15 || (a.Op >= 110 && a.Op < 120) {
						keep = append(keep, a)
					}
				}
				s.attempts = keep
			},
			want: want{verdict: VerdictHeld, exit: 0, checks: map[string]string{CheckFullJitter: StatusNothing}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := cleanRun(n)
			if tc.break_ != nil {
				tc.break_(t, s)
			}
			dir := s.write(t, t.TempDir())
			rep, err := Verify(context.Background(), dir, Options{NoHTML: true})
			if err != nil {
				t.Fatal(err)
			}
			var text bytes.Buffer
			if err := rep.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			t.Logf("\n%s", text.String())
			if rep.Verdict != tc.want.verdict || rep.ExitCode != tc.want.exit {
				t.Fatalf("verdict %s exit %d; want %s exit %d", rep.Verdict, rep.ExitCode, tc.want.verdict, tc.want.exit)
			}
			switch tc.want.exit {
			case 0:
				if rep.Err() != nil {
					t.Fatalf("Err() = %v for a held verdict", rep.Err())
				}
			case 1:
				if apperr.Code(rep.Err()) != apperr.EVIOLATED {
					t.Fatalf("Err() = %v; want EVIOLATED", rep.Err())
				}
			case 3:
				if apperr.Code(rep.Err()) != apperr.EINCONCLUSIVE {
					t.Fatalf("Err() = %v; want EINCONCLUSIVE", rep.Err())
				}
			}
			for name, status := range tc.want.checks {
				c := rep.Check(name)
				if c == nil || c.Status != status {
					t.Errorf("check %s = %+v; want status %s", name, c, status)
				}
				if c != nil && c.Held != (status == StatusHeld || status == StatusNothing) {
					t.Errorf("check %s held=%v with status %s", name, c.Held, c.Status)
				}
			}
			for name, fig := range tc.want.figure {
				if c := rep.Check(name); c == nil {
					t.Errorf("no check %s; want figure %q", name, fig)
				} else if c.Figure != fig {
					t.Errorf("check %s figure = %q; want %q", name, c.Figure, fig)
				}
			}
			for name, sub := range tc.want.detail {
				if c := rep.Check(name); c == nil || !strings.Contains(c.Detail, sub) {
					t.Errorf("check %s = %+v; want %q in its detail", name, c, sub)
				}
			}
			if tc.want.cxCheck != "" {
				c := rep.Check(tc.want.cxCheck)
				if c == nil {
					t.Fatalf("no check %s", tc.want.cxCheck)
				}
				found := false
				for _, x := range c.Counterexamples {
					if x.Op == tc.want.cxOp && strings.Contains(x.Why, tc.want.cxWhy) {
						found = true
					}
				}
				if !found {
					t.Errorf("check %s counterexamples %+v; want op %d with %q", c.Name, c.Counterexamples, tc.want.cxOp, tc.want.cxWhy)
				}
				if !strings.Contains(text.String(), "FAILED") || !strings.Contains(text.String(), tc.want.cxWhy) {
					t.Errorf("text report does not show the counterexample %q", tc.want.cxWhy)
				}
			}
			// The same directory reproduces the verdict from report.json.
			saved, err := ReadReport(filepath.Join(dir, rundir.ReportFile))
			if err != nil {
				t.Fatal(err)
			}
			if saved.Verdict != rep.Verdict || len(saved.Checks) != len(rep.Checks) {
				t.Fatalf("report.json verdict %s with %d checks; Verify returned %s", saved.Verdict, len(saved.Checks), rep.Verdict)
			}
		})
	}
}

func TestEveryCheckIsNamedOnce(t *testing.T) {
	dir := cleanRun(200).write(t, t.TempDir())
	rep, err := Verify(context.Background(), dir, Options{NoHTML: true})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{CheckEffectsEqualOps, CheckExactlyOncePerOp, CheckRaceSingleWinner, CheckKeyReuse422,
		CheckRetryAfterHonoured, CheckFullJitter, CheckRelayCrashDeduped, CheckOutboxDrained, CheckDLQExact, CheckBacklogPaced, CheckNoRetryStorm,
		CheckNoKeyStuck, CheckFaultsFired}
	if len(rep.Checks) != len(want) {
		t.Fatalf("%d checks; want %d", len(rep.Checks), len(want))
	}
	for i, c := range rep.Checks {
		if c.Name != want[i] {
			t.Errorf("check %d is %s; want %s", i, c.Name, want[i])
		}
		if c.Figure == "" {
			t.Errorf("check %s has no figure", c.Name)
		}
		if c.Status == StatusNothing && !strings.Contains(c.Detail, "nothing to check") {
			t.Errorf("check %s has nothing to check but does not say so: %q", c.Name, c.Detail)
		}
	}
}

func TestNoJitterGroupsAreSynchronised(t *testing.T) {
	tests := []struct {
		name    string
		delay   func(cap float64, i int) float64
		held    bool
		failsKS bool
	}{
		{"full jitter", nil, true, false},
		{"every retry at the cap", func(cap float64, _ int) float64 { return cap }, false, true},
		{"equal jitter (half the window)", func(cap float64, i int) float64 { return cap/2 + cap/2*float64(i%97)/97 }, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := cleanRun(200)
			if tc.delay != nil {
				for i := range s.attempts {
					if a := &s.attempts[i]; a.DelayReason == rundir.ReasonBackoff {
						a.DelayMS = tc.delay(a.CapMS, i)
					}
				}
			}
			rep, err := Verify(context.Background(), s.write(t, t.TempDir()), Options{NoHTML: true})
			if err != nil {
				t.Fatal(err)
			}
			c := rep.Check(CheckFullJitter)
			if c.Held != tc.held {
				t.Fatalf("full-jitter held=%v (%s); want %v", c.Held, c.Figure, tc.held)
			}
			for _, g := range rep.Jitter {
				if g.Reason != rundir.ReasonBackoff {
					continue
				}
				if tc.failsKS != (g.KS > g.KSCritical) {
					t.Errorf("attempt %d: KS %.3f vs critical %.3f; want failing=%v", g.Attempt, g.KS, g.KSCritical, tc.failsKS)
				}
				if !strings.Contains(c.Figure, "KS") || !strings.Contains(c.Figure, "slot") {
					t.Errorf("figure %q must print the KS statistic and the fullest slot", c.Figure)
				}
			}
		})
	}
}

func TestTranscriptSectionIsReplacedNotRepeated(t *testing.T) {
	dir := cleanRun(200).write(t, t.TempDir())
	prefix := "12:00:01 eat-response charge x100\n12:00:04 kill relay after-publish\n"
	if err := os.WriteFile(filepath.Join(dir, rundir.TranscriptFile), []byte(prefix), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := Verify(context.Background(), dir, Options{NoHTML: true}); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, rundir.TranscriptFile))
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	if !strings.HasPrefix(got, prefix) {
		t.Fatalf("attack's part of the transcript was not kept:\n%s", got)
	}
	if strings.Count(got, transcriptMarker) != 1 {
		t.Fatalf("verify's section appears %d times", strings.Count(got, transcriptMarker))
	}
	for _, w := range []string{"attempt 2: 100 retries, window 200 ms", "verdict: HELD", "full-jitter"} {
		if !strings.Contains(got, w) {
			t.Errorf("transcript lacks %q:\n%s", w, got)
		}
	}
}

func TestVerifyCreatesTranscriptWhenAbsent(t *testing.T) {
	dir := cleanRun(150).write(t, t.TempDir())
	if _, err := Verify(context.Background(), dir, Options{NoHTML: true}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, rundir.TranscriptFile)); err != nil || !bytes.HasPrefix(b, []byte(transcriptMarker)) {
		t.Fatalf("transcript = %q, %v", b, err)
	}
}

func TestVerifyUnreadableEvidenceIsInconclusive(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
	}{
		{"not a directory", func(t *testing.T, dir string) { os.RemoveAll(dir) }},
		{"malformed history", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, rundir.HistoryFile), []byte("{\"op\":1}\n{oops\n"), 0o644)
		}},
		{"malformed metrics page", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, rundir.MetricsDir, "consumer.prom"), []byte("paytest_x{ 1\n"), 0o644)
		}},
		{"malformed ledger", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, rundir.LedgerFile), []byte("[]\n"), 0o644)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := cleanRun(150).write(t, t.TempDir())
			tc.setup(t, dir)
			_, err := Verify(context.Background(), dir, Options{NoHTML: true})
			if apperr.Code(err) != apperr.EINCONCLUSIVE {
				t.Fatalf("err = %v; want EINCONCLUSIVE", err)
			}
		})
	}
}

func TestLiveWithoutPlanJudgesLedgerKeys(t *testing.T) {
	s := &runSpec{
		pages:  map[string]string{"consumer": page(map[string]float64{DefaultSideEffectMetric: 4})},
		ledger: []rundir.LedgerRow{{Merchant: "a", Key: "1", Effects: 1}, {Merchant: "a", Key: "2", Effects: 2}, {Merchant: "b", Key: "1", Effects: 1}},
	}
	rep, err := Verify(context.Background(), s.write(t, t.TempDir()), Options{NoHTML: true})
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Check(CheckExactlyOncePerOp)
	if rep.Verdict != VerdictViolated || c.Status != StatusFailed || len(c.Counterexamples) != 1 || c.Counterexamples[0].Key != "2" {
		t.Fatalf("verdict %s, %+v; want exactly-once-per-op failing on key a/2", rep.Verdict, c)
	}
	if rep.OpsSource != "ledger keys" || rep.Ops != 3 {
		t.Fatalf("ops %d from %q; want 3 from ledger keys", rep.Ops, rep.OpsSource)
	}
}

// TestGolden pins report.json and the text verdict of a clean and of a
// violated run. go test ./verify -run TestGolden -update rewrites them.
func TestGolden(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(s *runSpec)
	}{
		{"clean", nil},
		{"double-charge", func(s *runSpec) {
			s.setLedger("k-7", 2)
			s.setLedger("k-3", 2)
			s.run.Unsafe = []string{"no-idempotency"}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := cleanRun(200)
			if tc.break_ != nil {
				tc.break_(s)
			}
			dir := s.write(t, t.TempDir())
			rep, err := Verify(context.Background(), dir, Options{NoHTML: true})
			if err != nil {
				t.Fatal(err)
			}
			gotJSON, err := os.ReadFile(filepath.Join(dir, rundir.ReportFile))
			if err != nil {
				t.Fatal(err)
			}
			var gotText bytes.Buffer
			if err := rep.WriteText(&gotText); err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", tc.name+".report.json"), gotJSON)
			golden(t, filepath.Join("testdata", tc.name+".txt"), gotText.Bytes())
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output (run with -update if the change is intended):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func TestFaultCountsFollowTheJournal(t *testing.T) {
	s := cleanRun(150)
	at := t0.Add(time.Second)
	s.faults = []rundir.Fault{
		{Time: at, Fault: "kill", Action: "arm", Target: "relay", Detail: "crash at after-publish"},
		{Time: at, Fault: "kill", Action: "inject", Target: "relay", Count: 1},
		{Time: at, Fault: "kill", Action: "error", Target: "relay", Detail: "restart: boom"},
		{Time: at, Fault: "kill", Action: "stop", Target: "relay"},
		{Time: at, Fault: "eat-response", Action: "start", Target: "charge"},
		{Time: at, Fault: "eat-response", Action: "inject", Target: "charge", Count: 1},
		{Time: at, Fault: "eat-response", Action: "inject", Target: "charge", Count: 1},
		{Time: at, Fault: "eat-response", Action: "inject", Target: "charge", Count: 1},
		{Time: at, Fault: "eat-response", Action: "stop", Target: "charge"},
		{Time: at, Fault: "broker-cut", Action: "start", Target: "nats"},
		{Time: at, Fault: "broker-cut", Action: "stop", Target: "nats"},
		{Time: at, Fault: "poison", Action: "inject", Target: "broker", Count: 2},
	}
	s.pages["consumer"] = page(map[string]float64{DefaultSideEffectMetric: 150, MetricInboxDuplicates: 1, MetricDLQMessages: 2})
	rep, err := Verify(context.Background(), s.write(t, t.TempDir()), Options{NoHTML: true})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"kill": 1, "eat-response": 3, "broker-cut": 1, "poison": 2}
	if fmt.Sprint(rep.Faults) != fmt.Sprint(want) {
		t.Fatalf("faults %v; want %v", rep.Faults, want)
	}
	if c := rep.Check(CheckRelayCrashDeduped); c.Status != StatusHeld || c.Figure != "1 duplicates deduped for 1 relay kills" {
		t.Fatalf("relay-crash-deduped %+v", c)
	}
	if c := rep.Check(CheckDLQExact); c.Status != StatusHeld {
		t.Fatalf("dlq-exact %+v", c)
	}
}
