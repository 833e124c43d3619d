package attack

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/testinfra"
	"github.com/paytest/paytest/profiles"
	"github.com/paytest/paytest/verify"
)

// BenchmarkDefaultProfile is `paytest attack` with no flags, as on a fresh
// machine: embedded Postgres and NATS, the three components as processes,
// 1000 operations under the default faults, reconcile, drain and verify.
// Target: at most 30 s from start to verdict.
func BenchmarkDefaultProfile(b *testing.B) {
	const target = 30 * time.Second
	prof, err := profiles.Load(profiles.Default)
	if err != nil {
		b.Fatal(err)
	}
	bin := testinfra.Paytest(b)
	for b.Loop() {
		// The run directory is kept when the verdict is not held.
		dir, err := os.MkdirTemp("", "paytest-bench-")
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		began := time.Now()
		res, err := Run(ctx, Config{
			Profile: prof, Ops: prof.Ops, Concurrency: prof.Concurrency,
			DuplicateRate: prof.DuplicateRate, RaceRate: prof.RaceRate, ReuseRate: prof.ReuseRate,
			Binary: bin, Out: dir,
		})
		took := time.Since(began)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		if res.Report.Verdict != verify.VerdictHeld {
			var sb strings.Builder
			_ = res.Report.WriteText(&sb)
			b.Fatalf("verdict %s in %s:\n%s", res.Report.Verdict, res.Dir, sb.String())
		}
		_ = os.RemoveAll(dir)
		b.ReportMetric(took.Seconds(), "s/run")
		b.ReportMetric(took.Seconds()/target.Seconds(), "x-of-30s-target")
		b.Logf("default profile, start to verdict: %s (target %s, ratio %.2f)", took.Round(time.Millisecond), target, took.Seconds()/target.Seconds())
	}
}
