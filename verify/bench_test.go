package verify

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/rundir"
)

// buildLargeRun writes a run directory of n charges to dir: every op has
// a first attempt, 30% a lost answer and a backoff retry (10% a second one),
// 5% a 503 with Retry-After; 1% are races of two senders; plus a ledger and
// metrics pages. Returns the number of attempts.
func buildLargeRun(tb testing.TB, dir string, n int) int {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	plan, err := rundir.Create[rundir.Op](filepath.Join(dir, rundir.PlanFile))
	if err != nil {
		tb.Fatal(err)
	}
	hist, err := rundir.Create[rundir.Attempt](filepath.Join(dir, rundir.HistoryFile))
	if err != nil {
		tb.Fatal(err)
	}
	ledger, err := rundir.Create[rundir.LedgerRow](filepath.Join(dir, rundir.LedgerFile))
	if err != nil {
		tb.Fatal(err)
	}
	at := t0
	write := func(a rundir.Attempt) {
		at = at.Add(50 * time.Microsecond)
		a.Kind, a.CallSite, a.Merchant = rundir.KindCharge, "charge", "demo"
		a.Start, a.End = at, at.Add(2*time.Millisecond)
		a.Replayed = a.Outcome == rundir.OutcomeReplay
		if err := hist.Write(a); err != nil {
			tb.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("key-%08d", i)
		race := i%100 == 0
		senders := 1
		if race {
			senders = 2
		}
		if err := plan.Write(rundir.Op{Op: i, Kind: rundir.KindCharge, Merchant: "demo", Key: key, Amount: 1299, BodySHA256: "0123456789abcdef", Senders: senders, Race: race}); err != nil {
			tb.Fatal(err)
		}
		if err := ledger.Write(rundir.LedgerRow{Merchant: "demo", Key: key, Effects: 1}); err != nil {
			tb.Fatal(err)
		}
		r := rng.Float64()
		switch {
		case race:
			write(rundir.Attempt{Op: i, Key: key, Attempt: 1, DelayReason: rundir.ReasonFirst, Status: 200, Outcome: rundir.OutcomeNew})
			write(rundir.Attempt{Op: i, Sender: 1, Key: key, Attempt: 1, DelayReason: rundir.ReasonFirst, Status: 409, Outcome: rundir.OutcomeConflict, RetryAfterMS: 100})
			write(rundir.Attempt{Op: i, Sender: 1, Key: key, Attempt: 2, DelayMS: 100 + rng.Float64()*100, CapMS: 100, DelayReason: rundir.ReasonRetryAfter, Status: 200, Outcome: rundir.OutcomeReplay})
		case r < 0.30:
			write(rundir.Attempt{Op: i, Key: key, Attempt: 1, DelayReason: rundir.ReasonFirst, Outcome: rundir.OutcomeTimeout, Error: "context deadline exceeded"})
			if r < 0.10 {
				write(rundir.Attempt{Op: i, Key: key, Attempt: 2, DelayMS: rng.Float64() * 100, CapMS: 100, DelayReason: rundir.ReasonBackoff, Outcome: rundir.OutcomeTimeout})
				write(rundir.Attempt{Op: i, Key: key, Attempt: 3, DelayMS: rng.Float64() * 200, CapMS: 200, DelayReason: rundir.ReasonBackoff, Status: 200, Outcome: rundir.OutcomeReplay})
			} else {
				write(rundir.Attempt{Op: i, Key: key, Attempt: 2, DelayMS: rng.Float64() * 100, CapMS: 100, DelayReason: rundir.ReasonBackoff, Status: 200, Outcome: rundir.OutcomeReplay})
			}
		case r < 0.35:
			write(rundir.Attempt{Op: i, Key: key, Attempt: 1, DelayReason: rundir.ReasonFirst, Status: 503, Outcome: rundir.OutcomeUnavailable, RetryAfterMS: 1000})
			write(rundir.Attempt{Op: i, Key: key, Attempt: 2, DelayMS: 1000 + rng.Float64()*100, CapMS: 100, DelayReason: rundir.ReasonRetryAfter, Status: 200, Outcome: rundir.OutcomeNew})
		default:
			write(rundir.Attempt{Op: i, Key: key, Attempt: 1, DelayReason: rundir.ReasonFirst, Status: 200, Outcome: rundir.OutcomeNew})
		}
	}
	for _, w := range []interface{ Close() error }{plan, hist, ledger} {
		if err := w.Close(); err != nil {
			tb.Fatal(err)
		}
	}
	if err := rundir.WriteRun(filepath.Join(dir, rundir.RunFile), rundir.Run{Seed: 1, Profile: "bench", Ops: n, Started: t0, Ended: at}); err != nil {
		tb.Fatal(err)
	}
	mdir := filepath.Join(dir, rundir.MetricsDir)
	if err := os.MkdirAll(mdir, 0o755); err != nil {
		tb.Fatal(err)
	}
	for name, vals := range map[string]map[string]float64{
		"consumer": {DefaultSideEffectMetric: float64(n), MetricInboxDuplicates: 0, MetricDLQMessages: 0},
		"relay":    {MetricOutboxPending: 0, MetricOutboxLag: 0},
	} {
		if err := os.WriteFile(filepath.Join(mdir, name+".prom"), []byte(page(vals)), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	var attempts int
	_ = rundir.ReadFile(filepath.Join(dir, rundir.HistoryFile), func(rundir.Attempt) error { attempts++; return nil })
	return attempts
}

// BenchmarkVerify100k verifies a 100,000-operation run (plots and
// report.html included). Target: at most 5 s.
func BenchmarkVerify100k(b *testing.B) {
	const n = 100_000
	dir := b.TempDir()
	attempts := buildLargeRun(b, dir, n)
	b.ResetTimer()
	var rep *Report
	start := time.Now()
	for i := 0; i < b.N; i++ {
		var err error
		rep, err = Verify(context.Background(), dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
	}
	per := time.Since(start).Seconds() / float64(b.N)
	b.StopTimer()
	if rep.Verdict != VerdictHeld || rep.Ops != n {
		var buf bytesBuffer
		_ = rep.WriteText(&buf)
		b.Fatalf("verdict %s over %d ops:\n%s", rep.Verdict, rep.Ops, buf)
	}
	b.ReportMetric(per, "s/verify")
	b.ReportMetric(per/5, "x-of-5s-target")
	b.Logf("verified %d ops, %d attempts in %.2f s (target 5 s: %.2fx of budget)", n, attempts, per, per/5)
}

type bytesBuffer []byte

func (b *bytesBuffer) Write(p []byte) (int, error) { *b = append(*b, p...); return len(p), nil }
func (b bytesBuffer) String() string               { return string(b) }
