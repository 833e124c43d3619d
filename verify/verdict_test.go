package verify

import (
	"bytes"
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/promtext"
	"github.com/paytest/paytest/internal/rundir"
)

// These tests judge endpoints that behave differently from the reference
// system but correctly (the verdict must hold: no false alarm) and ones
// that break a property (it must fail, with exact counts: no miss).

// checkWant is one check's expected status and, when set, substrings its
// figure and its detail (or a counterexample's why) must contain.
type checkWant struct {
	status string
	figure string
	text   string // in the detail or in some counterexample's why
}

type verdictCase struct {
	name    string
	n       int // ops of cleanRun (default 200)
	build   func(t *testing.T, s *runSpec, dir string)
	opts    Options
	verdict string
	checks  map[string]checkWant
	// cxTotal, when set, is the counterexample total a check must report.
	cxTotal map[string]int
	inText  []string // the text report must contain each
}

func runVerdictCases(t *testing.T, cases []verdictCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.n
			if n == 0 {
				n = 200
			}
			s := cleanRun(n)
			dir := t.TempDir()
			if tc.build != nil {
				tc.build(t, s, dir)
			}
			s.write(t, dir)
			opts := tc.opts
			opts.NoHTML = true
			rep, err := Verify(context.Background(), dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			var text bytes.Buffer
			if err := rep.WriteText(&text); err != nil {
				t.Fatal(err)
			}
			if rep.Verdict != tc.verdict {
				t.Fatalf("verdict %s; want %s\n%s", rep.Verdict, tc.verdict, text.String())
			}
			for name, w := range tc.checks {
				c := rep.Check(name)
				if c == nil {
					t.Fatalf("no check %s", name)
				}
				if c.Status != w.status {
					t.Errorf("%s = %s (%s: %s); want %s", name, c.Status, c.Figure, c.Detail, w.status)
				}
				if w.figure != "" && !strings.Contains(c.Figure, w.figure) {
					t.Errorf("%s figure %q; want it to contain %q", name, c.Figure, w.figure)
				}
				if w.text != "" && !checkSays(c, w.text) {
					t.Errorf("%s detail %q and counterexamples %+v; want %q", name, c.Detail, c.Counterexamples, w.text)
				}
				if c.Evidence == "" {
					t.Errorf("%s names no evidence", name)
				}
			}
			for name, total := range tc.cxTotal {
				if c := rep.Check(name); c.CounterexamplesTotal != total {
					t.Errorf("%s counterexamples total %d; want %d: %+v", name, c.CounterexamplesTotal, total, c.Counterexamples)
				}
			}
			for _, w := range tc.inText {
				if !strings.Contains(text.String(), w) {
					t.Errorf("text report lacks %q:\n%s", w, text.String())
				}
			}
		})
	}
}

func checkSays(c *Check, s string) bool {
	if strings.Contains(c.Detail, s) {
		return true
	}
	for _, x := range c.Counterexamples {
		if strings.Contains(x.Why, s) {
			return true
		}
	}
	return false
}

// unmarkReplays makes the endpoint replay without a marker: every 2xx of
// an op carries its charge id "ch-<op>" and no Idempotent-Replayed, as
// middlewares that store and replay the response verbatim do.
func unmarkReplays(s *runSpec) {
	for i := range s.attempts {
		a := &s.attempts[i]
		if a.Status >= 200 && a.Status < 300 {
			a.Outcome, a.Replayed = rundir.OutcomeNew, false
			a.ChargeID = fmt.Sprintf("ch-%d", a.Op)
			a.BodySHA256 = fmt.Sprintf("%064x", a.Op)
		}
	}
}

// lockWaitRace makes op 3's race the way a per-key lock answers it: the
// second racer waits for the first and gets the same response, unmarked.
func lockWaitRace(s *runSpec) {
	var keep []rundir.Attempt
	for _, a := range s.attempts {
		if a.Op == 3 && a.Sender == 1 && a.Attempt > 1 {
			continue
		}
		if a.Op == 3 && a.Sender == 1 {
			a.Status, a.Outcome, a.RetryAfterMS = 200, rundir.OutcomeNew, 0
		}
		keep = append(keep, a)
	}
	s.attempts = keep
}

// secondCharge gives op its own second `new` answer with another id.
func (s *runSpec) secondCharge(op int, id string) {
	last := s.attempts[len(s.attempts)-1].End
	s.attempts = append(s.attempts, rundir.Attempt{
		Op: op, Kind: rundir.KindCharge, Sender: 0, CallSite: "charge", Merchant: "demo", Key: fmt.Sprintf("k-%d", op),
		Attempt: 9, DelayReason: rundir.ReasonReconcile, Status: 201, Outcome: rundir.OutcomeNew, ChargeID: id,
		BodySHA256: fmt.Sprintf("%064x", 1<<20+op), Start: last.Add(time.Millisecond), End: last.Add(2 * time.Millisecond),
	})
}

// envelope makes every 2xx of s the way {"data":..., "request_id": fresh}
// answers read without --id-field: no resource id, a body of its own each
// time. Ops 20 and 60 get a second 2xx (a replay after a lost answer), and
// op 3's racers both get one: 3 ops with 2xx answers that cannot be told
// apart.
func envelope(s *runSpec) {
	lockWaitRace(s)
	unmarkReplays(s)
	s.secondCharge(20, "")
	s.secondCharge(60, "")
	for i := range s.attempts {
		if a := &s.attempts[i]; a.Status/100 == 2 {
			a.ChargeID, a.BodySHA256 = "", fmt.Sprintf("%064x", 1<<30+i)
		}
	}
	s.ledger = nil
	// Collect was asked for metrics only (no --database-url).
	s.sources = &rundir.Collected{Pages: map[string]string{"consumer": "http://127.0.0.1:9/metrics", "relay": "http://127.0.0.1:9/metrics", "charge": "http://127.0.0.1:9/metrics"}}
}

func TestUnmarkedReplaysAndDistinctCharges(t *testing.T) {
	runVerdictCases(t, []verdictCase{
		{
			name:    "enveloped answers without --id-field, metrics exact: a hint, never a double charge",
			build:   func(t *testing.T, s *runSpec, _ string) { envelope(s) },
			verdict: VerdictHeld,
			checks: map[string]checkWant{
				CheckEffectsEqualOps:  {status: StatusHeld, figure: "200 of 200"},
				CheckExactlyOncePerOp: {status: StatusInconclusive, text: "3 ops got 2xx answers that cannot be told apart: set --id-field or give a ledger"},
				CheckRaceSingleWinner: {status: StatusInconclusive, figure: "0 of 1 races with a single winner, 1 that cannot be told", text: "1 races got 2xx answers that cannot be told apart"},
			},
			cxTotal: map[string]int{CheckExactlyOncePerOp: 0, CheckRaceSingleWinner: 0},
		},
		{
			name: "enveloped answers without --id-field, metrics show extra effects: effects-equal-ops fails",
			build: func(t *testing.T, s *runSpec, _ string) {
				envelope(s)
				s.pages["consumer"] = page(map[string]float64{DefaultSideEffectMetric: 202, MetricInboxDuplicates: 1})
			},
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckEffectsEqualOps:  {status: StatusFailed, figure: "202 of 200", text: "2 extra"},
				CheckExactlyOncePerOp: {status: StatusInconclusive, text: "3 ops got 2xx answers that cannot be told apart"},
			},
		},
		{
			name: "enveloped answers with distinct resource ids, no ledger: failed, exact count",
			build: func(t *testing.T, s *runSpec, _ string) {
				envelope(s)
				s.findAttempt(t, 20, 0, 3).ChargeID = "ch-20"
				s.findAttempt(t, 20, 0, 9).ChargeID = "ch-20-again"
			},
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckExactlyOncePerOp: {status: StatusFailed, figure: "1 of 200 ops wrong", text: "applied at least 2 times"},
			},
			cxTotal: map[string]int{CheckExactlyOncePerOp: 1},
		},
		{
			name: "unmarked replays, ledger one per key: held",
			build: func(t *testing.T, s *runSpec, _ string) {
				unmarkReplays(s)
				lockWaitRace(s)
				unmarkReplays(s)
			},
			verdict: VerdictHeld,
			checks: map[string]checkWant{
				CheckExactlyOncePerOp: {status: StatusHeld, figure: "0 of 200 ops wrong"},
				CheckRaceSingleWinner: {status: StatusHeld, figure: "1 of 1 races with a single winner"},
				CheckKeyReuse422:      {status: StatusHeld},
			},
			inText: []string{"[ledger]"},
		},
		{
			name: "unmarked replays without a ledger: one charge per id, not failed",
			build: func(t *testing.T, s *runSpec, _ string) {
				lockWaitRace(s)
				unmarkReplays(s)
				s.ledger = nil
			},
			verdict: VerdictInconclusive,
			checks: map[string]checkWant{
				CheckExactlyOncePerOp: {status: StatusInconclusive, text: "no op got two distinct charges"},
				CheckRaceSingleWinner: {status: StatusHeld, figure: "1 of 1 races with a single winner"},
			},
			inText: []string{"[client history: resource ids]"},
		},
		{
			name: "identical bodies without a resource id are one charge",
			build: func(t *testing.T, s *runSpec, _ string) {
				lockWaitRace(s)
				unmarkReplays(s)
				for i := range s.attempts {
					s.attempts[i].ChargeID = ""
				}
				s.ledger = nil
			},
			verdict: VerdictInconclusive,
			checks: map[string]checkWant{
				CheckExactlyOncePerOp: {status: StatusInconclusive},
				CheckRaceSingleWinner: {status: StatusHeld},
			},
		},
		{
			name: "two distinct ids for one key without a ledger: failed, exact count",
			build: func(t *testing.T, s *runSpec, _ string) {
				unmarkReplays(s)
				s.ledger = nil
				for _, op := range []int{20, 60, 170} {
					s.secondCharge(op, fmt.Sprintf("ch-%d-again", op))
				}
			},
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckExactlyOncePerOp: {status: StatusFailed, figure: "3 of 200 ops wrong", text: "2 distinct resource ids or bodies"},
			},
			cxTotal: map[string]int{CheckExactlyOncePerOp: 3},
		},
		{
			name: "two distinct ids and a ledger of two: failed",
			build: func(t *testing.T, s *runSpec, _ string) {
				unmarkReplays(s)
				s.secondCharge(170, "ch-170-again")
				s.setLedger("k-170", 2)
				s.pages["consumer"] = page(map[string]float64{DefaultSideEffectMetric: 201, MetricInboxDuplicates: 1})
			},
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckExactlyOncePerOp: {status: StatusFailed, figure: "1 of 200 ops wrong", text: "applied 2 times"},
				CheckEffectsEqualOps:  {status: StatusFailed, text: "1 extra"},
			},
			cxTotal: map[string]int{CheckExactlyOncePerOp: 1},
		},
		{
			name: "the ledger decides: two unmarked 2xx with distinct ids, ledger one: held",
			build: func(t *testing.T, s *runSpec, _ string) {
				unmarkReplays(s)
				s.secondCharge(170, "ch-170-again")
			},
			verdict: VerdictHeld,
			checks: map[string]checkWant{CheckExactlyOncePerOp: {status: StatusHeld,
				text: "1 ops got 2xx answers with distinct resource ids or bodies but hold one ledger effect each"}},
		},
		{
			name: "race with several distinct winners without a ledger: failed",
			build: func(t *testing.T, s *runSpec, _ string) {
				lockWaitRace(s)
				unmarkReplays(s)
				s.findAttempt(t, 3, 1, 1).ChargeID = "ch-3-b"
				s.ledger = nil
			},
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckRaceSingleWinner: {status: StatusFailed, figure: "0 of 1 races", text: "more than one winner"},
				CheckExactlyOncePerOp: {status: StatusFailed, figure: "1 of 200 ops wrong"},
			},
		},
		{
			name: "a marked replay carrying another resource id is another winner",
			build: func(t *testing.T, s *runSpec, _ string) {
				unmarkReplays(s)
				a := s.findAttempt(t, 3, 1, 2)
				a.Replayed, a.Outcome, a.ChargeID = true, rundir.OutcomeReplay, "ch-3-b"
				s.ledger = nil
			},
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckRaceSingleWinner: {status: StatusFailed, text: "2 distinct resource ids or bodies (id ch-3, id ch-3-b)"},
			},
		},
		{
			name: "a marked replay whose body differs (no resource id) is no second charge",
			build: func(t *testing.T, s *runSpec, _ string) {
				unmarkReplays(s)
				for i := range s.attempts {
					s.attempts[i].ChargeID = ""
				}
				a := s.findAttempt(t, 3, 1, 2)
				a.Replayed, a.Outcome, a.BodySHA256 = true, rundir.OutcomeReplay, strings.Repeat("e", 64)
				s.ledger = nil
			},
			verdict: VerdictInconclusive,
			checks: map[string]checkWant{
				CheckRaceSingleWinner: {status: StatusHeld, figure: "1 of 1 races with a single winner"},
				CheckExactlyOncePerOp: {status: StatusInconclusive},
			},
		},
		{
			name: "race with a ledger of two: failed even with one id seen",
			build: func(t *testing.T, s *runSpec, _ string) {
				lockWaitRace(s)
				unmarkReplays(s)
				s.setLedger("k-3", 2)
			},
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckRaceSingleWinner: {status: StatusFailed, text: "the ledger holds 2 effects for the race"},
			},
		},
		{
			// The consumer applied the winner's event twice (its inbox let
			// a republish through): one winner, and the double apply is
			// exactly-once-per-op's to report, naming the consumer.
			name: "race whose one charge the consumer applied twice: a single winner",
			build: func(t *testing.T, s *runSpec, _ string) {
				lockWaitRace(s)
				unmarkReplays(s)
				s.setLedger("k-3", 2)
				s.events = []rundir.EventRow{{Event: "0b7e4f7c-0000-4000-8000-000000000003", Merchant: "demo", Key: "k-3", Applied: 2}}
			},
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckRaceSingleWinner: {status: StatusHeld, figure: "1 of 1 races with a single winner", text: "1 events of race keys the consumer applied again are not counted as winners"},
				CheckExactlyOncePerOp: {status: StatusFailed, text: "the consumer applied a repeated event, not a second charge"},
			},
		},
		{
			name: "a 2xx whose body was cut off is indeterminate, not acknowledged",
			build: func(t *testing.T, s *runSpec, _ string) {
				a := s.findAttempt(t, 170, 0, 1)
				a.Outcome, a.Error = rundir.OutcomeNetwork, "unexpected EOF reading the body"
				s.setLedger("k-170", 0)
				s.pages["consumer"] = page(map[string]float64{DefaultSideEffectMetric: 199, MetricInboxDuplicates: 1})
			},
			// The charge never landed: effects-equal-ops counts it lost,
			// but the op itself was indeterminate (at most once): held.
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckExactlyOncePerOp: {status: StatusHeld, figure: "1 indeterminate"},
				CheckEffectsEqualOps:  {status: StatusFailed, text: "1 lost"},
			},
		},
	})
}

// timelinePage writes one snapshot of a page at t0+ms.
func timelinePage(t *testing.T, dir, name string, ms int, text string) {
	t.Helper()
	p := rundir.TimelinePath(dir, name, t0.Add(time.Duration(ms)*time.Millisecond))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// consumerTimeline writes the consumer's side effects every 250 ms, each
// value a snapshot, and its final page.
func consumerTimeline(t *testing.T, s *runSpec, dir string, values []float64, final float64) {
	t.Helper()
	for i, v := range values {
		// A process's own counters (go_memstats_*) reset with it too: they
		// are summed but not listed in the report.
		timelinePage(t, dir, "consumer", i*250, page(map[string]float64{DefaultSideEffectMetric: v, MetricInboxDuplicates: 0, "go_memstats_frees_total": v * 10}))
	}
	s.pages["consumer"] = page(map[string]float64{DefaultSideEffectMetric: final, MetricInboxDuplicates: 1, MetricDLQMessages: 0})
}

func TestCountersSummedAcrossResets(t *testing.T) {
	// The consumer restarts after 110 effects; its counter starts again
	// at 0 and reads 36 at the next snapshot.
	restart := []float64{0, 40, 80, 110, 36, 100, 150}
	runVerdictCases(t, []verdictCase{
		{
			name: "a restarted consumer: 110 -> 36 still gives 300 of 300",
			n:    300,
			build: func(t *testing.T, s *runSpec, dir string) {
				consumerTimeline(t, s, dir, restart, 190)
			},
			verdict: VerdictHeld,
			checks: map[string]checkWant{
				CheckEffectsEqualOps: {status: StatusHeld, figure: "300 of 300 (ledger 300 of 300)", text: "summed across 1 counter reset"},
			},
			inText: []string{"counter reset: consumer at 12:00:01.000: " + DefaultSideEffectMetric + " 110 -> 36 (summed across it)"},
		},
		{
			name: "increments lost with the process, ledger exact: held",
			n:    300,
			build: func(t *testing.T, s *runSpec, dir string) {
				consumerTimeline(t, s, dir, restart, 187)
			},
			verdict: VerdictHeld,
			checks: map[string]checkWant{
				CheckEffectsEqualOps: {status: StatusHeld, figure: "297 of 300 (ledger 300 of 300); 3 never scraped before 1 counter reset", text: "which died with it; the ledger holds 300"},
			},
		},
		{
			name: "increments lost with the process, no ledger: inconclusive",
			n:    300,
			build: func(t *testing.T, s *runSpec, dir string) {
				consumerTimeline(t, s, dir, restart, 187)
				s.ledger = nil
			},
			verdict: VerdictInconclusive,
			checks: map[string]checkWant{
				CheckEffectsEqualOps: {status: StatusInconclusive, figure: "297 of 300", text: "the count is a lower bound"},
			},
		},
		{
			name: "a reset and an event applied twice: the ledger's extra is the failure, the metric's shortfall is not called lost",
			n:    300,
			build: func(t *testing.T, s *runSpec, dir string) {
				consumerTimeline(t, s, dir, restart, 179)
				s.setLedger("k-148", 2)
			},
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckEffectsEqualOps:  {status: StatusFailed, figure: "289 of 300 (ledger 301 of 300)", text: "the ledger holds 301 effects for 300 logical charges (1 extra); metrics count 289 of 300"},
				CheckExactlyOncePerOp: {status: StatusFailed, figure: "1 of 300 ops wrong"},
			},
		},
		{
			// The counter would read the ledger's 165 had every increment
			// been scraped: 20 were not, whatever the plan says.
			name: "a reset and double charges: never scraped counts from the ledger, not the plan",
			n:    150,
			build: func(t *testing.T, s *runSpec, dir string) {
				consumerTimeline(t, s, dir, []float64{0, 40, 80, 110, 20}, 35)
				for i := 10; i < 25; i++ {
					s.setLedger(fmt.Sprintf("k-%d", i), 2)
				}
			},
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckEffectsEqualOps: {status: StatusFailed, figure: "145 of 150 (ledger 165 of 150); 20 never scraped before 1 counter reset", text: "the 20 short are increments"},
			},
		},
		{
			name: "a reset and real lost effects: failed with the exact count",
			n:    300,
			build: func(t *testing.T, s *runSpec, dir string) {
				consumerTimeline(t, s, dir, restart, 185)
				for _, k := range []string{"k-160", "k-161", "k-162", "k-163", "k-164"} {
					s.setLedger(k, 0)
				}
			},
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckEffectsEqualOps:  {status: StatusFailed, figure: "295 of 300 (ledger 295 of 300)", text: "5 lost"},
				CheckExactlyOncePerOp: {status: StatusFailed, text: "acknowledged (2xx) but not in the ledger: lost"},
			},
			cxTotal: map[string]int{CheckExactlyOncePerOp: 5},
		},
		{
			// A process may die with many unscraped increments (one that
			// crashes soon after a scrape): a count after a reset is a lower
			// bound, never proof of a loss.
			name: "a reset and many missing, no ledger: inconclusive, not lost",
			n:    300,
			build: func(t *testing.T, s *runSpec, dir string) {
				consumerTimeline(t, s, dir, []float64{0, 40, 80, 110, 36, 60}, 90)
				s.ledger = nil
			},
			verdict: VerdictInconclusive,
			checks: map[string]checkWant{
				CheckEffectsEqualOps: {status: StatusInconclusive, figure: "200 of 300", text: "the 100 short cannot be told from lost effects"},
			},
		},
		{
			name: "a reset and more effects than charges, no ledger: failed",
			n:    300,
			build: func(t *testing.T, s *runSpec, dir string) {
				consumerTimeline(t, s, dir, restart, 195)
				s.ledger = nil
			},
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckEffectsEqualOps: {status: StatusFailed, figure: "305 of 300", text: "5 extra"},
			},
		},
		{
			name: "without a timeline the last page is all there is, and the report says so",
			n:    300,
			build: func(t *testing.T, s *runSpec, dir string) {
				s.pages["consumer"] = page(map[string]float64{DefaultSideEffectMetric: 190, MetricInboxDuplicates: 1})
			},
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckEffectsEqualOps: {status: StatusFailed, figure: "190 of 300", text: "last page only"},
			},
		},
		{
			// The crash that died 180 ms after its only scrape (0) with 50
			// effects applied: the start time shows the restart.
			name: "a process that died between its first scrape and its second, ledger exact",
			n:    300,
			build: func(t *testing.T, s *runSpec, dir string) {
				timelinePage(t, dir, "consumer", 0, page(map[string]float64{DefaultSideEffectMetric: 0, metricProcessStart: 1000}))
				timelinePage(t, dir, "consumer", 250, page(map[string]float64{DefaultSideEffectMetric: 0, metricProcessStart: 2000}))
				s.pages["consumer"] = page(map[string]float64{DefaultSideEffectMetric: 250, MetricInboxDuplicates: 1, metricProcessStart: 2000})
			},
			verdict: VerdictHeld,
			checks: map[string]checkWant{
				CheckEffectsEqualOps: {status: StatusHeld, figure: "250 of 300 (ledger 300 of 300); 50 never scraped before 1 counter reset"},
			},
			inText: []string{"counter reset: consumer at 12:00:00.250: " + DefaultSideEffectMetric + " 0 -> 0"},
		},
		{
			name: "a restart seen by the process start time, the counter past its old value",
			n:    300,
			build: func(t *testing.T, s *runSpec, dir string) {
				for i, v := range []float64{40, 80, 100, 160} {
					start := 1000.0
					if i >= 2 {
						start = 2000
					}
					timelinePage(t, dir, "consumer", i*250, page(map[string]float64{DefaultSideEffectMetric: v, metricProcessStart: start}))
				}
				s.pages["consumer"] = page(map[string]float64{DefaultSideEffectMetric: 220, MetricInboxDuplicates: 1, metricProcessStart: 2000})
			},
			verdict: VerdictHeld,
			checks: map[string]checkWant{
				CheckEffectsEqualOps: {status: StatusHeld, figure: "300 of 300"},
			},
		},
		{
			name: "per series: one shard resets, the other does not",
			n:    300,
			build: func(t *testing.T, s *runSpec, dir string) {
				series := func(a, b float64) string {
					return fmt.Sprintf("# TYPE %[1]s counter\n%[1]s{shard=\"a\"} %[2]g\n%[1]s{shard=\"b\"} %[3]g\n", DefaultSideEffectMetric, a, b)
				}
				timelinePage(t, dir, "consumer", 0, series(10, 10))
				timelinePage(t, dir, "consumer", 250, series(60, 50))
				timelinePage(t, dir, "consumer", 500, series(100, 10))
				s.pages["consumer"] = series(150, 100) + page(map[string]float64{MetricInboxDuplicates: 1})
			},
			verdict: VerdictHeld,
			checks: map[string]checkWant{
				CheckEffectsEqualOps: {status: StatusHeld, figure: "300 of 300"},
			},
			inText: []string{`consumer at 12:00:00.500: ` + DefaultSideEffectMetric + `{shard="b"} 50 -> 10`},
		},
		{
			name: "the DLQ and inbox counters are summed across resets too; gauges are not",
			build: func(t *testing.T, s *runSpec, dir string) {
				s.faults = append(s.faults, rundir.Fault{Time: t0.Add(5 * time.Second), Fault: "poison", Action: "inject", Target: "broker", Count: 3})
				timelinePage(t, dir, "consumer", 0, page(map[string]float64{DefaultSideEffectMetric: 150, MetricDLQMessages: 2, MetricInboxDuplicates: 1}))
				timelinePage(t, dir, "relay", 0, page(map[string]float64{MetricOutboxPending: 7}))
				s.pages["consumer"] = page(map[string]float64{DefaultSideEffectMetric: 50, MetricDLQMessages: 1, MetricInboxDuplicates: 0})
			},
			verdict: VerdictHeld,
			checks: map[string]checkWant{
				CheckEffectsEqualOps:   {status: StatusHeld, figure: "200 of 200"},
				CheckDLQExact:          {status: StatusHeld, figure: "3 in the DLQ for 3 poison injected"},
				CheckRelayCrashDeduped: {status: StatusHeld, figure: "1 duplicates deduped"},
				CheckOutboxDrained:     {status: StatusHeld, figure: "pending 0"},
			},
		},
	})
}

func TestResetsAreListedInReportJSON(t *testing.T) {
	s := cleanRun(300)
	dir := t.TempDir()
	consumerTimeline(t, s, dir, []float64{0, 40, 80, 110, 36, 100, 150}, 190)
	s.write(t, dir)
	if _, err := Verify(context.Background(), dir, Options{NoHTML: true}); err != nil {
		t.Fatal(err)
	}
	rep, err := ReadReport(filepath.Join(dir, rundir.ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	want := CounterReset{Page: "consumer", Metric: DefaultSideEffectMetric, Time: t0.Add(time.Second), Before: 110, After: 36}
	if len(rep.CounterResets) != 1 || rep.CounterResets[0] != want {
		t.Fatalf("counter resets %+v; want [%+v]", rep.CounterResets, want)
	}
	if !strings.HasPrefix(rep.CountersFrom, "timeline") || rep.SideEffects != 300 {
		t.Fatalf("counters from %q, side effects %d; want timeline, 300", rep.CountersFrom, rep.SideEffects)
	}
}

// targetRun makes s a run against a team's endpoint: the plan's merchant is
// "target", the ledger's the endpoint's own names.
func targetRun(s *runSpec, ledgerMerchant string) {
	s.run.Target = "http://127.0.0.1:9/charges"
	for i := range s.plan {
		s.plan[i].Merchant = "target"
	}
	for i := range s.attempts {
		s.attempts[i].Merchant = "target"
	}
	for i := range s.ledger {
		s.ledger[i].Merchant = ledgerMerchant
	}
	s.faults = nil
	s.pages = map[string]string{"target": page(map[string]float64{"shop_charges_total": float64(len(s.ledger))})}
	s.sources = &rundir.Collected{Pages: map[string]string{"target": "http://127.0.0.1:9/metrics"}, SideEffectMetric: "shop_charges_total", Database: "postgres://x"}
}

// withAmounts turns s's ledger into the four-column form: each key's
// effects at its op's amount.
func withAmounts(s *runSpec) {
	amount := map[string]int64{}
	for _, op := range s.plan {
		if op.Kind == rundir.KindCharge {
			amount[op.Key] = op.Amount
		}
	}
	for i := range s.ledger {
		a := amount[s.ledger[i].Key]
		s.ledger[i].Amount = &a
	}
}

func TestLedgerQueryForms(t *testing.T) {
	runVerdictCases(t, []verdictCase{
		{
			name:    "a target's three-column ledger names its own merchants: keys match whatever it says",
			build:   func(t *testing.T, s *runSpec, _ string) { targetRun(s, "acct_1Nx") },
			verdict: VerdictHeld,
			checks: map[string]checkWant{
				CheckExactlyOncePerOp: {status: StatusHeld, figure: "0 of 200 ops wrong"},
				CheckEffectsEqualOps:  {status: StatusHeld, figure: "200 of 200 (ledger 200 of 200)"},
				CheckKeyReuse422:      {status: StatusHeld},
			},
		},
		{
			name: "a target's three-column ledger still catches a double charge",
			build: func(t *testing.T, s *runSpec, _ string) {
				targetRun(s, "acct_1Nx")
				s.setLedger("k-33", 2)
			},
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckExactlyOncePerOp: {status: StatusFailed, figure: "1 of 200 ops wrong", text: "applied 2 times"},
			},
			cxTotal: map[string]int{CheckExactlyOncePerOp: 1},
		},
		{
			name:    "a target's two-column ledger",
			build:   func(t *testing.T, s *runSpec, _ string) { targetRun(s, "") },
			verdict: VerdictHeld,
			checks:  map[string]checkWant{CheckExactlyOncePerOp: {status: StatusHeld}},
		},
		{
			name: "four columns: a reuse charged at its own amount fails the reuse, not its original",
			build: func(t *testing.T, s *runSpec, _ string) {
				withAmounts(s)
				reuse := s.plan[len(s.plan)-1]
				amt := reuse.Amount
				s.ledger = append(s.ledger, rundir.LedgerRow{Merchant: "demo", Key: reuse.Key, Amount: &amt, Effects: 1})
			},
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckKeyReuse422:      {status: StatusFailed, text: "the ledger holds 1 effects at the reuse's amount 999"},
				CheckExactlyOncePerOp: {status: StatusHeld},
			},
		},
		{
			name: "four columns: a double charge of the original is not its reuse's",
			build: func(t *testing.T, s *runSpec, _ string) {
				s.setLedger("k-0", 2)
				withAmounts(s)
			},
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckKeyReuse422:      {status: StatusHeld},
				CheckExactlyOncePerOp: {status: StatusFailed, text: "applied 2 times"},
			},
		},
	})
}

func TestKeyReuseStatuses(t *testing.T) {
	const reuseOp = 200
	answer := func(status int, outcome string) func(t *testing.T, s *runSpec, _ string) {
		return func(t *testing.T, s *runSpec, _ string) {
			a := s.findAttempt(t, reuseOp, 0, 1)
			a.Status, a.Outcome = status, outcome
		}
	}
	runVerdictCases(t, []verdictCase{
		{
			name:    "400 undeclared: the counterexample names it",
			build:   answer(400, rundir.OutcomeRejected),
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckKeyReuse422: {status: StatusFailed, text: "got 400, not 422; declare it with --reuse-status 400"},
			},
			cxTotal: map[string]int{CheckKeyReuse422: 1},
		},
		{
			name:    "400 declared with Options.ReuseStatuses",
			build:   answer(400, rundir.OutcomeRejected),
			opts:    Options{ReuseStatuses: []int{400}},
			verdict: VerdictHeld,
			checks:  map[string]checkWant{CheckKeyReuse422: {status: StatusHeld, figure: "1 of 1 reuses got 400, none charged"}},
		},
		{
			name: "417 declared in run.yaml (the client labelled it mismatch)",
			build: func(t *testing.T, s *runSpec, dir string) {
				answer(417, rundir.OutcomeMismatch)(t, s, dir)
				s.run.ReuseStatuses = []int{409, 417}
			},
			verdict: VerdictHeld,
			checks:  map[string]checkWant{CheckKeyReuse422: {status: StatusHeld, figure: "got 409 or 417"}},
		},
		{
			name:    "409 undeclared",
			build:   answer(409, rundir.OutcomeConflict),
			verdict: VerdictViolated,
			checks:  map[string]checkWant{CheckKeyReuse422: {status: StatusFailed, text: "got 409, not 422"}},
		},
		{
			name: "a 2xx with a new resource id: charged",
			build: func(t *testing.T, s *runSpec, dir string) {
				unmarkReplays(s)
				a := s.findAttempt(t, reuseOp, 0, 1)
				a.Status, a.Outcome, a.ChargeID = 201, rundir.OutcomeNew, "ch-reuse"
			},
			verdict: VerdictViolated,
			checks:  map[string]checkWant{CheckKeyReuse422: {status: StatusFailed, text: "a 2xx with a new charge (id ch-reuse), not 422"}},
		},
		{
			name: "a per-key ledger of two and a reuse charged: the reuse's, not the original's",
			build: func(t *testing.T, s *runSpec, dir string) {
				unmarkReplays(s)
				a := s.findAttempt(t, reuseOp, 0, 1)
				a.Status, a.Outcome, a.ChargeID = 201, rundir.OutcomeNew, "ch-reuse"
				s.setLedger("k-0", 2)
			},
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckKeyReuse422:      {status: StatusFailed, text: "the changed body was charged"},
				CheckExactlyOncePerOp: {status: StatusHeld},
				CheckEffectsEqualOps:  {status: StatusFailed, text: "1 extra"},
			},
		},
		{
			// The endpoint ignored the changed body: no second charge (the
			// money checks hold), but the reuse was acknowledged.
			name: "a 2xx replaying the original's charge: key-reuse-422 fails, the money checks hold",
			build: func(t *testing.T, s *runSpec, dir string) {
				unmarkReplays(s)
				a := s.findAttempt(t, reuseOp, 0, 1)
				a.Status, a.Outcome, a.ChargeID = 200, rundir.OutcomeNew, "ch-0"
			},
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckKeyReuse422:      {status: StatusFailed, figure: "0 of 1 reuses got 422", text: "answered 2xx replaying the original op's charge ch-0: the changed body was acknowledged, not refused with 422 (no second charge)"},
				CheckEffectsEqualOps:  {status: StatusHeld, figure: "200 of 200 (ledger 200 of 200)"},
				CheckExactlyOncePerOp: {status: StatusHeld},
			},
			cxTotal: map[string]int{CheckKeyReuse422: 1},
		},
		{
			name: "a marked replay of the original's body, no ledger: key-reuse-422 fails",
			build: func(t *testing.T, s *runSpec, dir string) {
				a := s.findAttempt(t, reuseOp, 0, 1)
				a.Status, a.Outcome, a.Replayed = 200, rundir.OutcomeReplay, true
				s.ledger = nil
			},
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckKeyReuse422: {status: StatusFailed, text: "answered 2xx replaying the original op's charge: the changed body was acknowledged"},
			},
			cxTotal: map[string]int{CheckKeyReuse422: 1},
		},
		{
			// The reuse's first answer was lost: a per-key count cannot say
			// whether its second effect is the original's or the reuse's.
			name: "a per-key ledger of two, the reuse's first answer lost: the original or its reuse",
			build: func(t *testing.T, s *runSpec, _ string) {
				s.setLedger("k-0", 2)
				lost := *s.findAttempt(t, reuseOp, 0, 1)
				lost.Status, lost.Outcome = 0, rundir.OutcomeTimeout
				a := s.findAttempt(t, reuseOp, 0, 1)
				a.Attempt, a.Start, a.End = 2, a.Start.Add(5*time.Millisecond), a.End.Add(5*time.Millisecond)
				s.attempts = append(s.attempts, lost)
			},
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckExactlyOncePerOp: {status: StatusFailed, text: "acknowledged (2xx) and its key holds 2 effects: op 0 or its reuse op 200 (a two-column ledger counts per key; a ledger query returning merchant, key, amount, count attributes them per amount)"},
				CheckKeyReuse422:      {status: StatusHeld, text: "1 reuses were rejected after attempts whose answers were lost"},
			},
			cxTotal: map[string]int{CheckExactlyOncePerOp: 1},
		},
		{
			name: "four columns: the reuse's first answer lost, the ledger attributes the original's double charge",
			build: func(t *testing.T, s *runSpec, _ string) {
				s.setLedger("k-0", 2)
				withAmounts(s)
				lost := *s.findAttempt(t, reuseOp, 0, 1)
				lost.Status, lost.Outcome = 0, rundir.OutcomeTimeout
				s.findAttempt(t, reuseOp, 0, 1).Attempt = 2
				s.attempts = append(s.attempts, lost)
			},
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckExactlyOncePerOp: {status: StatusFailed, text: "acknowledged (2xx) and applied 2 times"},
				CheckKeyReuse422:      {status: StatusHeld},
			},
			cxTotal: map[string]int{CheckExactlyOncePerOp: 1},
		},
		{
			name:    "a per-key ledger of two with the reuse rejected: the original's double charge",
			build:   func(t *testing.T, s *runSpec, _ string) { s.setLedger("k-0", 2) },
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckKeyReuse422:      {status: StatusHeld, text: "that is the original's"},
				CheckExactlyOncePerOp: {status: StatusFailed, text: "acknowledged (2xx) and applied 2 times"},
			},
			cxTotal: map[string]int{CheckExactlyOncePerOp: 1},
		},
	})
}

func TestRelayCrashJudgesItsOwnEvidence(t *testing.T) {
	pages := func(dups, published, created float64) func(s *runSpec) {
		return func(s *runSpec) {
			s.pages["consumer"] = page(map[string]float64{DefaultSideEffectMetric: 200, MetricInboxDuplicates: dups, MetricDLQMessages: 0})
			s.pages["relay"] = page(map[string]float64{MetricOutboxPending: 0, MetricOutboxLag: 0, MetricRelayPublished: published})
			s.pages["charge"] = page(map[string]float64{MetricChargesCreated: created})
		}
	}
	runVerdictCases(t, []verdictCase{
		{
			name: "(a) the broker's publish dedup absorbed the republish",
			build: func(t *testing.T, s *runSpec, _ string) {
				pages(0, 202, 200)(s)
				s.events = []rundir.EventRow{}
			},
			verdict: VerdictHeld,
			checks: map[string]checkWant{
				CheckRelayCrashDeduped: {status: StatusHeld, figure: "no repeat reached the consumer", text: "at least 2 republished), and the broker's publish dedup absorbed them"},
			},
			inText: []string{"[ledger: events applied]"},
		},
		{
			name: "(a) the kill hit no batch in flight",
			build: func(t *testing.T, s *runSpec, _ string) {
				pages(0, 200, 200)(s)
				s.events = []rundir.EventRow{}
			},
			verdict: VerdictHeld,
			checks:  map[string]checkWant{CheckRelayCrashDeduped: {status: StatusHeld, text: "or the kill hit no batch in flight; the relay's published counter (200 for 200 charges)"}},
		},
		{
			name: "(b) repeats reached the consumer and the inbox deduped them",
			build: func(t *testing.T, s *runSpec, _ string) {
				pages(3, 203, 200)(s)
				s.events = []rundir.EventRow{}
			},
			verdict: VerdictHeld,
			checks: map[string]checkWant{
				CheckRelayCrashDeduped: {status: StatusHeld, figure: "3 duplicates deduped for 1 relay kills, no event applied twice"},
			},
		},
		{
			name: "the charge service double-charges: not the relay's failure",
			build: func(t *testing.T, s *runSpec, _ string) {
				pages(345, 545, 400)(s)
				s.run.Unsafe = []string{"no-idempotency"}
				s.pages["consumer"] = page(map[string]float64{DefaultSideEffectMetric: 203, MetricInboxDuplicates: 345})
				for _, k := range []string{"k-20", "k-21", "k-22"} {
					s.setLedger(k, 2)
				}
				s.events = []rundir.EventRow{}
			},
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckRelayCrashDeduped: {status: StatusHeld},
				CheckExactlyOncePerOp:  {status: StatusFailed, figure: "3 of 200 ops wrong"},
				CheckEffectsEqualOps:   {status: StatusFailed, text: "3 extra"},
			},
		},
		{
			name: "an event applied twice: the consumer's failure, and exactly-once says so",
			build: func(t *testing.T, s *runSpec, _ string) {
				pages(0, 201, 200)(s)
				s.run.Unsafe = []string{"no-inbox-dedup"}
				s.pages["consumer"] = page(map[string]float64{DefaultSideEffectMetric: 201, MetricInboxDuplicates: 0})
				s.setLedger("k-42", 2)
				s.events = []rundir.EventRow{{Event: "0b7e4f7c-0000-4000-8000-000000000042", Merchant: "demo", Key: "k-42", Applied: 2}}
			},
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckRelayCrashDeduped: {status: StatusFailed, text: "event 0b7e4f7c-0000-4000-8000-000000000042 applied 2 times"},
				CheckExactlyOncePerOp:  {status: StatusFailed, text: "the consumer applied a repeated event, not a second charge"},
			},
			cxTotal: map[string]int{CheckRelayCrashDeduped: 1, CheckExactlyOncePerOp: 1},
		},
		{
			name: "a kill of a team's target is not a relay kill",
			build: func(t *testing.T, s *runSpec, _ string) {
				targetRun(s, "")
				s.faults = []rundir.Fault{{Time: t0.Add(time.Second), Fault: "kill", Action: "inject", Target: "target"}}
			},
			verdict: VerdictHeld,
			checks:  map[string]checkWant{CheckRelayCrashDeduped: {status: StatusNothing}},
		},
	})
}

// stickKey makes op's key stuck in flight: its first attempt timed out
// (the endpoint was killed mid-request) and every later try until the run's
// end got 409.
func stickKey(s *runSpec, op int, tries int, every time.Duration) {
	var keep []rundir.Attempt
	var first time.Time
	for _, a := range s.attempts {
		if a.Op != op {
			keep = append(keep, a)
			continue
		}
		if a.Attempt == 1 {
			a.Status, a.Outcome, a.Error = 0, rundir.OutcomeTimeout, "context deadline exceeded"
			first = a.End
			keep = append(keep, a)
		}
	}
	for i := 0; i < tries; i++ {
		st := first.Add(time.Duration(i+1) * every)
		keep = append(keep, rundir.Attempt{Op: op, Kind: rundir.KindCharge, CallSite: "charge", Merchant: "demo",
			Key: fmt.Sprintf("k-%d", op), Attempt: i + 2, DelayReason: rundir.ReasonReconcile, Status: 409,
			Outcome: rundir.OutcomeConflict, Start: st, End: st.Add(time.Millisecond)})
	}
	s.attempts = keep
}

func TestNoKeyStuckInFlight(t *testing.T) {
	runVerdictCases(t, []verdictCase{
		{
			name: "two keys answered 409 until the end: failed, each with how long",
			build: func(t *testing.T, s *runSpec, _ string) {
				stickKey(s, 170, 6, time.Second)
				stickKey(s, 171, 3, time.Second)
			},
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckNoKeyStuck:       {status: StatusFailed, figure: "2 of 3 keys answered 409 stayed in flight", text: "answered 409 for 5s"},
				CheckExactlyOncePerOp: {status: StatusHeld, figure: "2 indeterminate"},
				CheckEffectsEqualOps:  {status: StatusHeld},
			},
			cxTotal: map[string]int{CheckNoKeyStuck: 2},
			inText:  []string{"answered 409 for 2s"},
		},
		{
			name: "409s then a connection refused at the deadline: still stuck",
			build: func(t *testing.T, s *runSpec, _ string) {
				stickKey(s, 170, 3, time.Second)
				last := s.attempts[len(s.attempts)-1]
				last.Attempt++
				last.Start, last.End = last.End.Add(time.Second), last.End.Add(time.Second+time.Millisecond)
				last.Status, last.Outcome, last.Error = 0, rundir.OutcomeNetwork, "connection refused"
				s.attempts = append(s.attempts, last)
			},
			verdict: VerdictViolated,
			checks:  map[string]checkWant{CheckNoKeyStuck: {status: StatusFailed, figure: "1 of 2 keys", text: "answered 409 for 2s"}},
		},
		{
			name: "a stuck key whose charge was never made: effects-equal-ops says why it is short",
			build: func(t *testing.T, s *runSpec, _ string) {
				stickKey(s, 170, 6, time.Second)
				s.setLedger("k-170", 0)
				s.pages["consumer"] = page(map[string]float64{DefaultSideEffectMetric: 199, MetricInboxDuplicates: 1})
			},
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckNoKeyStuck:       {status: StatusFailed, figure: "1 of 2 keys"},
				CheckEffectsEqualOps:  {status: StatusFailed, text: "1 charges were never made because their keys stayed in flight"},
				CheckExactlyOncePerOp: {status: StatusHeld},
			},
		},
		{
			name: "a reuse of a stuck key answered 409 is not told to declare 409",
			build: func(t *testing.T, s *runSpec, _ string) {
				stickKey(s, 0, 4, time.Second)
				a := s.findAttempt(t, 200, 0, 1)
				a.Status, a.Outcome = 409, rundir.OutcomeConflict
				a.Start, a.End = a.Start.Add(time.Hour), a.End.Add(time.Hour)
				for i := range s.attempts {
					if s.attempts[i].Op == 0 && s.attempts[i].Status == 409 {
						s.attempts[i].End = s.attempts[i].End.Add(time.Hour)
					}
				}
			},
			verdict: VerdictViolated,
			checks: map[string]checkWant{
				CheckNoKeyStuck:  {status: StatusFailed, figure: "1 of 2 keys"},
				CheckKeyReuse422: {status: StatusInconclusive, text: "never got a definite answer (ops 200)"},
			},
		},
		{
			name: "409 then a definite answer is fine",
			build: func(t *testing.T, s *runSpec, _ string) {
				stickKey(s, 170, 4, time.Second)
				last := s.attempts[len(s.attempts)-1]
				last.Attempt++
				last.Start, last.End = last.End.Add(time.Second), last.End.Add(time.Second+time.Millisecond)
				last.Status, last.Outcome, last.ChargeID = 200, rundir.OutcomeNew, "ch-170"
				s.attempts = append(s.attempts, last)
			},
			verdict: VerdictHeld,
			checks:  map[string]checkWant{CheckNoKeyStuck: {status: StatusHeld, figure: "0 of 2 keys"}},
		},
	})
}

func TestFaultsThatFailedMakeTheRunInconclusive(t *testing.T) {
	runVerdictCases(t, []verdictCase{
		{
			name: "a kill that failed while running",
			build: func(t *testing.T, s *runSpec, _ string) {
				s.faults = append(s.faults, rundir.Fault{Time: t0.Add(6 * time.Second), Fault: "kill", Action: "error", Target: "consumer", Detail: "restart: exit status 1"})
			},
			verdict: VerdictInconclusive,
			checks: map[string]checkWant{
				CheckFaultsFired:     {status: StatusInconclusive, figure: "3 fired, 1 failed or never fired", text: "kill consumer failed at 12:00:06.000: restart: exit status 1"},
				CheckEffectsEqualOps: {status: StatusHeld},
			},
		},
		{
			name: "a crash point armed but never reached",
			build: func(t *testing.T, s *runSpec, _ string) {
				s.faults = append(s.faults, rundir.Fault{Time: t0.Add(6 * time.Second), Fault: "kill", Action: "arm", Target: "charge", Detail: "crash at after-claim"})
			},
			verdict: VerdictInconclusive,
			checks: map[string]checkWant{
				CheckFaultsFired: {status: StatusInconclusive, text: "kill charge armed at 12:00:06.000 (crash at after-claim) but never fired"},
			},
		},
		{
			name: "an armed crash point that fired",
			build: func(t *testing.T, s *runSpec, _ string) {
				s.faults = append(s.faults,
					rundir.Fault{Time: t0.Add(6 * time.Second), Fault: "kill", Action: "arm", Target: "charge", Detail: "crash at after-claim"},
					rundir.Fault{Time: t0.Add(7 * time.Second), Fault: "kill", Action: "inject", Target: "charge", Count: 1},
					rundir.Fault{Time: t0.Add(8 * time.Second), Fault: "kill", Action: "stop", Target: "charge"})
			},
			verdict: VerdictHeld,
			checks:  map[string]checkWant{CheckFaultsFired: {status: StatusHeld, figure: "4 fired, 0 failed or never fired"}},
		},
		{
			name: "a failed check still makes it violated",
			build: func(t *testing.T, s *runSpec, _ string) {
				s.faults = append(s.faults, rundir.Fault{Time: t0.Add(6 * time.Second), Fault: "latency", Action: "error", Target: "nope", Detail: "no such proxy"})
				s.setLedger("k-9", 2)
			},
			verdict: VerdictViolated,
			checks:  map[string]checkWant{CheckFaultsFired: {status: StatusInconclusive}, CheckExactlyOncePerOp: {status: StatusFailed}},
		},
	})
}

func TestStoppedRunsStillGetAReport(t *testing.T) {
	tests := []struct {
		name    string
		build   func(s *runSpec)
		verdict string
	}{
		{"nothing at all", func(s *runSpec) {
			s.run, s.plan, s.attempts, s.faults, s.pages, s.ledger = nil, nil, nil, nil, nil, nil
		}, VerdictInconclusive},
		{"run.yaml only", func(s *runSpec) {
			s.plan, s.attempts, s.faults, s.pages, s.ledger = nil, nil, nil, nil, nil
		}, VerdictInconclusive},
		{"plan and part of the history, no metrics, no ledger", func(s *runSpec) {
			s.attempts = s.attempts[:100]
			s.pages, s.ledger = nil, nil
		}, VerdictInconclusive},
		{"everything collected and correct: still not held", nil, VerdictInconclusive},
		{"a double charge seen before stopping is a finding", func(s *runSpec) {
			unmarkReplays(s)
			s.secondCharge(170, "ch-170-again")
			s.pages, s.ledger = nil, nil
		}, VerdictViolated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := cleanRun(200)
			if tc.build != nil {
				tc.build(s)
			}
			dir := s.write(t, t.TempDir())
			const why = "reconcile failed: 2 keys still in flight at the deadline"
			rep, err := Verify(context.Background(), dir, Options{Stopped: why})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Verdict != tc.verdict {
				t.Fatalf("verdict %s; want %s", rep.Verdict, tc.verdict)
			}
			saved, err := ReadReport(filepath.Join(dir, rundir.ReportFile))
			if err != nil {
				t.Fatal(err)
			}
			if saved.Stopped != why || len(saved.Checks) != len(rep.Checks) {
				t.Fatalf("report.json stopped %q with %d checks", saved.Stopped, len(saved.Checks))
			}
			for _, f := range []string{rundir.HTMLFile, rundir.TranscriptFile} {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("%s not written: %v", f, err)
				}
			}
			if tc.verdict == VerdictInconclusive && !strings.Contains(rep.Err().Error(), why) {
				t.Errorf("Err() = %v; want it to name why the run stopped", rep.Err())
			}
		})
	}
}

// TestPackageDocListsEveryCheck keeps the package documentation's list of
// checks complete: every Check* constant is described there.
func TestPackageDocListsEveryCheck(t *testing.T) {
	fset := token.NewFileSet()
	paths, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var doc string
	var names []string
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		if f.Doc != nil {
			doc += f.Doc.Text()
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, spec := range g.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, id := range vs.Names {
					if strings.HasPrefix(id.Name, "Check") && i < len(vs.Values) {
						if lit, ok := vs.Values[i].(*ast.BasicLit); ok {
							names = append(names, strings.Trim(lit.Value, `"`))
						}
					}
				}
			}
		}
	}
	if len(names) < 13 {
		t.Fatalf("found %d check constants: %v", len(names), names)
	}
	for _, n := range names {
		if !strings.Contains(doc, "  - "+n+":") {
			t.Errorf("the package doc does not describe %s", n)
		}
	}
}

func TestWhichMetricsAreSummedAcrossResets(t *testing.T) {
	const side = "shop_charges_applied"
	text := "# TYPE shop_charges_applied untyped\nshop_charges_applied 5\n" +
		"# TYPE queue_depth gauge\nqueue_depth 3\n" +
		"# TYPE payments_total counter\npayments_total 4\n" +
		"legacy_total 2\n" +
		"# TYPE applied_rows gauge\napplied_rows 9\n"
	fams, err := promtext.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{side: true, "queue_depth": false, "payments_total": true, "legacy_total": true, "applied_rows": false}
	for name, w := range want {
		if got := isCounter(fams[name], side); got != w {
			t.Errorf("isCounter(%s) = %v; want %v", name, got, w)
		}
	}
	if isCounter(fams["applied_rows"], "applied_rows") {
		t.Error("a side-effect metric declared a gauge was summed across its drops")
	}
}

func TestAPartialLastLineIsSkippedAndNamed(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		tail    string
		wantErr bool
	}{
		{"history cut mid-record", rundir.HistoryFile, `{"op":5,"kind":"charge","sta`, false},
		{"faults cut mid-record", rundir.FaultsFile, `{"time":"2026-11-28T12:00:09Z","fau`, false},
		{"a malformed complete line is still an error", rundir.HistoryFile, "{oops\n", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := cleanRun(200).write(t, t.TempDir())
			f, err := os.OpenFile(filepath.Join(dir, tc.file), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteString(tc.tail); err != nil {
				t.Fatal(err)
			}
			f.Close()
			rep, err := Verify(context.Background(), dir, Options{NoHTML: true, Stopped: "killed"})
			if tc.wantErr {
				if err == nil {
					t.Fatal("a malformed line was accepted")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("%s ends in a partial line of %d bytes", tc.file, len(tc.tail))
			if rep.Verdict != VerdictInconclusive || len(rep.EvidenceErrors) != 1 || !strings.Contains(rep.EvidenceErrors[0], want) {
				t.Fatalf("verdict %s, evidence errors %q; want inconclusive naming %q", rep.Verdict, rep.EvidenceErrors, want)
			}
			if rep.Attempts != 383 {
				t.Fatalf("%d attempts read; want the 383 complete ones", rep.Attempts)
			}
		})
	}
}

func TestAKilledTargetsCounterIsSummedAcrossItsRestart(t *testing.T) {
	// The endpoint is killed at 600 ms and restarted by 900 ms; it exports
	// no process start time.
	kill := func(s *runSpec) {
		s.faults = []rundir.Fault{
			{Time: t0.Add(600 * time.Millisecond), Fault: "kill", Action: "inject", Target: "target"},
			{Time: t0.Add(900 * time.Millisecond), Fault: "kill", Action: "stop", Target: "target"},
		}
	}
	target := func(t *testing.T, s *runSpec, dir string, values []float64, final float64) {
		targetRun(s, "acct_9")
		for i, v := range values {
			timelinePage(t, dir, "target", i*250, page(map[string]float64{"shop_charges_total": v}))
		}
		s.pages["target"] = page(map[string]float64{"shop_charges_total": final})
	}
	// killAt records a kill of the target at t0+from and its restart at
	// t0+to (none when to is 0).
	killAt := func(s *runSpec, from, to time.Duration) {
		s.faults = []rundir.Fault{{Time: t0.Add(from), Fault: "kill", Action: "inject", Target: "target"}}
		if to != 0 {
			s.faults = append(s.faults, rundir.Fault{Time: t0.Add(to), Fault: "kill", Action: "stop", Target: "target"})
		}
	}
	runVerdictCases(t, []verdictCase{
		{
			// The new process may have counted past the old value before
			// its first scrape, or the kill hit another process: no drop
			// is not taken for a reset (that could count charges twice);
			// the count is a lower bound the ledger excuses.
			name: "a kill with no drop after it: a lower bound, never double counted",
			n:    300,
			build: func(t *testing.T, s *runSpec, dir string) {
				target(t, s, dir, []float64{40, 80, 100, 150}, 200)
				kill(s)
			},
			verdict: VerdictHeld,
			checks:  map[string]checkWant{CheckEffectsEqualOps: {status: StatusHeld, figure: "200 of 300 (ledger 300 of 300); 100 never scraped before 1 kill of target"}},
		},
		{
			// --kill-cmd stopped a process other than the one serving the
			// page (another replica, a worker): its counter ran on.
			name: "a kill that did not reset the counter: the exact count stands",
			n:    300,
			build: func(t *testing.T, s *runSpec, dir string) {
				target(t, s, dir, []float64{40, 80, 100, 150, 250}, 300)
				kill(s)
			},
			verdict: VerdictHeld,
			checks:  map[string]checkWant{CheckEffectsEqualOps: {status: StatusHeld, figure: "300 of 300 (ledger 300 of 300)"}},
		},
		{
			name: "the old process answered one more scrape after the kill: its drop is the restart",
			n:    300,
			build: func(t *testing.T, s *runSpec, dir string) {
				target(t, s, dir, []float64{40, 80, 100, 110, 20}, 190)
				kill(s)
			},
			verdict: VerdictHeld,
			checks:  map[string]checkWant{CheckEffectsEqualOps: {status: StatusHeld, figure: "300 of 300 (ledger 300 of 300)"}},
			inText:  []string{"counter reset: target at 12:00:01.000: shop_charges_total 110 -> 20"},
		},
		{
			// A slow page still answering the first scrape when the process
			// died: every sample is the new process's.
			name: "killed before the first sample, ledger exact: a reset, the shortfall never scraped",
			n:    150,
			build: func(t *testing.T, s *runSpec, dir string) {
				target(t, s, dir, []float64{10, 40, 60, 80}, 97)
				killAt(s, -300*time.Millisecond, -100*time.Millisecond)
			},
			verdict: VerdictHeld,
			checks:  map[string]checkWant{CheckEffectsEqualOps: {status: StatusHeld, figure: "97 of 150 (ledger 150 of 150); 53 never scraped before 1 counter reset"}},
			inText:  []string{"counter reset: target at 12:00:00.000: shop_charges_total 0 -> 10"},
		},
		{
			name: "killed before the first sample, no ledger: a lower bound, inconclusive",
			n:    150,
			build: func(t *testing.T, s *runSpec, dir string) {
				target(t, s, dir, []float64{10, 40, 60, 80}, 97)
				killAt(s, -300*time.Millisecond, -100*time.Millisecond)
				s.ledger = nil
			},
			verdict: VerdictInconclusive,
			checks:  map[string]checkWant{CheckEffectsEqualOps: {status: StatusInconclusive, figure: "97 of 150", text: "the 53 short cannot be told from lost effects"}},
		},
		{
			// No sample after the kill (its restart's scrapes all failed):
			// no reset is seen, but the kill makes the count a lower bound.
			name: "killed after the last sample, ledger exact: never scraped, not lost",
			n:    150,
			build: func(t *testing.T, s *runSpec, dir string) {
				target(t, s, dir, []float64{10, 40, 60}, 97)
				killAt(s, 5*time.Second, 0)
			},
			verdict: VerdictHeld,
			checks:  map[string]checkWant{CheckEffectsEqualOps: {status: StatusHeld, figure: "97 of 150 (ledger 150 of 150); 53 never scraped before 1 kill of target"}},
		},
		{
			name: "killed after the last sample, no ledger: inconclusive, not lost",
			n:    150,
			build: func(t *testing.T, s *runSpec, dir string) {
				target(t, s, dir, []float64{10, 40, 60}, 97)
				killAt(s, 5*time.Second, 0)
				s.ledger = nil
			},
			verdict: VerdictInconclusive,
			checks:  map[string]checkWant{CheckEffectsEqualOps: {status: StatusInconclusive, figure: "97 of 150", text: "summed across 1 kill of target"}},
		},
		{
			// Nothing tells a restart the counter outgrew: the metric's 100
			// short read as lost (the limit the kill record lifts).
			name: "without the kill in faults.jsonl the restart cannot be seen",
			n:    300,
			build: func(t *testing.T, s *runSpec, dir string) {
				target(t, s, dir, []float64{40, 80, 100, 150}, 200)
			},
			verdict: VerdictViolated,
			checks:  map[string]checkWant{CheckEffectsEqualOps: {status: StatusFailed, figure: "200 of 300 (ledger 300 of 300)", text: "100 lost"}},
		},
	})
}

func TestCountersFromSaysWhereCountersWereRead(t *testing.T) {
	tests := []struct {
		name      string
		timelines []string // pages with a timeline
		want      string
	}{
		{"every system page sampled; the client's own page needs none", []string{"consumer", "relay", "charge"}, "timeline"},
		{"one page without a timeline", []string{"consumer", "relay"}, "timeline for some pages, last page for the others"},
		{"no timeline", nil, "last page"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := cleanRun(200)
			s.pages[rundir.ClientPage] = page(map[string]float64{MetricRetryBudgetExhausted: 3})
			dir := t.TempDir()
			for _, name := range tc.timelines {
				timelinePage(t, dir, name, 0, s.pages[name])
			}
			rep, err := Verify(context.Background(), s.write(t, dir), Options{NoHTML: true})
			if err != nil {
				t.Fatal(err)
			}
			if rep.CountersFrom != tc.want {
				t.Fatalf("counters from %q; want %q", rep.CountersFrom, tc.want)
			}
		})
	}
}

func TestSumSeries(t *testing.T) {
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	pts := func(vals ...float64) []point {
		out := make([]point, len(vals))
		for i, v := range vals {
			out[i] = point{t: at(i * 250), v: v}
		}
		return out
	}
	withStart := func(p []point, starts ...float64) []point {
		for i := range p {
			p[i].start = starts[i]
		}
		return p
	}
	kill := []killWindow{{from: at(600), to: at(900)}}
	tests := []struct {
		name   string
		pts    []point
		kills  []killWindow
		down   []time.Time
		total  float64
		resets int
	}{
		{"no reset", pts(0, 10, 20, 30), nil, nil, 30, 0},
		{"a drop", pts(0, 40, 80, 110, 36, 150), nil, nil, 260, 1},
		{"two drops", pts(10, 20, 5, 15, 3), nil, nil, 38, 2},
		// Not a reset: the kill may have stopped another process; taking
		// it for one would count 100 charges twice.
		{"a kill with no drop after it", pts(40, 80, 100, 150, 200), kill, nil, 200, 0},
		{"a kill followed by the old process's last scrape, then the drop", pts(40, 80, 100, 110, 20), kill, nil, 130, 1},
		{"a kill with no restart recorded and no drop", pts(40, 80, 100, 150, 200, 260), []killWindow{{from: at(600)}}, nil, 260, 0},
		{"a kill before the first sample: a reset with nothing seen before it", pts(10, 40, 60), []killWindow{{from: at(-300), to: at(-100)}}, nil, 60, 1},
		{"the start time tells, not the kill", withStart(pts(40, 80, 100, 150), 1, 1, 1, 1), kill, nil, 150, 0},
		{"a new start time with the counter past the old value", withStart(pts(40, 80, 100, 160), 1, 1, 2, 2), nil, nil, 240, 1},
		// A process that died soon after its first scrape: 0 before and
		// after, but a restart all the same.
		{"a restart from 0 to 0", withStart(pts(0, 0, 41), 1, 2, 2), nil, nil, 41, 1},
		// The page did not answer inside the kill: the process serving it
		// died, and the restarted one passed 100 before the next scrape.
		{"a kill, the page down, the counter past the old value", pts(40, 80, 100, 150, 200), kill, []time.Time{at(700)}, 300, 1},
		{"the page down twice in one kill: one reset", pts(40, 80, 100, 150, 200), kill, []time.Time{at(650), at(700)}, 300, 1},
		// Down with no kill of its process: a slow or flaky page, not a
		// restart.
		{"the page down with no kill", pts(40, 80, 100, 150, 200), nil, []time.Time{at(700)}, 200, 0},
		{"the page down before the kill", pts(40, 80, 100, 150, 200), kill, []time.Time{at(400)}, 200, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			total, resets := sumSeries("consumer", "m", tc.pts, tc.kills, tc.down)
			if total != tc.total || len(resets) != tc.resets {
				t.Fatalf("total %v, %d resets %+v; want %v, %d", total, len(resets), resets, tc.total, tc.resets)
			}
		})
	}
}
