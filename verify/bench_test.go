package verify

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/paytest/paytest/attack/history"
)

// buildLargeRun writes a run directory of n charges to dir: every op has
// a first attempt, 30% a lost answer and a backoff retry (10% a second one),
// 5% a 503 with Retry-After; 1% are races of two senders; plus a ledger and
// metrics pages. Returns the number of attempts.
func buildLargeRun(tb testing.TB, dir string, n int) int {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	plan, err := history.Create[history.Op](filepath.Join(dir, history.PlanFile))
	if err != nil {
		tb.Fatal(err)
	}
	hist, err := history.Create[history.Attempt](filepath.Join(dir, history.HistoryFile))
	if err != nil {
		tb.Fatal(err)
	}
	ledger, err := history.Create[LedgerRow](filepath.Join(dir, LedgerFile))
	if err != nil {
		tb.Fatal(err)
	}
	at := t0
	write := func(a history.Attempt) {
		at = at.Add(50 * time.Microsecond)
		a.Kind, a.CallSite, a.Merchant = history.KindCharge, "charge", "demo"
		a.Start, a.End = at, at.Add(2*time.Millisecond)
		a.Replayed = a.Outcome == history.OutcomeReplay
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
		if err := plan.Write(history.Op{Op: i, Kind: history.KindCharge, Merchant: "demo", Key: key, Amount: 1299, BodySHA256: "0123456789abcdef", Senders: senders, Race: race}); err != nil {
			tb.Fatal(err)
		}
		if err := ledger.Write(LedgerRow{Merchant: "demo", Key: key, Effects: 1}); err != nil {
			tb.Fatal(err)
		}
		r := rng.Float64()
		switch {
		case race:
			write(history.Attempt{Op: i, Key: key, Attempt: 1, DelayReason: history.ReasonFirst, Status: 200, Outcome: history.OutcomeNew})
			write(history.Attempt{Op: i, Sender: 1, Key: key, Attempt: 1, DelayReason: history.ReasonFirst, Status: 409, Outcome: history.OutcomeConflict, RetryAfterMS: 100})
			write(history.Attempt{Op: i, Sender: 1, Key: key, Attempt: 2, DelayMS: 100 + rng.Float64()*100, CapMS: 100, DelayReason: history.ReasonRetryAfter, Status: 200, Outcome: history.OutcomeReplay})
		case r < 0.30:
			write(history.Attempt{Op: i, Key: key, Attempt: 1, DelayReason: history.ReasonFirst, Outcome: history.OutcomeTimeout, Error: "context deadline exceeded"})
			if r < 0.10 {
				write(history.Attempt{Op: i, Key: key, Attempt: 2, DelayMS: rng.Float64() * 100, CapMS: 100, DelayReason: history.ReasonBackoff, Outcome: history.OutcomeTimeout})
				write(history.Attempt{Op: i, Key: key, Attempt: 3, DelayMS: rng.Float64() * 200, CapMS: 200, DelayReason: history.ReasonBackoff, Status: 200, Outcome: history.OutcomeReplay})
			} else {
				write(history.Attempt{Op: i, Key: key, Attempt: 2, DelayMS: rng.Float64() * 100, CapMS: 100, DelayReason: history.ReasonBackoff, Status: 200, Outcome: history.OutcomeReplay})
			}
		case r < 0.35:
			write(history.Attempt{Op: i, Key: key, Attempt: 1, DelayReason: history.ReasonFirst, Status: 503, Outcome: history.OutcomeUnavailable, RetryAfterMS: 1000})
			write(history.Attempt{Op: i, Key: key, Attempt: 2, DelayMS: 1000 + rng.Float64()*100, CapMS: 100, DelayReason: history.ReasonRetryAfter, Status: 200, Outcome: history.OutcomeNew})
		default:
			write(history.Attempt{Op: i, Key: key, Attempt: 1, DelayReason: history.ReasonFirst, Status: 200, Outcome: history.OutcomeNew})
		}
	}
	for _, w := range []interface{ Close() error }{plan, hist, ledger} {
		if err := w.Close(); err != nil {
			tb.Fatal(err)
		}
	}
	if err := history.WriteRun(filepath.Join(dir, history.RunFile), history.Run{Seed: 1, Profile: "bench", Ops: n, Started: t0, Ended: at}); err != nil {
		tb.Fatal(err)
	}
	mdir := filepath.Join(dir, MetricsDir)
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
	_ = history.ReadFile(filepath.Join(dir, history.HistoryFile), func(history.Attempt) error { attempts++; return nil })
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
