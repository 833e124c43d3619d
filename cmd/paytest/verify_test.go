package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/rundir"
	"github.com/paytest/paytest/verify"
)

// writeVerifyRun writes a run directory of n charges answered 200 once
// each; ledger holds effects[key] (default 1); the consumer page counts
// side effects (no page when side < 0).
func writeVerifyRun(t *testing.T, n, side int, ledger map[string]int) string {
	t.Helper()
	dir := t.TempDir()
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	plan, _ := rundir.Create[rundir.Op](filepath.Join(dir, rundir.PlanFile))
	hist, _ := rundir.Create[rundir.Attempt](filepath.Join(dir, rundir.HistoryFile))
	led, _ := rundir.Create[rundir.LedgerRow](filepath.Join(dir, rundir.LedgerFile))
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("k-%d", i)
		plan.Write(rundir.Op{Op: i, Kind: rundir.KindCharge, Merchant: "demo", Key: key, Senders: 1})
		at := t0.Add(time.Duration(i) * time.Millisecond)
		hist.Write(rundir.Attempt{Op: i, Kind: rundir.KindCharge, Merchant: "demo", Key: key, Attempt: 1, Status: 200, Outcome: rundir.OutcomeNew, Start: at, End: at.Add(time.Millisecond)})
		e, ok := ledger[key]
		if !ok {
			e = 1
		}
		led.Write(rundir.LedgerRow{Merchant: "demo", Key: key, Effects: int64(e)})
	}
	for _, c := range []io.Closer{plan, hist, led} {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rundir.WriteRun(filepath.Join(dir, rundir.RunFile), rundir.Run{Seed: 7, Ops: n, Started: t0, Ended: t0.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}
	if side >= 0 {
		os.MkdirAll(filepath.Join(dir, rundir.MetricsDir), 0o755)
		page := fmt.Sprintf("# TYPE %s counter\n%s %d\n", verify.DefaultSideEffectMetric, verify.DefaultSideEffectMetric, side)
		if err := os.WriteFile(filepath.Join(dir, rundir.MetricsDir, "consumer.prom"), []byte(page), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestVerifyCommand(t *testing.T) {
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "# TYPE shop_applied_total counter\nshop_applied_total{shard=\"1\"} 20\nshop_applied_total{shard=\"2\"} 20\n")
	}))
	t.Cleanup(page.Close)
	tests := []struct {
		name     string
		args     func(t *testing.T) []string
		exit     int
		stdout   []string // substrings
		quiet    bool     // the verdict was printed: main adds nothing
		checkDir func(t *testing.T, args []string)
	}{
		{"saved run holds", func(t *testing.T) []string { return []string{"--run", writeVerifyRun(t, 40, 40, nil)} },
			0, []string{"verdict: HELD", "effects-equal-ops", "40 of 40 (ledger 40 of 40)"}, false, nil},
		{"double charge is violated and named", func(t *testing.T) []string {
			return []string{"--run", writeVerifyRun(t, 40, 41, map[string]int{"k-9": 2})}
		}, 1, []string{"verdict: VIOLATED", "FAILED", "op 9 key demo/k-9", "ledger effects 2"}, true, nil},
		{"metrics missing is inconclusive", func(t *testing.T) []string { return []string{"--run", writeVerifyRun(t, 40, -1, nil)} },
			3, []string{"verdict: INCONCLUSIVE"}, true, nil},
		{"json output", func(t *testing.T) []string {
			return []string{"--run", writeVerifyRun(t, 40, 40, nil), "--output", "json"}
		}, 0, []string{`"verdict": "held"`, `"exit_code": 0`}, false, nil},
		{"live page with its own metric name", func(t *testing.T) []string {
			dir := writeVerifyRun(t, 40, -1, nil)
			os.Remove(filepath.Join(dir, rundir.LedgerFile))
			return []string{"--run", dir, "--metrics-url", page.URL + "/metrics", "--side-effect-metric", "shop_applied_total"}
		}, 0, []string{"verdict: HELD", "40 of 40"}, false, func(t *testing.T, args []string) {
			if _, err := os.Stat(filepath.Join(args[1], rundir.MetricsDir, "target.prom")); err != nil {
				t.Errorf("the bare --metrics-url page was not saved as target.prom: %v", err)
			}
		}},
		{"live page unreachable is inconclusive", func(t *testing.T) []string {
			dir := writeVerifyRun(t, 40, -1, nil)
			return []string{"--run", dir, "--metrics-url", "consumer=http://127.0.0.1:1/metrics"}
		}, 3, []string{"verdict: INCONCLUSIVE", "evidence missing"}, true, nil},
		{"no run and no sources", func(*testing.T) []string { return nil }, 2, nil, false, nil},
		{"run directory missing", func(t *testing.T) []string { return []string{"--run", filepath.Join(t.TempDir(), "nope")} }, 2, nil, false, nil},
		{"bad output", func(t *testing.T) []string { return []string{"--run", t.TempDir(), "--output", "yaml"} }, 2, nil, false, nil},
		{"bad metrics url", func(*testing.T) []string { return []string{"--metrics-url", "consumer=ftp://x"} }, 2, nil, false, nil},
		{"negative prometheus wait", func(*testing.T) []string {
			return []string{"--prometheus-url", "http://127.0.0.1:1", "--prometheus-wait", "-1s"}
		}, 2, nil, false, nil},
		{"negative expect-ops", func(t *testing.T) []string {
			return []string{"--run", writeVerifyRun(t, 40, 40, nil), "--expect-ops", "-1"}
		}, 2, nil, false, nil},
		{"a threshold that holds", func(t *testing.T) []string {
			return []string{"--run", writeVerifyRun(t, 40, 40, nil), "--threshold", "op_p99 < 1s"}
		}, 0, []string{"verdict: HELD", "threshold: op_p99 < 1s", "op_p99 = 1ms"}, false, nil},
		{"a threshold that fails names itself", func(t *testing.T) []string {
			return []string{"--run", writeVerifyRun(t, 40, 40, nil), "--threshold", "op_p99 < 100us"}
		}, 1, []string{"verdict: VIOLATED", "FAILED", "threshold: op_p99 < 100us", "the threshold wants < 100us"}, true, nil},
		{"run.yaml's thresholds are judged again", func(t *testing.T) []string {
			return []string{"--run", withThresholds(t, writeVerifyRun(t, 40, 40, nil), "attempt_max < 100us")}
		}, 1, []string{"threshold: attempt_max < 100us"}, true, nil},
		{"--threshold replaces run.yaml's", func(t *testing.T) []string {
			return []string{"--run", withThresholds(t, writeVerifyRun(t, 40, 40, nil), "attempt_max < 100us"), "--threshold", "attempt_max < 1s"}
		}, 0, []string{"threshold: attempt_max < 1s"}, false, nil},
		{"a malformed threshold", func(t *testing.T) []string {
			return []string{"--run", writeVerifyRun(t, 40, 40, nil), "--threshold", "op_p99 = 1s"}
		}, 2, nil, false, nil},
		{"--junit writes every check", func(t *testing.T) []string {
			return []string{"--run", writeVerifyRun(t, 40, 40, nil), "--threshold", "op_p99 < 1s", "--junit", filepath.Join(t.TempDir(), "junit.xml")}
		}, 0, nil, false, func(t *testing.T, args []string) {
			b, err := os.ReadFile(args[len(args)-1])
			if err != nil || !strings.Contains(string(b), `<testcase name="threshold: op_p99 &lt; 1s"`) || !strings.Contains(string(b), `name="exactly-once-per-op"`) {
				t.Errorf("junit.xml: %v\n%s", err, b)
			}
		}},
		{"--junit in a directory that does not exist", func(t *testing.T) []string {
			return []string{"--run", writeVerifyRun(t, 40, 40, nil), "--junit", "/no/such/dir/junit.xml"}
		}, 2, nil, false, nil},
		{"run is a file", func(t *testing.T) []string {
			f := filepath.Join(t.TempDir(), "run")
			if err := os.WriteFile(f, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			return []string{"--run", f}
		}, 2, nil, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := tc.args(t)
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), append([]string{"verify"}, args...), &stdout, &stderr)
			if got := exitCode(err); got != tc.exit {
				t.Fatalf("exit %d (err %v); want %d\nstdout:\n%s\nstderr:\n%s", got, err, tc.exit, stdout.String(), stderr.String())
			}
			var quiet *quietError
			if errors.As(err, &quiet) != tc.quiet {
				t.Errorf("quiet=%v for %v; want %v", !tc.quiet, err, tc.quiet)
			}
			for _, want := range tc.stdout {
				if !strings.Contains(stdout.String(), want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout.String())
				}
			}
			if tc.checkDir != nil {
				tc.checkDir(t, args)
			}
		})
	}
}

func TestVerifyCommandJSONIsTheReport(t *testing.T) {
	dir := writeVerifyRun(t, 30, 30, nil)
	var stdout bytes.Buffer
	if err := run(context.Background(), []string{"verify", "--run", dir, "--output", "json"}, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	var fromStdout, fromFile map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &fromStdout); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, rundir.ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &fromFile); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"verdict", "exit_code", "seed", "duration_seconds", "ops", "side_effects", "ledger_effects", "faults", "checks"} {
		if _, ok := fromStdout[k]; !ok {
			t.Errorf("--output json lacks %q", k)
		}
		if fmt.Sprint(fromStdout[k]) != fmt.Sprint(fromFile[k]) {
			t.Errorf("%s: stdout %v, report.json %v", k, fromStdout[k], fromFile[k])
		}
	}
}

// withThresholds records thresholds in dir's run.yaml, as an attack with
// --threshold does.
func withThresholds(t *testing.T, dir string, ths ...string) string {
	t.Helper()
	path := filepath.Join(dir, rundir.RunFile)
	r, err := rundir.ReadRun(path)
	if err != nil {
		t.Fatal(err)
	}
	r.Thresholds = ths
	if err := rundir.WriteRun(path, r); err != nil {
		t.Fatal(err)
	}
	return dir
}
