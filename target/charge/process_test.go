package charge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paytest/paytest/internal/proc"
	"github.com/paytest/paytest/internal/testinfra"
)

// syncBuffer collects a child's log for failure messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startCharge starts a real `paytest serve charge` process.
func startCharge(t *testing.T, log *syncBuffer, args ...string) *proc.Process {
	t.Helper()
	return startChargeEnv(t, log, nil, args...)
}

// startChargeEnv is startCharge with env added to the child's environment.
func startChargeEnv(t *testing.T, log *syncBuffer, env []string, args ...string) *proc.Process {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p, err := proc.Start(ctx, proc.Spec{
		Name: "charge", Path: testinfra.Paytest(t),
		Args: append([]string{"serve", "charge", "--listen", "127.0.0.1:0"}, args...),
		Env:  env, Log: log, Ready: "/readyz",
	})
	if err != nil {
		t.Fatalf("start paytest serve charge: %v\n%s", err, log)
	}
	t.Cleanup(func() { _ = p.Stop(10 * time.Second) })
	return p
}

func openPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// expectCrash sends a request that must kill the process with SIGKILL.
func expectCrash(t *testing.T, p *proc.Process, log *syncBuffer, key string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	r, err := doPost(c, "http://"+p.Addr(), DefaultAPIKey, key, demoBody)
	if err == nil {
		t.Fatalf("the request survived the crash point: %s\n%s", r, log)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if werr := p.Wait(ctx); !proc.KilledBySignal(werr, syscall.SIGKILL) {
		t.Fatalf("process ended with %v, want SIGKILL\n%s", werr, log)
	}
}

// TestCrashInFlight: a real process is SIGKILLed at a crash point; a retry
// to a restarted process completes the charge exactly once.
func TestCrashInFlight(t *testing.T) {
	for _, tc := range []struct {
		point string
		// after the crash, before any retry
		wantState   string
		wantCharges int
		// the retry's answer
		wantReplay bool
	}{
		{point: CrashAfterClaim, wantState: "started", wantCharges: 0, wantReplay: false},
		{point: CrashAfterCommit, wantState: "finished", wantCharges: 1, wantReplay: true},
	} {
		t.Run(tc.point, func(t *testing.T) {
			dbURL := testinfra.Postgres(t)
			pool := openPool(t, dbURL)
			log := &syncBuffer{}
			first := startCharge(t, log, "--database-url", dbURL, "--crash-at", tc.point, "--lease", "1s")
			expectCrash(t, first, log, "crash-1")
			var state string
			if err := pool.QueryRow(context.Background(), `SELECT state FROM idempotency_keys WHERE key = 'crash-1'`).Scan(&state); err != nil || state != tc.wantState {
				t.Fatalf("key after the crash: %q %v, want %q", state, err, tc.wantState)
			}
			if _, charges, events := rows(t, pool); charges != tc.wantCharges || events != tc.wantCharges {
				t.Fatalf("after the crash: charges=%d events=%d, want %d", charges, events, tc.wantCharges)
			}

			second := startCharge(t, log, "--database-url", dbURL, "--lease", "1s")
			c := &http.Client{Timeout: 10 * time.Second}
			var last reply
			conflicts := 0
			testinfra.WaitFor(t, 10*time.Second, func() error {
				r, err := doPost(c, "http://"+second.Addr(), DefaultAPIKey, "crash-1", demoBody)
				if err != nil {
					return err
				}
				last = r
				if r.status == 409 {
					if r.header.Get("Retry-After") == "" {
						t.Fatalf("409 without Retry-After: %s", r)
					}
					conflicts++
					return errors.New("409: the lease is still running")
				}
				return nil
			})
			if last.status != 200 || last.replayed() != tc.wantReplay {
				t.Fatalf("retry: %s, want 200 replayed=%v\n%s", last, tc.wantReplay, log)
			}
			t.Logf("retry answered 200 (replayed=%v) after %d 409s", last.replayed(), conflicts)
			if _, charges, events := rows(t, pool); charges != 1 || events != 1 {
				t.Fatalf("after the retry: charges=%d events=%d, want exactly 1 and 1", charges, events)
			}
			again, err := doPost(c, "http://"+second.Addr(), DefaultAPIKey, "crash-1", demoBody)
			if err != nil || !again.replayed() || string(again.body) != string(last.body) {
				t.Fatalf("second retry: %s %v, want a replay of %s", again, err, last)
			}
			if err := second.Stop(10 * time.Second); err != nil {
				t.Fatalf("SIGTERM did not end the service cleanly: %v\n%s", err, log)
			}
		})
	}
}

// TestUnsafeModes: each unsafe mode really breaks the property it names,
// and the same scenario on the safe default does not.
func TestUnsafeModes(t *testing.T) {
	twoSequential := func(t *testing.T, h *harness) (charges int) {
		a := h.post(t, DefaultAPIKey, "dup", demoBody)
		b := h.post(t, DefaultAPIKey, "dup", demoBody)
		if a.status != 200 || b.status != 200 {
			t.Fatalf("answers %s / %s", a, b)
		}
		_, charges, _ = rows(t, h.pool)
		return charges
	}
	t.Run("safe default", func(t *testing.T) {
		if n := twoSequential(t, newHarness(t, Config{})); n != 1 {
			t.Fatalf("safe: a retry made %d charges, want 1", n)
		}
	})
	t.Run(ModeNoIdempotency, func(t *testing.T) {
		h := newHarness(t, Config{Unsafe: Unsafe{NoIdempotency: true}})
		if n := twoSequential(t, h); n != 2 {
			t.Fatalf("no-idempotency: a retry made %d charges, want 2", n)
		}
		if _, _, events := rows(t, h.pool); events != 2 {
			t.Fatalf("no-idempotency: %d events, want 2", events)
		}
	})
	t.Run(ModeNonAtomicCreate, func(t *testing.T) {
		h := newHarness(t, Config{Unsafe: Unsafe{NonAtomicCreate: true}})
		if n := twoSequential(t, h); n != 1 {
			t.Fatalf("non-atomic-create: a sequential retry made %d charges, want 1 (only races break it)", n)
		}
		doubled, trials := 0, 0
		answers := map[string]int{}
		for ; trials < 500 && doubled < 3; trials++ {
			key := fmt.Sprintf("race-%d", trials)
			start := make(chan struct{})
			var wg sync.WaitGroup
			var mu sync.Mutex
			for range 8 {
				wg.Go(func() {
					<-start
					r, err := doPost(h.client, h.url, DefaultAPIKey, key, demoBody)
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err != nil:
						answers["error: "+err.Error()]++
					case r.replayed():
						answers["replay"]++
					default:
						answers[fmt.Sprint(r.status)]++
					}
				})
			}
			close(start)
			wg.Wait()
			if count(t, h.pool, `SELECT count(*) FROM charges WHERE idempotency_key = $1`, key) > 1 {
				doubled++
			}
		}
		if doubled == 0 {
			t.Fatalf("non-atomic-create: %d races of 8 same-key requests never double-charged; answers %v", trials, answers)
		}
		t.Logf("non-atomic-create double-charged %d keys in %d races; answers %v", doubled, trials, answers)
	})
	t.Run(ModeDualWrite, func(t *testing.T) {
		natsURL := testinfra.NATS(t)
		subject, js := stream(t, natsURL)
		h := newHarness(t, Config{Unsafe: Unsafe{DualWrite: true}, NATSURL: natsURL, Subject: subject})
		if r := h.post(t, DefaultAPIKey, "dw", demoBody); r.status != 200 {
			t.Fatalf("dual-write: %s", r)
		}
		if _, charges, events := rows(t, h.pool); charges != 1 || events != 0 {
			t.Fatalf("dual-write: charges=%d outbox=%d, want 1 and 0", charges, events)
		}
		if n := streamMsgs(t, js, subject); n != 1 {
			t.Fatalf("dual-write: %d messages published, want 1", n)
		}

		// A crash between the commit and the publish loses the event.
		dbURL := testinfra.Postgres(t)
		pool := openPool(t, dbURL)
		log := &syncBuffer{}
		p := startCharge(t, log, "--database-url", dbURL, "--unsafe", ModeDualWrite, "--nats-url", natsURL,
			"--subject", subject, "--crash-at", CrashAfterCommit)
		if !strings.Contains(log.String(), "level=WARN") || !strings.Contains(log.String(), "unsafe=dual-write") {
			t.Fatalf("no loud warning for the unsafe mode:\n%s", log)
		}
		expectCrash(t, p, log, "dw-crash")
		if _, charges, events := rows(t, pool); charges != 1 || events != 0 {
			t.Fatalf("after the crash: charges=%d outbox=%d, want 1 and 0", charges, events)
		}
		if n := streamMsgs(t, js, subject); n != 1 {
			t.Fatalf("after the crash: %d messages, want still 1: the crashed charge's event must be lost", n)
		}
	})
}

// stream creates a JetStream stream on a fresh subject.
func stream(t *testing.T, url string) (string, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	name, subject := testinfra.Name("CHARGE"), testinfra.Name("charges")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js.DeleteStream(context.Background(), name) })
	return subject, js
}

func streamMsgs(t *testing.T, js jetstream.JetStream, subject string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	name, err := js.StreamNameBySubject(ctx, subject)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestCLIUnsafeRefused: the command refuses unknown modes and bad flags with
// exit code 2, before touching any database.
func TestCLIUnsafeRefused(t *testing.T) {
	bin := testinfra.Paytest(t)
	for _, args := range [][]string{
		{"--unsafe", "bogus"},
		{"--unsafe", "dual-write"}, // without --nats-url
		{"--crash-at", "nowhere"},
		{"--api-key", "no-equals-sign"},
		{"--write-timeout", "1s"}, // shorter than the read timeout plus the request's database work
		{"--read-header-timeout", "1m", "--read-timeout", "10s"},
		{"--idle-timeout", "-1s"},
		{"--catalog", "0"},
	} {
		cmd := exec.Command(bin, append([]string{"serve", "charge", "--database-url", "postgres://nobody@127.0.0.1:1/x"}, args...)...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%v: %v, want exit code 2\n%s", args, err, out)
		}
	}
}

// TestServeAPIKeys: keys come from --api-key (for people) or from
// PAYTEST_API_KEY (for programs: a command line is visible to every user),
// the flag winning; the demo key works only when neither names any.
func TestServeAPIKeys(t *testing.T) {
	db := testinfra.Postgres(t)
	for _, tc := range []struct {
		name     string
		env      []string
		args     []string
		accepted []string
		refused  []string
	}{
		{"flag", nil, []string{"--api-key", "acme=sk_flag"}, []string{"sk_flag"}, []string{DefaultAPIKey}},
		{"environment", []string{"PAYTEST_API_KEY=acme=sk_env,globex=sk_env_g"}, nil, []string{"sk_env", "sk_env_g"}, []string{DefaultAPIKey}},
		{"flag over environment", []string{"PAYTEST_API_KEY=acme=sk_env"}, []string{"--api-key", "acme=sk_flag"}, []string{"sk_flag"}, []string{"sk_env"}},
		{"neither", []string{"PAYTEST_API_KEY="}, nil, []string{DefaultAPIKey}, []string{"sk_env"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := &syncBuffer{}
			p := startChargeEnv(t, log, tc.env, append([]string{"--database-url", db}, tc.args...)...)
			c := &http.Client{Timeout: 10 * time.Second}
			for i, secret := range append(tc.accepted, tc.refused...) {
				want := 200
				if i >= len(tc.accepted) {
					want = 401
				}
				r, err := doPost(c, "http://"+p.Addr(), secret, fmt.Sprintf("keys-%s-%d", tc.name, i), demoBody)
				if err != nil || r.status != want {
					t.Fatalf("Bearer %s: %s %v, want %d\n%s", secret, r, err, want, log)
				}
			}
		})
	}
}

// TestServeEmbeddedPostgres: with no --database-url the command starts a
// throwaway cluster, serves on it, and on SIGTERM drains, stops the cluster
// and removes its directory.
func TestServeEmbeddedPostgres(t *testing.T) {
	log := &syncBuffer{}
	p := startCharge(t, log)
	m := regexp.MustCompile(`msg="embedded postgres up" took=(\S+) .* dir=(\S+)`).FindStringSubmatch(log.String())
	if m == nil {
		t.Fatalf("no embedded postgres line in the log:\n%s", log)
	}
	t.Logf("embedded postgres came up in %s", m[1])
	if _, err := os.Stat(m[2]); err != nil {
		t.Fatalf("cluster dir: %v", err)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	r, err := doPost(c, "http://"+p.Addr(), DefaultAPIKey, "embedded", demoBody)
	if err != nil || r.status != 200 {
		t.Fatalf("charge on the embedded cluster: %s %v\n%s", r, err, log)
	}
	if err := p.Stop(20 * time.Second); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, log)
	}
	if !strings.Contains(log.String(), "msg=draining") || !strings.Contains(log.String(), `msg="embedded postgres stopped"`) {
		t.Fatalf("no drain and cluster stop in the log:\n%s", log)
	}
	if _, err := os.Stat(m[2]); !os.IsNotExist(err) {
		t.Fatalf("cluster dir %s still there after exit: %v", m[2], err)
	}
}

// TestDemo: the hidden --demo walk-through gets all four answers and exits 0.
func TestDemo(t *testing.T) {
	cmd := exec.Command(testinfra.Paytest(t), "serve", "charge", "--demo", "--database-url", testinfra.Postgres(t))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("--demo: %v\n%s", err, out)
	}
	for _, want := range []string{"-> 200 OK", "Idempotent-Replayed: true", "-> 409 Conflict", "Retry-After: 1", "-> 422 Unprocessable Entity", "each key charged exactly once"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}
