package verify

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/rundir"
)

// outageRun is a correct run of 300 charges whose charge service lost its
// database from ws to ws+3s: before it, 100 charges answered at once;
// during it 200 more, each first answered 503 with Retry-After 1 s. With a
// budget (50 tokens: 10 retries) ten senders retry once and everything
// else is refused and left to reconciliation after the outage; without
// one, 20 senders retry every 1.1 s through the window (the others are
// still queued behind them and sent after it). Every charge is applied
// once. bound is run.yaml's max-retry-amplification (0: not set).
func outageRun(budget bool, bound float64) (*runSpec, time.Time) {
	const n = 300
	ws := t0.Add(2 * time.Second)
	we := ws.Add(3 * time.Second)
	cfg := map[string]any{"no-budget": !budget}
	if bound > 0 {
		cfg["max-retry-amplification"] = bound
	}
	s := &runSpec{
		run: &rundir.Run{Seed: 9, Profile: "outage", Ops: n, Concurrency: 20, Started: t0, Ended: t0.Add(9 * time.Second), Config: cfg},
		pages: map[string]string{
			"consumer": page(map[string]float64{DefaultSideEffectMetric: n, MetricInboxDuplicates: 0, MetricDLQMessages: 0}),
			"relay":    page(map[string]float64{MetricOutboxPending: 0, MetricOutboxLag: 0, MetricRelayPublished: n}),
		},
		faults: []rundir.Fault{
			{Time: ws, Fault: "outage", Action: "start", Target: "postgres"},
			{Time: we, Fault: "outage", Action: "stop", Target: "postgres"},
		},
	}
	rng := rand.New(rand.NewPCG(3, 5))
	add := func(op, n int, reason string, start time.Time, took time.Duration, status int, outcome string) {
		a := rundir.Attempt{
			Op: op, Kind: rundir.KindCharge, CallSite: "charge", Merchant: "demo", Key: fmt.Sprintf("k-%d", op),
			Attempt: n, DelayReason: reason, Status: status, Outcome: outcome, Start: start, End: start.Add(took),
		}
		switch outcome {
		case rundir.OutcomeUnavailable:
			a.RetryAfterMS = 1000
		case rundir.OutcomeBudget:
			a.End, a.Error = start, "client: retry budget exhausted"
		}
		if reason == rundir.ReasonRetryAfter {
			// Retry-After 1 s spread over [1 s, 1.5 s].
			a.DelayMS, a.CapMS = 1000+rng.Float64()*500, 500
		}
		s.attempts = append(s.attempts, a)
	}
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("k-%d", i)
		s.plan = append(s.plan, rundir.Op{Op: i, Kind: rundir.KindCharge, Merchant: "demo", Key: key, Amount: 100, BodySHA256: "b", Senders: 1})
		s.ledger = append(s.ledger, rundir.LedgerRow{Merchant: "demo", Key: key, Effects: 1})
	}
	for i := 0; i < 98; i++ {
		add(i, 1, rundir.ReasonFirst, t0.Add(time.Duration(i)*10*time.Millisecond), 2*time.Millisecond, 200, rundir.OutcomeNew)
	}
	// In flight as the cut began, answered before it showed: not counted.
	add(98, 1, rundir.ReasonFirst, ws.Add(-5*time.Millisecond), 6*time.Millisecond, 200, rundir.OutcomeNew)
	add(99, 1, rundir.ReasonFirst, ws.Add(-3*time.Millisecond), 7*time.Millisecond, 200, rundir.OutcomeNew)
	fail := ws.Add(10 * time.Millisecond) // the first 503
	after := we.Add(time.Second)          // sent after the database came back
	if budget {
		for i := 100; i < 300; i++ {
			at := fail.Add(time.Duration(i-100) * 5 * time.Millisecond)
			add(i, 1, rundir.ReasonFirst, at, time.Millisecond, 503, rundir.OutcomeUnavailable)
			if i < 110 {
				add(i, 2, rundir.ReasonRetryAfter, at.Add(1100*time.Millisecond), time.Millisecond, 503, rundir.OutcomeUnavailable)
				add(i, 3, "", at.Add(1102*time.Millisecond), 0, 0, rundir.OutcomeBudget)
			} else {
				add(i, 2, "", at.Add(time.Millisecond), 0, 0, rundir.OutcomeBudget)
			}
			add(i, 1, rundir.ReasonReconcile, after.Add(time.Duration(i)*time.Millisecond), time.Millisecond, 200, rundir.OutcomeNew)
		}
		return s, ws
	}
	for i := 100; i < 300; i++ {
		if i >= 120 {
			add(i, 1, rundir.ReasonFirst, after.Add(time.Duration(i)*time.Millisecond), time.Millisecond, 200, rundir.OutcomeNew)
			continue
		}
		at := fail.Add(time.Duration(i-100) * time.Millisecond)
		add(i, 1, rundir.ReasonFirst, at, time.Millisecond, 503, rundir.OutcomeUnavailable)
		add(i, 2, rundir.ReasonRetryAfter, at.Add(1100*time.Millisecond), time.Millisecond, 503, rundir.OutcomeUnavailable)
		add(i, 3, rundir.ReasonRetryAfter, at.Add(2200*time.Millisecond), time.Millisecond, 503, rundir.OutcomeUnavailable)
		add(i, 4, rundir.ReasonRetryAfter, at.Add(3300*time.Millisecond), time.Millisecond, 200, rundir.OutcomeNew)
	}
	return s, ws
}

func TestOutageFiguresAndNoRetryStorm(t *testing.T) {
	tests := []struct {
		name    string
		budget  bool
		bound   float64 // run.yaml's
		opt     float64 // Options.MaxRetryAmplification
		status  string
		verdict string
		first   int
		retries int
		refused int
		amp     float64
		figure  string // substring of the check's figure or detail
	}{
		{"budget within the profile's bound", true, 1.2, 0, StatusHeld, VerdictHeld, 200, 10, 200, 1.05, "1.05x (210 attempts for 200 first attempts in 3.0 s, 200 retries refused by the budget)"},
		{"no budget: the storm fails the run", false, 1.2, 0, StatusFailed, VerdictViolated, 20, 40, 0, 3, "3.00x (60 attempts for 20 first attempts in 3.0 s)"},
		{"no bound set: shown, not judged", false, 0, 0, StatusNothing, VerdictHeld, 20, 40, 0, 3, "3.00x over 1 outage window(s), not judged"},
		{"Options override run.yaml's bound", false, 1.2, 4, StatusHeld, VerdictHeld, 20, 40, 0, 3, "3.00x"},
		{"a tighter bound fails the budgeted run", true, 1.2, 1.01, StatusFailed, VerdictViolated, 200, 10, 200, 1.05, "1.05x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, ws := outageRun(tt.budget, tt.bound)
			dir := s.write(t, t.TempDir())
			rep, err := Verify(context.Background(), dir, Options{NoHTML: true, MaxRetryAmplification: tt.opt})
			if err != nil {
				t.Fatal(err)
			}
			var text strings.Builder
			_ = rep.WriteText(&text)
			c := rep.Check(CheckNoRetryStorm)
			if c == nil || c.Status != tt.status || rep.Verdict != tt.verdict {
				t.Fatalf("check %+v, verdict %s; want %s, %s:\n%s", c, rep.Verdict, tt.status, tt.verdict, text.String())
			}
			if !strings.Contains(c.Figure+" "+c.Detail, tt.figure) {
				t.Errorf("figure %q, detail %q; want %q in them", c.Figure, c.Detail, tt.figure)
			}
			o := rep.Outage
			if o == nil || len(o.Windows) != 1 {
				t.Fatalf("outage figure %+v", o)
			}
			w := o.Windows[0]
			if o.FirstAttempts != tt.first || o.Retries != tt.retries || o.Attempts != tt.first+tt.retries ||
				o.BudgetRefused != tt.refused || o.Amplification != tt.amp || o.WindowSeconds != 3 || o.NoBudget == tt.budget {
				t.Fatalf("outage figure %+v; want %d first, %d retries, %d refused, %.2fx over 3 s", *o, tt.first, tt.retries, tt.refused, tt.amp)
			}
			if !w.Start.Equal(ws) || !w.FirstFailure.Equal(ws.Add(11*time.Millisecond)) || w.Open {
				t.Errorf("window %+v; want it from %s, counted from the first 503's end", w, ws)
			}
			if !strings.Contains(text.String(), "outage: 1 window(s), 3.0 s") {
				t.Errorf("the text report has no outage line:\n%s", text.String())
			}
			// Money moved once: only the storm may fail.
			for _, other := range rep.Checks {
				if other.Name != CheckNoRetryStorm && other.Status == StatusFailed {
					t.Errorf("%s failed: %s", other.Name, other.Detail)
				}
			}
			if tt.status == StatusFailed {
				if len(c.Counterexamples) != 1 || !strings.Contains(c.Counterexamples[0].Why, "outage 1") {
					t.Errorf("counterexamples %+v; want the window", c.Counterexamples)
				}
			}
		})
	}
}

func TestNoRetryStormWithoutAnOutage(t *testing.T) {
	tests := []struct {
		name   string
		faults func(ws time.Time) []rundir.Fault
		want   string
	}{
		{"no outage fault", func(time.Time) []rundir.Fault { return nil }, "no outage window in this run"},
		{"an outage nothing was sent into", func(time.Time) []rundir.Fault {
			at := t0.Add(30 * time.Second)
			return []rundir.Fault{
				{Time: at, Fault: "outage", Action: "start", Target: "postgres"},
				{Time: at.Add(time.Second), Fault: "outage", Action: "stop", Target: "postgres"},
			}
		}, "no attempt was sent during the outage"},
		{"a stop without a start", func(ws time.Time) []rundir.Fault {
			return []rundir.Fault{{Time: ws, Fault: "outage", Action: "stop", Target: "postgres"}}
		}, "no outage window in this run"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, ws := outageRun(false, 1.2)
			s.faults = tt.faults(ws)
			rep, err := Verify(context.Background(), s.write(t, t.TempDir()), Options{NoHTML: true})
			if err != nil {
				t.Fatal(err)
			}
			c := rep.Check(CheckNoRetryStorm)
			if c.Status != StatusNothing || !strings.Contains(c.Detail, "nothing to check: "+tt.want) || rep.Verdict != VerdictHeld {
				t.Fatalf("check %+v, verdict %s; want nothing to check: %s", c, rep.Verdict, tt.want)
			}
		})
	}
}

// TestOutageWindowWithoutStopLastsToTheRunsEnd: an outage the journal
// never saw healed (the run was cut short) is counted until run.yaml's
// end, and reconciliation's re-drives in it count as retries.
func TestOutageWindowWithoutStopLastsToTheRunsEnd(t *testing.T) {
	s, ws := outageRun(true, 1.2)
	s.faults = s.faults[:1]
	rep, err := Verify(context.Background(), s.write(t, t.TempDir()), Options{NoHTML: true})
	if err != nil {
		t.Fatal(err)
	}
	o := rep.Outage
	w := o.Windows[0]
	if !w.Open || !w.End.Equal(s.run.Ended) || w.Seconds != s.run.Ended.Sub(ws).Seconds() {
		t.Fatalf("window %+v; want it open until %s", w, s.run.Ended)
	}
	// 200 first attempts, 10 retries, 200 reconcile re-drives.
	if w.FirstAttempts != 200 || w.Retries != 210 || w.Amplification != 2.05 {
		t.Fatalf("window %+v; want 200 first attempts and 210 retries", w)
	}
	if c := rep.Check(CheckNoRetryStorm); c.Status != StatusFailed {
		t.Fatalf("check %+v; want failed", c)
	}
}

// TestOutageWindowsArePairedPerTarget: two outages, each counted on its
// own; the totals add them up and the worse one decides.
func TestOutageWindowsArePairedPerTarget(t *testing.T) {
	s, ws := outageRun(true, 1.2)
	// A second, later window the no-budget way: 5 senders, 3 attempts each.
	w2 := t0.Add(20 * time.Second)
	s.faults = append(s.faults,
		rundir.Fault{Time: w2, Fault: "outage", Action: "start", Target: "postgres"},
		rundir.Fault{Time: w2.Add(3 * time.Second), Fault: "outage", Action: "stop", Target: "postgres"})
	s.run.Ended = t0.Add(30 * time.Second)
	rng := rand.New(rand.NewPCG(8, 13))
	for i := 0; i < 5; i++ {
		for n := 1; n <= 3; n++ {
			at := w2.Add(time.Duration(n-1)*1100*time.Millisecond + time.Duration(i+1)*time.Millisecond)
			reason := rundir.ReasonRetryAfter
			if n == 1 {
				reason = rundir.ReasonFirst
			}
			s.attempts = append(s.attempts, rundir.Attempt{Op: i, Kind: rundir.KindCharge, Sender: 1, CallSite: "charge", Merchant: "demo",
				Key: fmt.Sprintf("k-%d", i), Attempt: n, DelayReason: reason, DelayMS: 1000 + rng.Float64()*500, CapMS: 500, RetryAfterMS: 1000,
				Status: 503, Outcome: rundir.OutcomeUnavailable, Start: at, End: at.Add(time.Millisecond)})
		}
	}
	rep, err := Verify(context.Background(), s.write(t, t.TempDir()), Options{NoHTML: true})
	if err != nil {
		t.Fatal(err)
	}
	o := rep.Outage
	if len(o.Windows) != 2 || !o.Windows[0].Start.Equal(ws) || o.Windows[1].Amplification != 3 || o.Windows[1].Requests != 5 {
		t.Fatalf("windows %+v", o.Windows)
	}
	if o.FirstAttempts != 205 || o.Attempts != 225 || o.WindowSeconds != 6 {
		t.Fatalf("totals %+v; want 205 first attempts, 225 attempts over 6 s", *o)
	}
	c := rep.Check(CheckNoRetryStorm)
	if c.Status != StatusFailed || c.CounterexamplesTotal != 1 || !strings.Contains(c.Counterexamples[0].Why, "outage 2") ||
		!strings.Contains(c.Counterexamples[0].Why, "op 0 sender 1 sent 3 attempts") {
		t.Fatalf("check %+v; want the second window to fail it", c)
	}
}

func TestAmplification(t *testing.T) {
	for _, tt := range []struct {
		attempts, first int
		want            float64
	}{{0, 0, 0}, {5, 0, 5}, {12, 10, 1.2}, {10, 3, 3.333}} {
		if got := amplification(tt.attempts, tt.first); got != tt.want {
			t.Errorf("amplification(%d, %d) = %v, want %v", tt.attempts, tt.first, got, tt.want)
		}
	}
}

func TestOutageRowInTheHTMLReport(t *testing.T) {
	s, _ := outageRun(true, 1.2)
	dir := s.write(t, t.TempDir())
	if _, err := Verify(context.Background(), dir, Options{}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, rundir.HTMLFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "<th>outage</th><td colspan=\"2\">1 window(s), 3.0 s: 210 attempts for 200 first attempts") {
		t.Fatalf("report.html has no outage row")
	}
}
