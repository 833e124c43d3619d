package verify

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/rundir"
	"github.com/paytest/paytest/internal/testinfra"
)

// buildShardedRun writes the n shards of one plan of ops charges under
// base, as attack --shard K/N leaves them: the whole plan.jsonl in every
// shard (hard links of one file here), each shard's history of its own ops
// (every op a first attempt, 30% a lost answer and a backoff retry, 1% a
// race of two senders), and the system's evidence (ledger, metrics) in
// the shard that ended last. Returns the shards' directories and the
// attempts written.
func buildShardedRun(tb testing.TB, base string, ops, n int) ([]string, int) {
	tb.Helper()
	dirs := make([]string, n)
	hists := make([]*rundir.Writer[rundir.Attempt], n)
	for k := range n {
		dirs[k] = filepath.Join(base, fmt.Sprintf("shard-%d", k))
		if err := os.MkdirAll(filepath.Join(dirs[k], rundir.MetricsDir), 0o755); err != nil {
			tb.Fatal(err)
		}
		var err error
		if hists[k], err = rundir.Create[rundir.Attempt](filepath.Join(dirs[k], rundir.HistoryFile)); err != nil {
			tb.Fatal(err)
		}
	}
	last := dirs[n-1]
	plan, err := rundir.Create[rundir.Op](filepath.Join(dirs[0], rundir.PlanFile))
	if err != nil {
		tb.Fatal(err)
	}
	ledger, err := rundir.Create[rundir.LedgerRow](filepath.Join(last, rundir.LedgerFile))
	if err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	part := rundir.NewPartition(n)
	attempts := 0
	for i := 1; i <= ops; i++ {
		key := fmt.Sprintf("key-%08d", i)
		race := i%100 == 0
		op := rundir.Op{Op: i, Kind: rundir.KindCharge, Merchant: "demo", Key: key, Amount: 1299, BodySHA256: "0123456789abcdef", Senders: 1, Race: race}
		if race {
			op.Senders = 2
		}
		if err := plan.Write(op); err != nil {
			tb.Fatal(err)
		}
		if err := ledger.Write(rundir.LedgerRow{Merchant: "demo", Key: key, Effects: 1}); err != nil {
			tb.Fatal(err)
		}
		h := hists[part.Next(op)]
		at := t0.Add(time.Duration(i) * 50 * time.Microsecond)
		write := func(a rundir.Attempt) {
			a.Op, a.Key, a.Kind, a.CallSite, a.Merchant = i, key, rundir.KindCharge, "charge", "demo"
			a.Start, a.End = at, at.Add(2*time.Millisecond)
			at = at.Add(3 * time.Millisecond)
			attempts++
			if err := h.Write(a); err != nil {
				tb.Fatal(err)
			}
		}
		switch r := rng.Float64(); {
		case race:
			write(rundir.Attempt{Attempt: 1, DelayReason: rundir.ReasonFirst, Status: 200, Outcome: rundir.OutcomeNew})
			write(rundir.Attempt{Sender: 1, Attempt: 1, DelayReason: rundir.ReasonFirst, Status: 200, Outcome: rundir.OutcomeReplay, Replayed: true})
		case r < 0.30:
			write(rundir.Attempt{Attempt: 1, DelayReason: rundir.ReasonFirst, Outcome: rundir.OutcomeTimeout, Error: "context deadline exceeded"})
			write(rundir.Attempt{Attempt: 2, DelayMS: rng.Float64() * 100, CapMS: 100, DelayReason: rundir.ReasonBackoff, Status: 200, Outcome: rundir.OutcomeReplay, Replayed: true})
		default:
			write(rundir.Attempt{Attempt: 1, DelayReason: rundir.ReasonFirst, Status: 200, Outcome: rundir.OutcomeNew})
		}
	}
	closers := []interface{ Close() error }{plan, ledger}
	for _, h := range hists {
		closers = append(closers, h)
	}
	for _, c := range closers {
		if err := c.Close(); err != nil {
			tb.Fatal(err)
		}
	}
	for k, dir := range dirs {
		if k > 0 {
			if err := os.Link(filepath.Join(dirs[0], rundir.PlanFile), filepath.Join(dir, rundir.PlanFile)); err != nil {
				tb.Fatal(err)
			}
		}
		run := rundir.Run{Seed: 1, Profile: "bench", Ops: ops, Shard: rundir.Shard{K: k, N: n}.String(), PlanFingerprint: "bench",
			Started: t0, Ended: t0.Add(time.Duration(ops)*50*time.Microsecond + time.Duration(k)*time.Second)}
		if err := rundir.WriteRun(filepath.Join(dir, rundir.RunFile), run); err != nil {
			tb.Fatal(err)
		}
	}
	for name, vals := range map[string]map[string]float64{
		"consumer": {DefaultSideEffectMetric: float64(ops), MetricInboxDuplicates: 0, MetricDLQMessages: 0},
		"relay":    {MetricOutboxPending: 0, MetricOutboxLag: 0},
	} {
		if err := os.WriteFile(rundir.PagePath(last, name), []byte(page(vals)), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dirs, attempts
}

// verifyMergedEnv names the run directories' parent for
// TestVerifyMerged1MChild.
const verifyMergedEnv = "PAYTEST_VERIFY_MERGED1M_CHILD"

// TestVerifyMerged1MChild is BenchmarkVerifyMerged1M's child process: it
// merges the shards under $PAYTEST_VERIFY_MERGED1M_CHILD into one verdict
// (report.html and its plots included) and prints the time it took and its
// peak RSS. It does nothing unless the benchmark started it.
func TestVerifyMerged1MChild(t *testing.T) {
	base := os.Getenv(verifyMergedEnv)
	if base == "" {
		t.Skip("run by BenchmarkVerifyMerged1M")
	}
	dirs, err := filepath.Glob(filepath.Join(base, "shard-*"))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	set, err := OpenShards(dirs)
	if err != nil {
		t.Fatal(err)
	}
	evDir, _ := set.EvidenceDir()
	rep, err := VerifyShards(context.Background(), set, filepath.Join(base, "merged"), evDir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	secs := time.Since(start).Seconds()
	if rep.Verdict != VerdictHeld {
		var buf bytesBuffer
		_ = rep.WriteText(&buf)
		t.Fatalf("verdict %s:\n%s", rep.Verdict, buf)
	}
	fmt.Printf("ops=%d attempts=%d shards=%d seconds=%.2f vmhwm_kb=%d\n", rep.Ops, rep.Attempts, len(rep.Shards), secs, testinfra.PeakRSSKiB(t))
}

// BenchmarkVerifyMerged1M verifies 1,000,000 ops merged from 10 shards in a
// child process of its own and reports its time and peak RSS. Targets:
// under 10 s and 512 MB.
func BenchmarkVerifyMerged1M(b *testing.B) {
	const ops, shards = 1_000_000, 10
	base := b.TempDir()
	_, attempts := buildShardedRun(b, base, ops, shards)
	b.ResetTimer()
	for range b.N {
		cmd := exec.Command(os.Args[0], "-test.run=^TestVerifyMerged1MChild$", "-test.v")
		cmd.Env = append(os.Environ(), verifyMergedEnv+"="+base)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("child: %v\n%s", err, out)
		}
		var gotOps, gotAttempts, gotShards, kb int
		var secs float64
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "ops=") {
				fmt.Sscanf(line, "ops=%d attempts=%d shards=%d seconds=%g vmhwm_kb=%d", &gotOps, &gotAttempts, &gotShards, &secs, &kb)
			}
		}
		if gotOps != ops || gotAttempts != attempts || gotShards != shards || kb == 0 {
			b.Fatalf("child output: %s", out)
		}
		mb := float64(kb) / 1024
		b.ReportMetric(secs, "s/verify")
		b.ReportMetric(mb, "peak-RSS-MB")
		b.Logf("merged %d shards: %d ops, %d attempts in %.2f s, peak RSS %.0f MB (targets: 10 s, 512 MB)", shards, ops, attempts, secs, mb)
	}
}
