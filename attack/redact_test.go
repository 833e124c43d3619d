package attack

import (
	"bytes"
	"errors"
	"io/fs"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/rundir"
	"github.com/paytest/paytest/internal/testinfra"
)

func TestRedactSettings(t *testing.T) {
	in := map[string]any{
		"header":       []string{"Authorization: Bearer s3cret", "X-Shop: yes"},
		"database-url": "postgres://app:s3cret@db/pay?sslmode=require&sslpassword=s3cret",
		"metrics-url":  "https://shop.test/metrics?password=s3cret&job=pay",
		"nats-url":     "nats://u:s3cret@127.0.0.1:4222",
		"target":       "https://shop.test/pay?api_key=s3cret",
		"charge-arg":   []string{"--api-keys=demo:s3cret", "--processing-delay=5ms"},
		"api-key":      "s3cret",
		"kill-cmd":     "curl -H 'Authorization: Bearer s3cret' http://shop.test/kill",
		"ops":          300,
		"profile":      "race",
		"nested":       map[string]any{"token": "s3cret", "db-url": "postgres://u:s3cret@h/db"},
	}
	want := map[string]any{
		"header":       []string{"Authorization: xxxxx", "X-Shop: xxxxx"},
		"database-url": "postgres://app:xxxxx@db/pay?sslmode=require&sslpassword=xxxxx",
		"metrics-url":  "https://shop.test/metrics?password=xxxxx&job=pay",
		"nats-url":     "nats://u:xxxxx@127.0.0.1:4222",
		"target":       "https://shop.test/pay?api_key=xxxxx",
		"charge-arg":   []string{"--api-keys=xxxxx", "--processing-delay=5ms"},
		"api-key":      "xxxxx",
		"kill-cmd":     "curl -H 'Authorization: xxxxx' http://shop.test/kill",
		"ops":          300,
		"profile":      "race",
		"nested":       map[string]any{"token": "xxxxx", "db-url": "postgres://u:xxxxx@h/db"},
	}
	got := redactSettings(in)
	for k := range want {
		if !reflect.DeepEqual(got[k], want[k]) {
			t.Errorf("%s: %#v, want %#v", k, got[k], want[k])
		}
	}
	if in["api-key"] != "s3cret" {
		t.Fatal("redactSettings changed its argument")
	}
}

func TestErrSuffixMasksTheURLsSecrets(t *testing.T) {
	err := errors.New(`Get "http://127.0.0.1:1/metrics?password=s3cret": dial tcp 127.0.0.1:1: connection refused`)
	if got := errSuffix(err); strings.Contains(got, "s3cret") || !strings.Contains(got, "password=xxxxx") {
		t.Fatalf("errSuffix: %q", got)
	}
}

// secretsIn returns the files under dir that hold secret, each with the
// text around its first occurrence.
func secretsIn(t *testing.T, dir, secret string) []string {
	t.Helper()
	var found []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if i := bytes.Index(b, []byte(secret)); i >= 0 {
			line := b[max(0, i-200):min(len(b), i+50)]
			found = append(found, path+": ..."+string(line))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// exitOf runs cmd to its end and returns its exit code.
func exitOf(t *testing.T, cmd *exec.Cmd) (int, string) {
	t.Helper()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0, string(out)
}

// TestRunDirectoryHoldsNoSecret runs a whole attack on a team's endpoint
// whose URLs, headers and database carry secrets in every form, and finds
// none of them anywhere in the run directory.
func TestRunDirectoryHoldsNoSecret(t *testing.T) {
	srv := httptest.NewServer(&shop{idempotent: true, seen: map[string]string{}})
	t.Cleanup(srv.Close)
	out := t.TempDir()
	cmd := paytestCmd(t, childTmp(t), "attack", "--profile", "lost-response", "--ops", "30", "--concurrency", "4",
		"--no-progress", "--out", out, "--drain-timeout", "5s",
		"--target", srv.URL+"/api/pay",
		"--header", "X-Shop: yes", "--header", "Authorization: Bearer s3cret",
		"--metrics-url", srv.URL+"/metrics?password=s3cret", "--side-effect-metric", "shop_charges_total")
	code, text := exitOf(t, cmd)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, text)
	}
	if files := secretsIn(t, out, "s3cret"); len(files) > 0 {
		t.Fatalf("the secret is in %v", files)
	}
	// The redacted values are there: the run is still described.
	for file, want := range map[string]string{
		rundir.RunFile:                           "metrics-url: http",
		filepath.Join("metrics", "sources.json"): "/metrics?password=xxxxx",
	} {
		b, err := os.ReadFile(filepath.Join(out, file))
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %q (%v):\n%s", file, want, err, b)
		}
	}
}

// TestRunYAMLRedactedWhenTheRunFailsEarly: an unreachable target ends the
// run before the run is recorded a second time; the first record holds no
// secret either.
func TestRunYAMLRedactedWhenTheRunFailsEarly(t *testing.T) {
	out := t.TempDir()
	cmd := paytestCmd(t, childTmp(t), "attack", "--profile", "lost-response", "--no-progress", "--out", out,
		"--target", "http://127.0.0.1:1/charge?token=s3cret", "--header", "Authorization: Bearer s3cret",
		"--metrics-url", "http://127.0.0.1:1/metrics?password=s3cret",
		"--database-url", "postgres://app:s3cret@127.0.0.1:1/pay?sslpassword=s3cret", "--ledger-query", "SELECT 1, 1")
	code, text := exitOf(t, cmd)
	if code != 3 {
		t.Fatalf("exit %d, want 3:\n%s", code, text)
	}
	if _, err := os.Stat(filepath.Join(out, rundir.RunFile)); err != nil {
		t.Fatalf("no run.yaml: %v", err)
	}
	if files := secretsIn(t, out, "s3cret"); len(files) > 0 {
		t.Fatalf("the secret is in %v", files)
	}
	if strings.Contains(text, "s3cret") {
		t.Fatalf("the secret is in the output:\n%s", text)
	}
}

// TestRunYAMLRedactedWhenKilledAtStart kills paytest (SIGKILL: nothing
// runs after it) as soon as run.yaml exists.
func TestRunYAMLRedactedWhenKilledAtStart(t *testing.T) {
	out := t.TempDir()
	db := testinfra.Postgres(t)
	cmd := paytestCmd(t, childTmp(t), "attack", "--no-progress", "--out", out,
		"--header", "Authorization: Bearer s3cret", "--database-url", db+"&password=s3cret")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killGroup(cmd); _ = cmd.Wait() })
	testinfra.WaitFor(t, 30*time.Second, func() error {
		_, err := os.Stat(filepath.Join(out, rundir.RunFile))
		return err
	})
	killGroup(cmd)
	_ = cmd.Wait()
	b, err := os.ReadFile(filepath.Join(out, rundir.RunFile))
	if err != nil || !strings.Contains(string(b), "password=xxxxx") {
		t.Fatalf("run.yaml (%v):\n%s", err, b)
	}
	if files := secretsIn(t, out, "s3cret"); len(files) > 0 {
		t.Fatalf("the secret is in %v", files)
	}
}
