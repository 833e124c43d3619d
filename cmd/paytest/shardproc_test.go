package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/foreign"
	"github.com/paytest/paytest/internal/rundir"
	"github.com/paytest/paytest/internal/testinfra"
	"github.com/paytest/paytest/verify"
	"github.com/paytest/paytest/verify/verifytest"
)

// stackProc is a `paytest serve stack` child process: where its charge
// service listens, its consumer's metrics page and its database.
type stackProc struct {
	charge, consumerMetrics, db string
}

// startStackProc starts `paytest serve stack` on a new database (its NATS
// embedded, so no stream is shared with another stack) in a process group
// of its own (startUntil), and returns once it has printed where
// everything listens (it prints nothing before every component answers
// /readyz). Its group is killed when the test ends.
func startStackProc(t *testing.T) stackProc {
	t.Helper()
	st := stackProc{db: testinfra.Postgres(t)}
	_, lines := startUntil(t, t.TempDir(), "Ctrl-C to stop.", "serve", "stack", "--database-url", st.db)
	for _, line := range lines {
		switch f := strings.Fields(line); {
		case len(f) == 2 && f[0] == "charge:":
			st.charge = f[1]
		case len(f) == 3 && f[0] == "metrics:" && f[1] == "consumer":
			st.consumerMetrics = f[2]
		}
	}
	if st.charge == "" || st.consumerMetrics == "" {
		t.Fatalf("serve stack ready without a charge URL or the consumer's metrics: %+v\n%s", st, strings.Join(lines, "\n"))
	}
	return st
}

// procTarget is what a process run attacks: the flags that name the
// endpoint and, for attack or verify live, its evidence.
type procTarget struct {
	target, evidence []string
}

// target is the stack's charge service, its ledger the consumer's (one row
// per charge applied) and its side-effect counter the consumer's.
func (st stackProc) target() procTarget {
	return procTarget{
		target: []string{"--target", st.charge, "--header", "Authorization: Bearer sk_test_demo"},
		evidence: []string{"--database-url", st.db, "--ledger-query", "SELECT idempotency_key, count(*) FROM ledger_entries GROUP BY 1",
			"--metrics-url", st.consumerMetrics},
	}
}

// startStackTarget starts a stack (startStackProc) and returns it as a
// target.
func startStackTarget(t *testing.T) procTarget { return startStackProc(t).target() }

// procShardPlan is the plan every process run below sends: duplicate
// senders, same-key races and key reuse, and no fault (the endpoint
// profile's eat-response window drops answers at random, which no two runs
// would share).
func procShardPlan(tg procTarget, seed int64, ops int) []string {
	args := append(append([]string{"attack"}, tg.target...), tg.evidence...)
	return append(args, "--skip-fault", "eat-response",
		"--ops", strconv.Itoa(ops), "--seed", strconv.FormatInt(seed, 10),
		"--duplicate-rate", "0.3", "--race-rate", "0.1", "--reuse-rate", "0.05", "--no-progress")
}

// paytestProc is a paytest command run as a child process.
type paytestProc struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan struct{}
	code           int
}

// startProc starts paytest with args in a process group of its own,
// killed (if still running) when the test ends.
func startProc(t *testing.T, args ...string) *paytestProc {
	t.Helper()
	p := &paytestProc{cmd: exec.Command(testinfra.Paytest(t), args...), done: make(chan struct{})}
	p.cmd.Env = cleanEnv()
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	ownGroup(p.cmd)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := p.cmd.Wait()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			p.code = ee.ExitCode()
		case err != nil:
			p.code = -1
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		killGroup(p.cmd)
		<-p.done
	})
	return p
}

// wait waits for the process to end and returns its exit code (-1: killed
// by a signal).
func (p *paytestProc) wait() int {
	<-p.done
	return p.code
}

// String is the process's command line and output, for a failure.
func (p *paytestProc) String() string {
	return fmt.Sprintf("%q\nstdout:\n%s\nstderr:\n%s", p.cmd.Args[1:], lastLinesOf(p.stdout.String(), 40), lastLinesOf(p.stderr.String(), 40))
}

// runProc runs paytest with args to its end and returns the process.
func runProc(t *testing.T, args ...string) *paytestProc {
	t.Helper()
	p := startProc(t, args...)
	p.wait()
	return p
}

// attackShardProcs runs n `paytest attack --shard k/n` processes of one
// plan at once against a fresh target, into base/shard-K, and wants each
// to exit 0 (a shard of several gives no verdict of its own).
func attackShardProcs(t *testing.T, fresh func(*testing.T) procTarget, base string, seed int64, ops, n int) procTarget {
	t.Helper()
	tg := fresh(t)
	procs := make([]*paytestProc, n)
	for k := range n {
		procs[k] = startProc(t, append(procShardPlan(tg, seed, ops),
			"--shard", fmt.Sprintf("%d/%d", k, n), "--out", filepath.Join(base, fmt.Sprintf("shard-%d", k)))...)
	}
	for k, p := range procs {
		if code := p.wait(); code != 0 {
			t.Fatalf("shard %d/%d: exit %d, want 0\n%s", k, n, code, p)
		}
	}
	return tg
}

// singleProc runs the plan of seed as one process against a fresh target
// and returns its report and exit code, which must be want.
func singleProc(t *testing.T, fresh func(*testing.T) procTarget, seed int64, ops, want int) (*verify.Report, int) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "single")
	p := runProc(t, append(procShardPlan(fresh(t), seed, ops), "--out", dir)...)
	if p.code != want {
		t.Fatalf("one process: exit %d, want %d\n%s", p.code, want, p)
	}
	rep, err := verify.ReadReport(filepath.Join(dir, rundir.ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	return rep, p.code
}

// timingChecks count answers that depend on which of two senders of one
// key reaches the charge service first (409 "in flight", and the retries
// after its Retry-After): the same plan gives other counts run to run,
// sharded or not. Their figures are not compared, only that neither run
// failed them.
var timingChecks = []string{verify.CheckRetryAfterHonoured, verify.CheckFullJitter, verify.CheckNoKeyStuck}

// TestShardProcessesMergeToTheSingleVerdict is attack/shard_test.go's
// TestShardsMergeToTheSingleVerdict with real processes: the bundled
// reference system as a `paytest serve stack` child, one plan sent by one
// `paytest attack` process and by 1, 2 and 4 `--shard K/N` processes at
// once (a fresh stack each time: the same seed reuses the same keys), and
// `paytest verify --run 'DIR/shard-*'` merging the shards (offline, from
// the evidence the last shard collected, and for 4 shards with the
// evidence flags, collected once after every shard ended). The merged
// verdict, exit code and every check must be the single run's. Then a
// shard SIGKILLed mid-run leaves the merged verdict inconclusive (exit 3)
// naming its ops never sent, and shards of two seeds are refused (exit 2).
func TestShardProcessesMergeToTheSingleVerdict(t *testing.T) {
	if testing.Short() {
		t.Skip("boots the reference system five times")
	}
	const seed, ops = 11, 120
	began := time.Now()
	defer func() { t.Logf("wall time %s", time.Since(began).Round(100*time.Millisecond)) }()

	// Each stack is stopped (by its subtest's end) before the next starts:
	// five at once would hold more database connections than a default
	// Postgres allows.
	var single *verify.Report
	var code int
	t.Run("one process", func(t *testing.T) { single, code = singleProc(t, startStackTarget, seed, ops, exitHeld) })
	if single == nil {
		t.FailNow()
	}

	var bases []string
	for _, n := range []int{1, 2, 4} {
		base := t.TempDir()
		bases = append(bases, base)
		t.Run(fmt.Sprintf("%d shards", n), func(t *testing.T) {
			compareShardProcs(t, startStackTarget, base, single, code, seed, ops, n)
		})
	}

	t.Run("killed", func(t *testing.T) {
		// Another seed, and an open model of 60 ops/s per shard, so that
		// shard 1 is still sending when it is killed.
		const killSeed = 12
		base := t.TempDir()
		plan := slices.Clip(append(procShardPlan(startStackTarget(t), killSeed, 240), "--rate", "60"))
		dirs := []string{filepath.Join(base, "shard-0"), filepath.Join(base, "shard-1")}
		shard0 := startProc(t, append(plan, "--shard", "0/2", "--out", dirs[0])...)
		shard1 := startProc(t, append(plan, "--shard", "1/2", "--out", dirs[1])...)
		sent := 0
		testinfra.WaitFor(t, 60*time.Second, func() error {
			select {
			case <-shard1.done:
				return nil // caught below, with its output
			default:
			}
			b, err := os.ReadFile(filepath.Join(dirs[1], rundir.HistoryFile))
			if sent = bytes.Count(b, []byte("\n")); err != nil || sent < 10 {
				return fmt.Errorf("shard 1/2's history: %d attempts (%v)", sent, err)
			}
			return nil
		})
		killGroup(shard1.cmd)
		code := shard1.wait()
		run, err := rundir.ReadRun(filepath.Join(dirs[1], rundir.RunFile))
		if err != nil {
			t.Fatal(err)
		}
		if code != -1 || !run.Ended.IsZero() {
			t.Fatalf("shard 1/2 finished (exit %d, ended %s) before it was killed: the test proves nothing\n%s", code, run.Ended, shard1)
		}
		if code := shard0.wait(); code != 0 {
			t.Fatalf("shard 0/2: exit %d, want 0\n%s", code, shard0)
		}
		v := runProc(t, "verify", "--run", filepath.Join(base, "shard-*"))
		if v.code != exitInconclusive || !strings.Contains(v.stdout.String(), "verdict: INCONCLUSIVE") {
			t.Fatalf("shard 1/2 killed: verify exit %d, want %d (inconclusive)\n%s", v.code, exitInconclusive, v)
		}
		rep, err := verify.ReadReport(filepath.Join(base, "merged", rundir.ReportFile))
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Shards) != 2 {
			t.Fatalf("shards %+v, want 2", rep.Shards)
		}
		f := rep.Shards[1]
		errs := strings.Join(rep.EvidenceErrors, "; ")
		t.Logf("killed after %d attempts recorded: %s", sent, f.TextLine(2))
		if f.Finished || f.Attempts < sent || f.NeverSent == 0 || f.NeverSent >= f.Ops || len(f.NeverSentOps) == 0 {
			t.Fatalf("shard 1/2 killed after %d attempts: %+v; want some of its ops judged and the rest named never sent", sent, f)
		}
		if want := fmt.Sprintf("shard 1/2 (%s) did not finish (its run.yaml has no end): %d of its %d ops never sent (ops %d", dirs[1], f.NeverSent, f.Ops, f.NeverSentOps[0]); !strings.Contains(errs, want) || !strings.Contains(v.stdout.String(), want) {
			t.Errorf("evidence errors %q and stdout lack %q\n%s", errs, want, v)
		}
		if c := rep.Check(verify.CheckEffectsEqualOps); c == nil || c.Status != verify.StatusInconclusive {
			t.Errorf("%s: %+v with ops never sent", verify.CheckEffectsEqualOps, c)
		}
		for _, c := range rep.Checks {
			if c.Status == verify.StatusFailed {
				t.Errorf("%s failed with one shard killed: %s %s", c.Name, c.Figure, c.Detail)
			}
		}

		t.Run("mixed seeds", func(t *testing.T) {
			other := filepath.Join(bases[1], "shard-0")
			v := runProc(t, "verify", "--run", other, "--run", dirs[1])
			want := fmt.Sprintf("shards of different seeds: %s has seed %d, %s has seed %d", other, seed, dirs[1], killSeed)
			if v.code != exitUsage || !strings.Contains(v.stderr.String(), want) {
				t.Fatalf("verify exit %d, want %d saying %q\n%s", v.code, exitUsage, want, v)
			}
		})
	})
}

// TestShardProcessesAgainstATestEndpoint: the same flow against
// endpoints that are not paytest's own (served from this test process,
// each over a fresh ledger table): one that stores its answers and replays
// them unmarked, whose merged verdict holds, and one that keeps no keys,
// whose merged verdict is violated with the counts of the one process.
func TestShardProcessesAgainstATestEndpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("runs paytest attack processes against a database")
	}
	const seed, ops = 13, 120
	for _, tc := range []struct {
		name string
		ep   foreign.Options
		code int
	}{
		{"holds", foreign.Options{Store: foreign.StoreAtomic, Status: 200}, exitHeld},
		{"violated", foreign.Options{Store: foreign.StoreNone}, exitViolated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := testinfra.PostgresPool(t)
			tables := 0
			fresh := func(t *testing.T) procTarget {
				tables++
				o := tc.ep
				o.Table = fmt.Sprintf("ledger_%d", tables)
				e, err := foreign.New(context.Background(), pool, o)
				if err != nil {
					t.Fatal(err)
				}
				srv := httptest.NewServer(e)
				t.Cleanup(srv.Close)
				return procTarget{
					target: []string{"--target", srv.URL + foreign.Path},
					evidence: []string{"--database-url", pool.Config().ConnString(),
						"--ledger-query", fmt.Sprintf("SELECT idem_key, count(*) FROM %s GROUP BY 1", o.Table),
						"--metrics-url", srv.URL + "/metrics", "--side-effect-metric", foreign.DefaultMetric},
				}
			}
			single, code := singleProc(t, fresh, seed, ops, tc.code)
			for _, n := range []int{2, 4} {
				t.Run(fmt.Sprintf("%d shards", n), func(t *testing.T) {
					compareShardProcs(t, fresh, t.TempDir(), single, code, seed, ops, n)
				})
			}
		})
	}
}

// compareShardProcs sends the plan of seed as n shard processes into
// base/shard-K against a fresh target, merges them with paytest verify,
// and wants the merged verdict to be single's (exit code: code).
func compareShardProcs(t *testing.T, fresh func(*testing.T) procTarget, base string, single *verify.Report, code int, seed int64, ops, n int) {
	t.Helper()
	tg := attackShardProcs(t, fresh, base, seed, ops, n)
	args := []string{"verify", "--run", filepath.Join(base, "shard-*")}
	live := n == 4
	if live {
		args = append(args, tg.evidence...)
	}
	v := runProc(t, args...)
	if v.code != code {
		t.Errorf("%d shards: verify exit %d, one process %d\n%s", n, v.code, code, v)
	}
	// One directory is judged as a whole run, in place.
	reportDir := filepath.Join(base, "merged")
	if n == 1 {
		reportDir = filepath.Join(base, "shard-0")
	}
	merged, err := verify.ReadReport(filepath.Join(reportDir, rundir.ReportFile))
	if err != nil {
		t.Fatalf("%d shards: %v\n%s", n, err, v)
	}
	verifytest.SameVerdict(t, fmt.Sprintf("%d shards", n), single, merged, timingChecks...)
	if n > 1 && (merged.ShardCount != n || len(merged.Shards) != n) {
		t.Errorf("%d shards: report.json shard_count %d, shards %+v", n, merged.ShardCount, merged.Shards)
	}
	if want := "collected once"; n > 1 && live != strings.HasPrefix(merged.EvidenceFrom, want) {
		t.Errorf("%d shards (live evidence flags %v): evidence from %q", n, live, merged.EvidenceFrom)
	}
}
