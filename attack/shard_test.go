package attack

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/foreign"
	"github.com/paytest/paytest/internal/rundir"
	"github.com/paytest/paytest/internal/testinfra"
	"github.com/paytest/paytest/profiles"
	"github.com/paytest/paytest/verify"
	"github.com/paytest/paytest/verify/verifytest"
)

// shardCase is a plan and an endpoint a sharded run is compared on.
type shardCase struct {
	name                   string
	ep                     foreign.Options
	ops, concurrency       int
	duplicate, race, reuse float64
}

// shardCases: an endpoint that holds (its stored answers replayed) and one
// that keeps no keys (every request a charge: violated, with counts the
// plan alone decides).
var shardCases = []shardCase{
	{name: "holds", ep: foreign.Options{Store: foreign.StoreAtomic, Status: 200}, ops: 120, concurrency: 8, duplicate: 0.3, reuse: 0.05},
	{name: "violated", ep: foreign.Options{Store: foreign.StoreNone}, ops: 120, concurrency: 8, duplicate: 0.3, race: 0.1, reuse: 0.05},
}

// shardEndpoint starts tc's endpoint over a fresh ledger: its URL, metrics
// URL and database URL.
func shardEndpoint(t *testing.T, tc shardCase) (url, metrics, db string) {
	t.Helper()
	pool := testinfra.PostgresPool(t)
	o := tc.ep
	o.Table = "ledger"
	e, err := foreign.New(context.Background(), pool, o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv.URL + foreign.Path, srv.URL + "/metrics", pool.Config().ConnString()
}

// shardConfig is shard k of n of tc's plan (n of 1: the whole plan) against
// the endpoint, written to out.
func shardConfig(tc shardCase, seed int64, k, n int, url, metrics, db, out string) Config {
	cfg := Config{
		Profile: profiles.Profile{Name: "shards-" + tc.name}, Out: out,
		Plan: PlanConfig{Ops: tc.ops, Concurrency: max(1, tc.concurrency/n), Seed: seed,
			DuplicateRate: tc.duplicate, RaceRate: tc.race, ReuseRate: tc.reuse},
		Target:   TargetConfig{URL: url},
		Evidence: EvidenceConfig{MetricsURL: metrics, SideEffectMetric: foreign.DefaultMetric, DatabaseURL: db, LedgerQuery: foreignLedgerQuery, DrainTimeout: 5 * time.Second, ReconcileTimeout: 20 * time.Second},
	}
	if n > 1 {
		cfg.Plan.Shard = rundir.Shard{K: k, N: n}
	}
	return cfg
}

// runShards runs the n shards of tc's plan at once against one endpoint
// and returns their run directories.
func runShards(t *testing.T, tc shardCase, seed int64, n int) []string {
	t.Helper()
	url, metrics, db := shardEndpoint(t, tc)
	base := t.TempDir()
	dirs := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for k := range n {
		dirs[k] = filepath.Join(base, fmt.Sprintf("shard-%d", k))
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cfg := shardConfig(tc, seed, k, n, url, metrics, db, dirs[k])
			cfg.Plan.Shard = rundir.Shard{K: k, N: n}
			res, err := Run(ctx, cfg)
			if err == nil && n > 1 && (res.Report != nil || res.Stopped != "") {
				err = fmt.Errorf("shard %d/%d: report %v, stopped %q: want no verdict of its own and no early stop", k, n, res.Report, res.Stopped)
			}
			errs[k] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return dirs
}

// mergeShards is the merged verdict of dirs, with the evidence of the
// shard EvidenceDir picks.
func mergeShards(t *testing.T, dirs []string) *verify.Report {
	t.Helper()
	set, err := verify.OpenShards(dirs)
	if err != nil {
		t.Fatal(err)
	}
	evDir, _ := set.EvidenceDir()
	rep, err := verify.VerifyShards(context.Background(), set, filepath.Join(filepath.Dir(dirs[0]), "merged"), evDir, verify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestShardsMergeToTheSingleVerdict runs one plan as one process and as 2
// and 4 shards at once, each against a fresh endpoint, and wants the
// merged verdict to be the single run's: every check's status and figure.
func TestShardsMergeToTheSingleVerdict(t *testing.T) {
	const seed = 7
	for _, tc := range shardCases {
		t.Run(tc.name, func(t *testing.T) {
			url, metrics, db := shardEndpoint(t, tc)
			single := run(t, shardConfig(tc, seed, 0, 1, url, metrics, db, t.TempDir())).Report
			for _, n := range []int{1, 2, 4} {
				merged := mergeShards(t, runShards(t, tc, seed, n))
				verifytest.SameVerdict(t, fmt.Sprintf("%d shards", n), single, merged)
				if n > 1 && len(merged.Shards) != n {
					t.Errorf("%d shards: report.json shards %+v", n, merged.Shards)
				}
			}
		})
	}
}

// TestShardMissingOrKilled: a shard not given, or one that died mid-run
// (its history cut short, its run.yaml never given an end), leaves the
// merged verdict inconclusive, never held, naming the shard and its ops.
func TestShardMissingOrKilled(t *testing.T) {
	tc := shardCases[0]
	dirs := runShards(t, tc, 5, 2)
	if rep := mergeShards(t, dirs); rep.Verdict != verify.VerdictHeld {
		t.Fatalf("both shards: %s, want held: %v", rep.Verdict, rep.Err())
	}

	t.Run("missing", func(t *testing.T) {
		rep := mergeShards(t, dirs[:1])
		if rep.Verdict != verify.VerdictInconclusive || !strings.Contains(strings.Join(rep.EvidenceErrors, "; "), "shard 1/2 missing") {
			t.Fatalf("shard 1/2 missing: %s, evidence errors %q", rep.Verdict, rep.EvidenceErrors)
		}
		if f := rep.Shards[1]; !f.Missing || f.NeverSent == 0 || f.NeverSent != f.Ops || len(f.NeverSentOps) == 0 {
			t.Errorf("shard 1/2 missing: %+v", f)
		}
	})

	t.Run("killed", func(t *testing.T) {
		killed := filepath.Join(t.TempDir(), "shard-1")
		if err := os.CopyFS(killed, os.DirFS(dirs[1])); err != nil {
			t.Fatal(err)
		}
		cutHistory(t, killed)
		rep := mergeShards(t, []string{dirs[0], killed})
		errs := strings.Join(rep.EvidenceErrors, "; ")
		if rep.Verdict != verify.VerdictInconclusive || !strings.Contains(errs, "shard 1/2 ("+killed+") did not finish") {
			t.Fatalf("shard 1/2 killed: %s, evidence errors %q", rep.Verdict, rep.EvidenceErrors)
		}
		if f := rep.Shards[1]; f.Finished || f.NeverSent == 0 || len(f.NeverSentOps) == 0 || !strings.Contains(errs, fmt.Sprintf("ops %d", f.NeverSentOps[0])) {
			t.Errorf("shard 1/2 killed: %+v; evidence errors %q", f, errs)
		}
		if c := rep.Check(verify.CheckEffectsEqualOps); c.Status != verify.StatusInconclusive {
			t.Errorf("%s: %s %q with ops never sent", c.Name, c.Status, c.Figure)
		}
	})
}

// cutHistory makes dir look like a shard killed mid-run: the second half
// of its history gone, its run.yaml as written at the start (no end).
func cutHistory(t *testing.T, dir string) {
	t.Helper()
	path := filepath.Join(dir, rundir.HistoryFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	if err := os.WriteFile(path, []byte(strings.Join(lines[:len(lines)/2], "")), 0o644); err != nil {
		t.Fatal(err)
	}
	run, err := rundir.ReadRun(filepath.Join(dir, rundir.RunFile))
	if err != nil {
		t.Fatal(err)
	}
	run.Ended = time.Time{}
	if err := rundir.WriteRun(filepath.Join(dir, rundir.RunFile), run); err != nil {
		t.Fatal(err)
	}
}

// TestShardValidation: a shard that cannot run is refused with a usage
// error before anything starts.
func TestShardValidation(t *testing.T) {
	tests := []struct {
		name  string
		shard rundir.Shard
		fault int
		ops   int
		url   string
		want  string
	}{
		{"K past N", rundir.Shard{K: 4, N: 4}, 0, 100, "http://127.0.0.1:1/pay", "within 0..3"},
		{"negative K", rundir.Shard{K: -1, N: 2}, 0, 100, "http://127.0.0.1:1/pay", "within 0..1"},
		{"more shards than ops", rundir.Shard{K: 0, N: 5}, 0, 4, "http://127.0.0.1:1/pay", "at most 4 shards"},
		{"fault shard outside", rundir.Shard{K: 0, N: 2}, 2, 100, "http://127.0.0.1:1/pay", "--fault-shard 2"},
		{"no target", rundir.Shard{K: 0, N: 2}, 0, 100, "", "give --target"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "run")
			cfg := Config{Out: out, Plan: PlanConfig{Ops: tt.ops, Seed: 1, Shard: tt.shard, FaultShard: tt.fault},
				Target: TargetConfig{URL: tt.url}, Evidence: EvidenceConfig{MetricsURL: "http://127.0.0.1:1/metrics"}}
			_, err := Run(context.Background(), cfg)
			if apperr.Code(err) != apperr.EUSAGE || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("%v: want a usage error mentioning %q", err, tt.want)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("the run directory %s was created", out)
			}
		})
	}
}

// TestShardFaults: a shard other than the fault shard leaves the faults on
// the whole system to it and fires the per-connection ones itself.
func TestShardFaults(t *testing.T) {
	specs := []rundir.FaultSpec{{Fault: rundir.FaultEatResponse}, {Fault: rundir.FaultKill}, {Fault: rundir.FaultLatency},
		{Fault: rundir.FaultOutage}, {Fault: rundir.FaultPoison}, {Fault: rundir.FaultBrokerCut}, {Fault: rundir.FaultRedisLoss}}
	names := func(xs []rundir.FaultSpec) string {
		var out []string
		for _, x := range xs {
			out = append(out, x.Fault)
		}
		return strings.Join(out, ",")
	}
	for _, tt := range []struct {
		shard         rundir.Shard
		fault         int
		fire, leftOut string
	}{
		{rundir.Shard{}, 0, names(specs), ""},
		{rundir.Shard{K: 1, N: 3}, 1, names(specs), ""},
		{rundir.Shard{K: 0, N: 3}, 1, "eat-response,latency", "kill,outage,poison,broker-cut,redis-loss"},
	} {
		fire, left := shardFaults(&PlanConfig{Shard: tt.shard, FaultShard: tt.fault}, specs)
		if names(fire) != tt.fire || names(left) != tt.leftOut {
			t.Errorf("shard %s, fault shard %d: fires %q, leaves %q; want %q, %q", tt.shard, tt.fault, names(fire), names(left), tt.fire, tt.leftOut)
		}
	}
}
