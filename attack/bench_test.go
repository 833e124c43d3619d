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

// BenchmarkBacklog18kProfile is `paytest attack --profile backlog` at its
// full size, on embedded defaults: 18,000 charges written while the broker
// is cut, then drained at the profile's --publish-rate, and the same
// backlog drained with no limit (--relay-arg=--publish-rate=0), side by
// side. It reports each drain's time, measured rate, the consumer's peak
// in-flight and redeliveries, and the wall time of each run.
func BenchmarkBacklog18kProfile(b *testing.B) {
	prof, err := profiles.Load("backlog")
	if err != nil {
		b.Fatal(err)
	}
	bin := testinfra.Paytest(b)
	for b.Loop() {
		for _, limited := range []bool{true, false} {
			p := prof
			label := "limited"
			if !limited {
				p.Relay = append(append([]string(nil), prof.Relay...), "--publish-rate=0")
				label = "unlimited"
			}
			dir, err := os.MkdirTemp("", "paytest-bench-")
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			began := time.Now()
			res, err := Run(ctx, Config{
				Profile: p, Ops: p.Ops, Concurrency: p.Concurrency,
				DuplicateRate: p.DuplicateRate, RaceRate: p.RaceRate, ReuseRate: p.ReuseRate,
				Binary: bin, Out: dir,
			})
			took := time.Since(began)
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			rep := res.Report
			if rep.Verdict != verify.VerdictHeld || len(rep.Backlog) != 1 {
				var sb strings.Builder
				_ = rep.WriteText(&sb)
				b.Fatalf("%s: verdict %s, %d backlog figures in %s:\n%s", label, rep.Verdict, len(rep.Backlog), res.Dir, sb.String())
			}
			_ = os.RemoveAll(dir)
			d := rep.Backlog[0]
			b.ReportMetric(d.PeakPending, label+"_peak_pending")
			b.ReportMetric(d.DrainSeconds, label+"_drain_s")
			b.ReportMetric(d.PublishRate, label+"_events/s")
			b.ReportMetric(d.ApplySeconds, label+"_apply_s")
			b.ReportMetric(d.ConsumerInflightPeak, label+"_peak_inflight")
			b.ReportMetric(d.Redeliveries, label+"_redeliveries")
			b.ReportMetric(took.Seconds(), label+"_s/run")
			b.Logf("%s (%d ops): %s; run %s", label, rep.Ops, d.Summary(), took.Round(time.Millisecond))
		}
	}
}
