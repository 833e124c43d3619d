package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/rundir"
	"github.com/paytest/paytest/verify"
)

// splitRun turns the whole run in dir into n shard directories under a
// new base, as n `paytest attack --shard K/N` processes leave them: the
// whole plan in each, each shard's own history, and the system's evidence
// (ledger, metrics) collected by the last shard to end.
func splitRun(t *testing.T, dir string, n int) string {
	t.Helper()
	base := t.TempDir()
	plan, err := os.ReadFile(filepath.Join(dir, rundir.PlanFile))
	if err != nil {
		t.Fatal(err)
	}
	run, err := rundir.ReadRun(filepath.Join(dir, rundir.RunFile))
	if err != nil {
		t.Fatal(err)
	}
	owner := map[int]int{}
	part := rundir.NewPartition(n)
	if err := rundir.ReadFile(filepath.Join(dir, rundir.PlanFile), func(op rundir.Op) error {
		owner[op.Op] = part.Next(op)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	hists := make([]*rundir.Writer[rundir.Attempt], n)
	for k := range n {
		sd := filepath.Join(base, fmt.Sprintf("shard-%d", k))
		if err := os.MkdirAll(sd, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sd, rundir.PlanFile), plan, 0o644); err != nil {
			t.Fatal(err)
		}
		r := run
		r.Shard, r.PlanFingerprint, r.Ended = rundir.Shard{K: k, N: n}.String(), "fp", run.Ended.Add(time.Duration(k)*time.Second)
		if err := rundir.WriteRun(filepath.Join(sd, rundir.RunFile), r); err != nil {
			t.Fatal(err)
		}
		if hists[k], err = rundir.Create[rundir.Attempt](filepath.Join(sd, rundir.HistoryFile)); err != nil {
			t.Fatal(err)
		}
	}
	if err := rundir.ReadFile(filepath.Join(dir, rundir.HistoryFile), func(a rundir.Attempt) error {
		return hists[owner[a.Op]].Write(a)
	}); err != nil {
		t.Fatal(err)
	}
	for _, h := range hists {
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
	}
	last := filepath.Join(base, fmt.Sprintf("shard-%d", n-1))
	for _, name := range []string{rundir.LedgerFile, rundir.MetricsDir} {
		if err := os.Rename(filepath.Join(dir, name), filepath.Join(last, name)); err != nil {
			t.Fatal(err)
		}
	}
	return base
}

func TestVerifyShardsCommand(t *testing.T) {
	tests := []struct {
		name   string
		args   func(t *testing.T, base string) []string
		exit   int
		stdout []string
		errs   string // the error's message, for a usage error
		report string // where the merged report.json must be, relative to base
	}{
		{"a glob merges every shard", func(_ *testing.T, base string) []string {
			return []string{"--run", filepath.Join(base, "shard-*")}
		}, 0, []string{"verdict: HELD", "40 of 40 (ledger 40 of 40)", "shard 0/3: 14 ops", "shard 2/3: 13 ops", "evidence of the system from shard 2/3"}, "", "merged"},
		{"--run repeated, --out", func(t *testing.T, base string) []string {
			return []string{"--run", filepath.Join(base, "shard-1"), "--run", filepath.Join(base, "shard-0"), "--run", filepath.Join(base, "shard-2"), "--out", filepath.Join(base, "verdict")}
		}, 0, []string{"verdict: HELD"}, "", "verdict"},
		{"a shard missing", func(_ *testing.T, base string) []string {
			return []string{"--run", filepath.Join(base, "shard-0"), "--run", filepath.Join(base, "shard-2")}
		}, 3, []string{"verdict: INCONCLUSIVE", "shard 1/3 missing (no run directory given): its 13 ops never sent"}, "", "merged"},
		{"mixed seeds", func(t *testing.T, base string) []string {
			r, _ := rundir.ReadRun(filepath.Join(base, "shard-1", rundir.RunFile))
			r.Seed = 8
			if err := rundir.WriteRun(filepath.Join(base, "shard-1", rundir.RunFile), r); err != nil {
				t.Fatal(err)
			}
			return []string{"--run", filepath.Join(base, "shard-*")}
		}, 2, nil, "shards of different seeds: " + "%s/shard-0 has seed 7, %s/shard-1 has seed 8", ""},
		{"a shard twice", func(_ *testing.T, base string) []string {
			return []string{"--run", filepath.Join(base, "shard-*"), "--run", filepath.Join(base, "shard-2")}
		}, 2, nil, "shard 2/3 given twice", ""},
		{"a glob matching nothing", func(_ *testing.T, base string) []string {
			return []string{"--run", filepath.Join(base, "nope-*")}
		}, 2, nil, "matches no directory", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := splitRun(t, writeVerifyRun(t, 40, 40, nil), 3)
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), append([]string{"verify"}, tc.args(t, base)...), &stdout, &stderr)
			if got := exitCode(err); got != tc.exit {
				t.Fatalf("exit %d (err %v); want %d\nstdout:\n%s\nstderr:\n%s", got, err, tc.exit, stdout.String(), stderr.String())
			}
			for _, want := range tc.stdout {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
				}
			}
			if want := strings.ReplaceAll(tc.errs, "%s", base); tc.errs != "" && !strings.Contains(fmt.Sprint(err), want) {
				t.Errorf("error %v; want it to say %q", err, want)
			}
			if tc.report != "" {
				rep, err := verify.ReadReport(filepath.Join(base, tc.report, rundir.ReportFile))
				if err != nil || rep.ShardCount != 3 || len(rep.Shards) != 3 {
					t.Errorf("merged report in %s: %v, %+v", tc.report, err, rep)
				}
			}
		})
	}
}

// TestAttackShardFlags: --shard divides a profile's or the default
// concurrency, rate and in-flight cap, keeps explicit ones, and refuses
// what cannot run before anything starts.
func TestAttackShardFlags(t *testing.T) {
	prof := filepath.Join(t.TempDir(), "open.yaml")
	if err := os.WriteFile(prof, []byte("name: open\nops: 1000\nconcurrency: 32\nrate: \"400\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	target := []string{"--target", "http://127.0.0.1:1/pay", "--metrics-url", "http://127.0.0.1:1/metrics", "--seed", "5"}
	for _, tt := range []struct {
		args                  []string
		shard                 rundir.Shard
		concurrency, inflight int
		rate                  float64
		ops                   int
	}{
		{[]string{"--shard", "1/4"}, rundir.Shard{K: 1, N: 4}, 8, 0, 0, 1000},
		{[]string{"--shard", "1/4", "--concurrency", "10"}, rundir.Shard{K: 1, N: 4}, 10, 0, 0, 1000},
		{[]string{"--shard", "0/3", "--profile", prof}, rundir.Shard{K: 0, N: 3}, 11, 3334, 400.0 / 3, 1000},
		{[]string{"--shard", "0/4", "--rate", "100", "--duration", "10s"}, rundir.Shard{K: 0, N: 4}, 8, 2500, 100, 4000},
		{[]string{"--shard", "0/1"}, rundir.Shard{K: 0, N: 1}, 32, 0, 0, 1000},
	} {
		cfg, _, err := resolveCfg(t, append(target, tt.args...)...)
		if err != nil {
			t.Fatalf("%q: %v", tt.args, err)
		}
		p := cfg.Plan
		if p.Shard != tt.shard || p.Concurrency != tt.concurrency || p.MaxInflight != tt.inflight || p.Rate.From != tt.rate || p.Ops != tt.ops {
			t.Errorf("%q: shard %v, concurrency %d, max-inflight %d, rate %v, ops %d; want %v %d %d %v %d",
				tt.args, p.Shard, p.Concurrency, p.MaxInflight, p.Rate.From, p.Ops, tt.shard, tt.concurrency, tt.inflight, tt.rate, tt.ops)
		}
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--shard", "4/4"}, "--shard 4/4: the index K must be within 0..3"},
		{[]string{"--shard", "2"}, "want K/N"},
		{[]string{"--shard", "0/0"}, "N must be at least 1"},
		{[]string{"--shard", "0/5", "--ops", "4"}, "5 shards for 4 ops"},
		{[]string{"--shard", "0/2", "--fault-shard", "2"}, "--fault-shard 2: want a shard within 0..1"},
		{[]string{"--fault-shard", "1"}, "--fault-shard applies with --shard"},
		{[]string{"--shard", "0/2", "--junit", filepath.Join(t.TempDir(), "j.xml")}, "give --junit to paytest verify"},
	} {
		_, _, err := resolveCfg(t, append(target, tt.args...)...)
		if apperr.Code(err) != apperr.EUSAGE || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v; want a usage error mentioning %q", tt.args, err, tt.want)
		}
	}
	if _, _, err := resolveCfg(t, "--target", "http://127.0.0.1:1/pay", "--metrics-url", "http://127.0.0.1:1/metrics", "--shard", "0/2"); apperr.Code(err) != apperr.EUSAGE || !strings.Contains(err.Error(), "needs --seed") {
		t.Errorf("--shard without --seed: %v", err)
	}
}
