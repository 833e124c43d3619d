package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paytest/paytest/internal/testinfra"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

type e2eReport struct {
	Verdict  string         `json:"verdict"`
	ExitCode int            `json:"exit_code"`
	Ops      int            `json:"ops"`
	Faults   map[string]int `json:"faults"`
	Checks   []struct {
		Name   string `json:"name"`
		Held   bool   `json:"held"`
		Figure string `json:"figure"`
		Detail string `json:"detail"`
	} `json:"checks"`
}

// attackBinary runs the real paytest binary and returns its exit code and the
// run directory's report.json.
func attackBinary(t *testing.T, args ...string) (int, e2eReport, string) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "run")
	args = append([]string{"attack", "--out", out, "--no-progress", "--output", "json"}, args...)
	cmd := exec.Command(testinfra.Paytest(t), args...)
	cmd.Env = append(os.Environ(), "PAYTEST_DATABASE_URL=", "PAYTEST_NATS_URL=")
	stdout, err := cmd.Output()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
		if code != 1 {
			t.Logf("stderr:\n%s", lastLinesOf(string(ee.Stderr), 40))
		}
	} else if err != nil {
		t.Fatal(err)
	}
	var rep e2eReport
	b, rerr := os.ReadFile(filepath.Join(out, "report.json"))
	if rerr == nil {
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatalf("report.json: %v", err)
		}
	}
	return code, rep, string(stdout)
}

func lastLinesOf(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestEachUnsafeModeIsCaught is the proof that the checks can fail: each
// guarantee of the reference system is broken on purpose, a short attack is
// run against it, and the verdict must be "violated" (exit 1) with the check
// that guards the broken property among the failures.
func TestEachUnsafeModeIsCaught(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	for _, tc := range []struct {
		name  string
		args  []string
		check string // a check that must fail
	}{
		{"no-idempotency", []string{"--profile", "race", "--ops", "150", "--unsafe", "no-idempotency"}, "exactly-once-per-op"},
		{"non-atomic-create", []string{"--profile", "race", "--ops", "150", "--unsafe", "non-atomic-create"}, "exactly-once-per-op"},
		{"no-inbox-dedup", []string{"--profile", "relay-crash", "--ops", "150", "--unsafe", "no-inbox-dedup"}, "exactly-once-per-op"},
		{"dual-write", []string{"--profile", "testdata/dual-write.yaml", "--unsafe", "dual-write"}, "effects-equal-ops"},
		{"no-jitter", []string{"--profile", "lost-response", "--ops", "300", "--no-jitter"}, "full-jitter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, rep, stdout := attackBinary(t, tc.args...)
			if code != 1 || rep.Verdict != "violated" {
				t.Fatalf("exit %d, verdict %q; want 1, violated\n%s", code, rep.Verdict, lastLinesOf(stdout, 30))
			}
			failed := []string{}
			found := false
			for _, c := range rep.Checks {
				if !c.Held {
					failed = append(failed, c.Name+" ("+c.Figure+")")
					found = found || c.Name == tc.check
				}
			}
			if !found {
				t.Fatalf("check %s held; failed: %v", tc.check, failed)
			}
			t.Logf("%s caught: %v", tc.name, failed)
		})
	}
}
