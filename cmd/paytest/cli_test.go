package main

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/testinfra"
)

// runPaytest runs the real binary with args (TMPDIR its own, no PAYTEST_*
// from the caller's environment) and returns its exit code, combined
// output and how long it took.
func runPaytest(t *testing.T, args ...string) (int, string, time.Duration) {
	t.Helper()
	cmd := exec.Command(testinfra.Paytest(t), args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(cleanEnv(), "TMPDIR="+t.TempDir())
	began := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(began)
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out), took
	case err != nil:
		t.Fatal(err)
	}
	return 0, string(out), took
}

// cleanEnv is the environment without PAYTEST_* settings.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PAYTEST_") {
			env = append(env, kv)
		}
	}
	return env
}

// writeConfig writes a config file and returns its path.
func writeConfig(t *testing.T, name, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestBadInvocationsAreUsageErrors runs every bad invocation the CLI must
// refuse before it starts anything: exit 2, a message that says what is
// wrong (without repeating a secret), no run directory, no panic, at once.
func TestBadInvocationsAreUsageErrors(t *testing.T) {
	unknownKeys := writeConfig(t, "paytest.yaml", "opz: 300\nconcurency: 3\nduplicate-rate: 0.1\nnested:\n  key: 1\n")
	verifyKeys := writeConfig(t, "verify.json", `{"run": "x", "ops": 10}`)
	crlf := writeConfig(t, "crlf.yaml", "header: [\"X-A: b\\r\\nX-Evil: c\"]\n")
	nul := writeConfig(t, "nul.yaml", "header: [\"X-A: b\\0\"]\n")
	tgt := []string{"attack", "--target", "http://127.0.0.1:1/charge"}
	with := func(a []string, b ...string) []string { return append(append([]string{}, a...), b...) }
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"unknown command", []string{"frobnicate"}, []string{`unknown command "frobnicate" for "paytest"`}},
		{"misspelt command", []string{"attak"}, []string{`unknown command "attak"`, "Did you mean this?\n\tattack"}},
		{"argument to attack", []string{"attack", "extra"}, []string{`unknown command "extra" for "paytest attack"`, "takes no arguments"}},
		{"argument to verify", []string{"verify", "runs/x"}, []string{`unknown command "runs/x" for "paytest verify"`}},
		{"argument to runbook", []string{"runbook", "x"}, []string{`unknown command "x" for "paytest runbook"`}},
		{"unknown component", []string{"serve", "frobnicate"}, []string{`unknown command "frobnicate" for "paytest serve"`}},
		{"misspelt component", []string{"serve", "chrge"}, []string{"Did you mean this?\n\tcharge"}},
		{"argument to a component", []string{"serve", "charge", "now"}, []string{`unknown command "now" for "paytest serve charge"`}},
		{"unknown flag", []string{"attack", "--opz", "3"}, []string{"paytest attack: unknown flag: --opz", "Run 'paytest attack --help'"}},
		{"unknown flag of paytest", []string{"--frob"}, []string{"paytest: unknown flag: --frob"}},
		{"help on an unknown command", []string{"help", "frobnicate"}, []string{`unknown command "frobnicate" for "paytest"`}},
		{"help on an unknown component", []string{"help", "serve", "frob"}, []string{`unknown command "frob" for "paytest serve"`}},
		{"unknown shell", []string{"completion", "frob"}, []string{`unknown command "frob" for "paytest completion"`}},

		{"header with CRLF", []string{"attack", "--header", "X-A: b\r\nX-Evil: c"}, []string{`--header "X-A"`, "control character"}},
		{"header with LF", []string{"attack", "--header", "X-A: b\nX-Evil: c"}, []string{"control character"}},
		{"header with CRLF in a config file", []string{"attack", "--config", crlf}, []string{`--header "X-A"`, "control character"}},
		{"header with NUL in a config file", []string{"attack", "--config", nul}, []string{"control character"}},
		{"header without colon", []string{"attack", "--header", "nocolon"}, []string{`--header "nocolon": want Name: value`}},
		{"header with a bad name", []string{"attack", "--header", "Bad Name: v"}, []string{`"Bad Name" is not a valid header name`}},
		{"header with an empty name", []string{"attack", "--header", ": v"}, []string{"want Name: value"}},
		{"bad key header", []string{"attack", "--key-header", "Idem Key"}, []string{`--key-header "Idem Key"`}},

		{"target not a URL", with(tgt[:2], "localhost:8080", "--metrics-url", "http://x/m"), []string{`--target "localhost:8080"`, "with a host"}},
		{"target of another scheme", with(tgt[:2], "ftp://x/charge", "--metrics-url", "http://x/m"), []string{`--target "ftp://x/charge"`}},
		{"metrics URL not a URL", with(tgt, "--metrics-url", "notaurl"), []string{`--metrics-url "notaurl"`}},
		{"metrics URL without a host", with(tgt, "--metrics-url", "http:///metrics"), []string{`--metrics-url "http:///metrics"`}},
		{"prometheus URL without a scheme", with(tgt, "--prometheus-url", "localhost:9090"), []string{`--prometheus-url "localhost:9090"`}},
		{"database URL of another scheme", []string{"attack", "--database-url", "mysql://app:s3cret@db/pay"}, []string{`--database-url "mysql://app:xxxxx@db/pay": want a postgres:// URL`}},
		{"database string unparseable", []string{"attack", "--database-url", "host=db port=notaport password=s3cret"}, []string{"--database-url", "password=xxxxx"}},
		{"nats URL of another scheme", []string{"attack", "--nats-url", "http://127.0.0.1:4222"}, []string{`--nats-url "http://127.0.0.1:4222"`}},
		{"redis URL not a URL", []string{"attack", "--redis-url", "127.0.0.1:6379"}, []string{`--redis-url "127.0.0.1:6379"`}},

		{"max attempts 0", []string{"attack", "--max-attempts", "0"}, []string{"--max-attempts 0: want 1 or more", "-1 to retry until the deadline"}},
		{"max attempts below -1", []string{"attack", "--max-attempts", "-2"}, []string{"--max-attempts -2"}},
		{"negative concurrency", []string{"attack", "--concurrency", "-1"}, []string{"--concurrency -1: want 1 to 10000"}},
		{"zero concurrency", []string{"attack", "--concurrency", "0"}, []string{"--concurrency 0"}},
		{"concurrency too large", []string{"attack", "--concurrency", "1000000000"}, []string{"--concurrency 1000000000: want 1 to 10000"}},
		{"negative ops", []string{"attack", "--ops", "-5"}, []string{"--ops -5: want 1 to 1000000"}},
		{"zero ops", []string{"attack", "--ops", "0"}, []string{"--ops 0"}},
		{"ops beyond the maximum", []string{"attack", "--ops", "99999999999"}, []string{"--ops 99999999999: want 1 to 1000000"}},
		{"ops just beyond the maximum", []string{"attack", "--ops", "1000001"}, []string{"--ops 1000001: want 1 to 1000000"}},
		{"ops beyond an int", []string{"attack", "--ops", "99999999999999999999"}, []string{"--ops", "out of range"}},
		{"zero timeout", []string{"attack", "--timeout", "0s"}, []string{"--timeout 0s: must be positive"}},
		{"negative drain timeout", []string{"attack", "--drain-timeout", "-1s"}, []string{"--drain-timeout -1s"}},
		{"rates over 1", []string{"attack", "--duplicate-rate", "0.9", "--race-rate", "0.5"}, []string{"at most 1 together"}},
		{"rate above 1", []string{"attack", "--reuse-rate", "2"}, []string{"--reuse-rate 2: want 0 to 1"}},
		{"negative rate", []string{"attack", "--duplicate-rate", "-0.1"}, []string{"--duplicate-rate -0.1"}},

		{"unknown config keys", []string{"attack", "--config", unknownKeys}, []string{`unknown key(s) "concurency" (did you mean "concurrency"?), "nested", "opz" (did you mean "ops"?)`}},
		{"a key of another command", []string{"verify", "--config", verifyKeys}, []string{`unknown key(s) "ops"`, "paytest verify"}},
		{"unreadable config", []string{"attack", "--config", "/no/such.yaml"}, []string{"reading config file /no/such.yaml"}},

		{"verify metrics URL not a URL", []string{"verify", "--metrics-url", "consumer=notaurl"}, []string{`--metrics-url "consumer=notaurl"`}},
		{"verify prometheus URL", []string{"verify", "--prometheus-url", "prom:9090"}, []string{`--prometheus-url "prom:9090"`}},
		{"verify database URL", []string{"verify", "--database-url", "mysql://u:s3cret@h/db"}, []string{"--database-url", "xxxxx"}},
		{"profiles with an unknown config key", []string{"profiles", "--config", unknownKeys}, []string{`unknown key(s)`, "paytest profiles"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "run")
			args := tt.args
			if len(args) > 0 && args[0] == "attack" {
				args = with(args, "--out", out)
			}
			code, text, took := runPaytest(t, args...)
			if code != exitUsage {
				t.Fatalf("paytest %q: exit %d, want %d\n%s", tt.args, code, exitUsage, text)
			}
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("paytest %q: output lacks %q:\n%s", tt.args, w, text)
				}
			}
			for _, bad := range []string{"s3cret", "goroutine ", "panic:", "Usage:"} {
				if strings.Contains(text, bad) {
					t.Errorf("paytest %q: output holds %q:\n%s", tt.args, bad, text)
				}
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("paytest %q: made the run directory before refusing", tt.args)
			}
			if took > 5*time.Second {
				t.Errorf("paytest %q: took %s to refuse", tt.args, took)
			}
		})
	}
}

// TestHelpIsNotAnError: a bare command that only groups others, and help
// on a command that exists, print the help and exit 0.
func TestHelpIsNotAnError(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "Available Commands:"},
		{[]string{"serve"}, "Available Commands:"},
		{[]string{"help", "attack"}, "paytest attack [flags]"},
		{[]string{"help", "serve", "charge"}, "paytest serve charge [flags]"},
		{[]string{"attack", "--help"}, "paytest attack [flags]"},
	} {
		code, text, _ := runPaytest(t, tt.args...)
		if code != exitHeld || !strings.Contains(text, tt.want) {
			t.Errorf("paytest %q: exit %d, want 0 with %q:\n%s", tt.args, code, tt.want, text)
		}
	}
}

func TestAttackHelpStatesTheLimits(t *testing.T) {
	code, text, _ := runPaytest(t, "attack", "--help")
	for _, w := range []string{"at most 1000000", "at most 10000", "-1: retry until the deadline"} {
		if code != 0 || !strings.Contains(text, w) {
			t.Errorf("paytest attack --help: exit %d, lacks %q", code, w)
		}
	}
}

// worldTmp is a TMPDIR an embedded Postgres can use when paytest runs as
// root (Postgres then runs as the postgres user, who cannot reach
// t.TempDir()).
func worldTmp(t *testing.T) string {
	t.Helper()
	tmp, err := os.MkdirTemp("", "cli-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(tmp) })
	if err := os.Chmod(tmp, 0o777); err != nil {
		t.Fatal(err)
	}
	return tmp
}

// TestCtrlCDuringThePlanEndsAtOnce interrupts the largest plan while it is
// being built (right after the system is up): paytest ends within two
// seconds, inconclusive (exit 3), saying it was interrupted.
func TestCtrlCDuringThePlanEndsAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("boots the reference system")
	}
	cmd := exec.Command(testinfra.Paytest(t), "attack", "--ops", "1000000", "--no-progress", "--out", t.TempDir())
	cmd.Env = append(cleanEnv(), "TMPDIR="+worldTmp(t))
	ownGroup(cmd)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killGroup(cmd) })
	sc := bufio.NewScanner(stderr)
	var log strings.Builder
	for sc.Scan() && !strings.Contains(sc.Text(), " up in ") {
		log.WriteString(sc.Text() + "\n")
	}
	if sc.Err() != nil || !strings.Contains(sc.Text(), " up in ") {
		t.Fatalf("the system did not come up:\n%s", log.String())
	}
	rest := make(chan string, 1)
	go func() {
		var b strings.Builder
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
		}
		rest <- b.String()
	}()
	interrupted := time.Now()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		took := time.Since(interrupted)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != exitInconclusive {
			t.Fatalf("paytest ended with %v after SIGINT, want exit %d", err, exitInconclusive)
		}
		if took > 2*time.Second {
			t.Errorf("paytest took %s to end after SIGINT", took)
		}
		if out := <-rest; !strings.Contains(out, "interrupted") || strings.Contains(out, "goroutine ") {
			t.Errorf("paytest's last words:\n%s", out)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("paytest ignored SIGINT for 10s")
	}
}

// TestGoodValuesPass: the checks refuse nothing a user may rightly give.
func TestGoodValuesPass(t *testing.T) {
	for _, tt := range []struct {
		check func(flag, raw string) error
		val   string
	}{
		{checkDatabaseURL, "postgres://app:pw@db:5432/pay?sslmode=require"},
		{checkDatabaseURL, "postgresql:///pay?host=/run/postgresql"},
		{checkDatabaseURL, "host=db user=app dbname=pay sslmode=disable"},
		{checkNATSURL, "nats://127.0.0.1:4222"},
		{checkNATSURL, "nats://a:4222, tls://b:4222"},
		{checkRedisURL, "redis://:pw@127.0.0.1:6379/0"},
		{checkRedisURL, "rediss://cache.internal:6380"},
		{httpURL, "https://api.example.test/v1/charges?x=1"},
		{httpURL, "http://[::1]:8080/metrics"},
	} {
		if err := tt.check("flag", tt.val); err != nil {
			t.Errorf("%q: %v", tt.val, err)
		}
	}
	h, err := parseHeaders([]string{"Authorization: Bearer sk_test_x", "X-Trace:  a\tb ", "X-Empty:"})
	if err != nil {
		t.Fatal(err)
	}
	if h.Get("Authorization") != "Bearer sk_test_x" || h.Get("X-Trace") != "a\tb" || len(h["X-Empty"]) != 1 {
		t.Fatalf("headers %v", h)
	}
}
