package verify

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/rundir"
	"github.com/paytest/paytest/internal/testinfra"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// t0 is every synthetic run's start: fixed, so reports are golden.
var t0 = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// runSpec is a run directory in memory: tests build a clean one, break one
// thing, and write it with internal/rundir's writers.
type runSpec struct {
	run      *rundir.Run
	plan     []rundir.Op
	attempts []rundir.Attempt
	faults   []rundir.Fault
	pages    map[string]string  // name -> Prometheus text
	ledger   []rundir.LedgerRow // nil: no ledger.jsonl
	events   []rundir.EventRow  // nil: no events.jsonl
	sources  *rundir.Collected  // nil: no sources.json
	prom     *rundir.PromAnswers
}

// page renders a Prometheus text page from name -> value, typed by name.
func page(values map[string]float64) string {
	var b strings.Builder
	for _, name := range sortedKeys(values) {
		typ := "counter"
		if !strings.HasSuffix(name, "_total") {
			typ = "gauge"
		}
		fmt.Fprintf(&b, "# HELP %s synthetic\n# TYPE %s %s\n%s %s\n", name, name, typ, name, fmtNum(values[name]))
	}
	return b.String()
}

// cleanRun is a correct run of n charges (n >= 150): every charge applied
// once; 100 charges retried once after a lost answer with full-jitter
// backoff (cap 200 ms) and 40 of them twice (cap 400 ms); 40 retried after
// a 503 with Retry-After 100 ms; one same-key race with one winner; one
// changed-body reuse answered 422; a relay killed once and its republished
// event deduped; the outbox drained.
func cleanRun(n int) *runSpec {
	rng := rand.New(rand.NewPCG(7, 11))
	s := &runSpec{
		run: &rundir.Run{Seed: 42, Profile: "default", Ops: n, Concurrency: 8, Started: t0, Ended: t0.Add(12300 * time.Millisecond)},
		pages: map[string]string{
			"consumer": page(map[string]float64{DefaultSideEffectMetric: float64(n), MetricInboxDuplicates: 1, MetricDLQMessages: 0}),
			"relay":    page(map[string]float64{MetricOutboxPending: 0, MetricOutboxLag: 0, MetricRelayPublished: float64(n + 1)}),
			"charge":   page(map[string]float64{MetricChargesCreated: float64(n), MetricOutboxPending: 0}),
		},
	}
	at := t0
	tick := func() time.Time { at = at.Add(3 * time.Millisecond); return at }
	attempt := func(op, sender, n int, key, outcome string, status int, delay float64, reason string, cap, ra float64) {
		st := tick()
		s.attempts = append(s.attempts, rundir.Attempt{
			Op: op, Kind: rundir.KindCharge, Sender: sender, CallSite: "charge", Merchant: "demo", Key: key,
			Attempt: n, DelayMS: delay, DelayReason: reason, CapMS: cap, RetryAfterMS: ra,
			Status: status, Outcome: outcome, Replayed: outcome == rundir.OutcomeReplay,
			Start: st, End: st.Add(2 * time.Millisecond),
		})
	}
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("k-%d", i)
		op := rundir.Op{Op: i, Kind: rundir.KindCharge, Merchant: "demo", Key: key, Amount: 1299, BodySHA256: "b", Senders: 1}
		if i == 3 {
			op.Senders, op.Race = 2, true
		}
		s.plan = append(s.plan, op)
		s.ledger = append(s.ledger, rundir.LedgerRow{Merchant: "demo", Key: key, Effects: 1})
		switch {
		case i == 3: // the race: one new, one 409 then a replay
			attempt(i, 0, 1, key, rundir.OutcomeNew, 200, 0, rundir.ReasonFirst, 0, 0)
			attempt(i, 1, 1, key, rundir.OutcomeConflict, 409, 0, rundir.ReasonFirst, 0, 50)
			attempt(i, 1, 2, key, rundir.OutcomeReplay, 200, 50+rng.Float64()*100, rundir.ReasonRetryAfter, 100, 0)
		case i >= 10 && i < 110: // answer eaten, retried with backoff
			attempt(i, 0, 1, key, rundir.OutcomeTimeout, 0, 0, rundir.ReasonFirst, 0, 0)
			if i < 50 {
				attempt(i, 0, 2, key, rundir.OutcomeTimeout, 0, rng.Float64()*200, rundir.ReasonBackoff, 200, 0)
				attempt(i, 0, 3, key, rundir.OutcomeReplay, 200, rng.Float64()*400, rundir.ReasonBackoff, 400, 0)
			} else {
				attempt(i, 0, 2, key, rundir.OutcomeReplay, 200, rng.Float64()*200, rundir.ReasonBackoff, 200, 0)
			}
		case i >= 110 && i < 150: // 503 with Retry-After, retried above it
			attempt(i, 0, 1, key, rundir.OutcomeUnavailable, 503, 0, rundir.ReasonFirst, 0, 100)
			attempt(i, 0, 2, key, rundir.OutcomeNew, 200, 100+rng.Float64()*100, rundir.ReasonRetryAfter, 100, 0)
		default:
			attempt(i, 0, 1, key, rundir.OutcomeNew, 200, 0, rundir.ReasonFirst, 0, 0)
		}
	}
	// A changed-body reuse of op 0's key.
	s.plan = append(s.plan, rundir.Op{Op: n, Kind: rundir.KindReuse, Merchant: "demo", Key: "k-0", Amount: 999, BodySHA256: "c", Senders: 1, ReuseOf: 0})
	st := tick()
	s.attempts = append(s.attempts, rundir.Attempt{Op: n, Kind: rundir.KindReuse, CallSite: "charge", Merchant: "demo", Key: "k-0", Attempt: 1, DelayReason: rundir.ReasonFirst, Status: 422, Outcome: rundir.OutcomeMismatch, Start: st, End: st.Add(time.Millisecond)})
	s.faults = []rundir.Fault{
		{Time: t0.Add(time.Second), Fault: "eat-response", Action: "inject", Target: "charge", Count: 100},
		{Time: t0.Add(2 * time.Second), Fault: "broker-cut", Action: "start", Target: "nats"},
		{Time: t0.Add(3 * time.Second), Fault: "broker-cut", Action: "stop", Target: "nats"},
		{Time: t0.Add(4 * time.Second), Fault: "kill", Action: "inject", Target: "relay", Detail: "after-publish"},
	}
	return s
}

// write materialises the spec as a run directory.
func (s *runSpec) write(tb testing.TB, dir string) string {
	tb.Helper()
	must := func(err error) {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
	}
	if s.run != nil {
		must(rundir.WriteRun(filepath.Join(dir, rundir.RunFile), *s.run))
	}
	if s.plan != nil {
		writeLines(tb, filepath.Join(dir, rundir.PlanFile), s.plan)
	}
	if s.attempts != nil {
		writeLines(tb, filepath.Join(dir, rundir.HistoryFile), s.attempts)
	}
	if s.faults != nil {
		writeLines(tb, filepath.Join(dir, rundir.FaultsFile), s.faults)
	}
	if s.ledger != nil {
		writeLines(tb, filepath.Join(dir, rundir.LedgerFile), s.ledger)
	}
	if s.events != nil {
		writeLines(tb, filepath.Join(dir, rundir.EventsFile), s.events)
	}
	mdir := filepath.Join(dir, rundir.MetricsDir)
	must(os.MkdirAll(mdir, 0o755))
	for name, text := range s.pages {
		must(os.WriteFile(filepath.Join(mdir, name+".prom"), []byte(text), 0o644))
	}
	if s.sources != nil {
		must(writeJSON(filepath.Join(mdir, rundir.SourcesFile), s.sources))
	}
	if s.prom != nil {
		must(writeJSON(filepath.Join(mdir, rundir.PrometheusFile), s.prom))
	}
	return dir
}

func writeLines[T any](tb testing.TB, path string, recs []T) {
	tb.Helper()
	w, err := rundir.Create[T](path)
	if err != nil {
		tb.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
}

// findAttempt returns the attempt of op/sender/attempt number.
func (s *runSpec) findAttempt(tb testing.TB, op, sender, n int) *rundir.Attempt {
	tb.Helper()
	for i := range s.attempts {
		a := &s.attempts[i]
		if a.Op == op && a.Sender == sender && a.Attempt == n {
			return a
		}
	}
	tb.Fatalf("no attempt op %d sender %d #%d", op, sender, n)
	return nil
}

func (s *runSpec) setLedger(key string, effects int64) {
	for i := range s.ledger {
		if s.ledger[i].Key == key {
			s.ledger[i].Effects = effects
			return
		}
	}
	s.ledger = append(s.ledger, rundir.LedgerRow{Merchant: "demo", Key: key, Effects: effects})
}
