package attack

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/paytest/paytest/attack/load"
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
		_, took := benchRun(b, prof, bin, 3*time.Minute)
		b.ReportMetric(took.Seconds(), "s/run")
		b.ReportMetric(took.Seconds()/target.Seconds(), "x-of-30s-target")
		b.Logf("default profile, start to verdict: %s (target %s, ratio %.2f)", took.Round(time.Millisecond), target, took.Seconds()/target.Seconds())
	}
}

// BenchmarkDefaultProfile10k is `paytest attack --ops 10000`: the default
// profile's faults and open model over ten times the operations. Target: at
// most 10 s from start to verdict, every check held. The run's achieved
// throughput and dropped arrivals are reported with it: the time is bounded
// by what the bundled system sustains on the machine.
func BenchmarkDefaultProfile10k(b *testing.B) {
	const target = 10 * time.Second
	prof, err := profiles.Load(profiles.Default)
	if err != nil {
		b.Fatal(err)
	}
	prof.Ops = 10_000
	bin := testinfra.Paytest(b)
	for b.Loop() {
		res, took := benchRun(b, prof, bin, 3*time.Minute)
		tp := res.Report.Throughput
		if tp == nil {
			b.Fatal("no throughput in the report")
		}
		b.ReportMetric(took.Seconds(), "s/run")
		b.ReportMetric(took.Seconds()/target.Seconds(), "x-of-10s-target")
		b.ReportMetric(tp.ConfirmedOpsPerSecond, "confirmed_ops/s")
		b.ReportMetric(float64(tp.DroppedArrivals), "dropped_arrivals")
		b.Logf("default profile at 10,000 ops (%s/s): start to verdict %s (target %s, ratio %.2f); %.0f confirmed ops/s, %d arrivals dropped at the in-flight cap",
			prof.Rate, took.Round(time.Millisecond), target, took.Seconds()/target.Seconds(), tp.ConfirmedOpsPerSecond, tp.DroppedArrivals)
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
			res, took := benchRun(b, p, bin, 5*time.Minute)
			rep := res.Report
			if len(rep.Backlog) != 1 {
				b.Fatalf("%s: %d backlog figures, want 1", label, len(rep.Backlog))
			}
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

// benchRun runs prof on embedded defaults to its verdict, which must hold;
// the run directory is removed then, and kept (named) when it does not.
func benchRun(b *testing.B, prof profiles.Profile, bin string, limit time.Duration) (*Result, time.Duration) {
	b.Helper()
	dir, err := os.MkdirTemp("", "paytest-bench-")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	pc := PlanConfig{Ops: prof.Ops, Concurrency: prof.Concurrency, DuplicateRate: prof.DuplicateRate, RaceRate: prof.RaceRate, ReuseRate: prof.ReuseRate, MaxInflight: prof.MaxInflight}
	if prof.Rate != "" {
		// The profile's open model, as `paytest attack` drives it.
		if pc.Rate, err = load.ParseRate(prof.Rate); err != nil {
			b.Fatal(err)
		}
	}
	began := time.Now()
	res, err := Run(ctx, Config{Profile: prof, Out: dir, Plan: pc, Bundled: BundledConfig{binary: bin}})
	took := time.Since(began)
	if err != nil {
		b.Fatal(err)
	}
	if res.Report.Verdict != verify.VerdictHeld {
		b.Fatalf("profile %s: verdict %s in %s:\n%s", prof.Name, res.Report.Verdict, res.Dir, reportText(res.Report))
	}
	_ = os.RemoveAll(dir)
	return res, took
}
