package stack

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/proc"
	"github.com/paytest/paytest/internal/testinfra"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// MustStack starts a reference stack on test infrastructure and stops it at
// cleanup.
func MustStack(tb testing.TB, cfg Config) *Stack {
	tb.Helper()
	cfg.Binary = testinfra.Paytest(tb)
	if cfg.DatabaseURL == "" {
		cfg.DatabaseURL = testinfra.Postgres(tb)
	}
	if cfg.NATSURL == "" {
		cfg.NATSURL = testinfra.NATS(tb)
	}
	name := strings.ToUpper(testinfra.Name("S"))
	cfg.Stream, cfg.DLQStream, cfg.Subject = name, name+"_DLQ", strings.ToLower(name)+".charges"
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s, err := Start(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Errorf("stop: %v", err)
		}
	})
	return s
}

func charge(t *testing.T, url, key string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewBufferString(
		`{"amount":1299,"currency":"EUR","customer":"cus_1","sku":"sku-1","quantity":1}`))
	req.Header.Set("Authorization", "Bearer sk_test_demo")
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestStackChargesFlowToTheLedgerAndSurviveARelayRestart(t *testing.T) {
	s := MustStack(t, Config{})
	for i := 0; i < 5; i++ {
		if resp := charge(t, s.ChargeURL(), fmt.Sprintf("k-%d", i)); resp.StatusCode != 200 {
			t.Fatalf("charge %d: %s", i, resp.Status)
		}
	}
	effects := func(want float64) func() error {
		return func() error {
			v, err := testinfra.Scrape(s.MetricsURLs()[Consumer], "paytest_side_effects_applied_total")
			if err != nil {
				return err
			}
			if v != want {
				return fmt.Errorf("side effects %v, want %v", v, want)
			}
			return nil
		}
	}
	testinfra.WaitFor(t, 30*time.Second, effects(5))

	relayAddr := s.Addr(Relay)
	if err := s.Kill(Relay); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Exited(Relay):
	default:
		t.Fatal("relay still running after Kill")
	}
	// Charges made while the relay is down wait in the outbox.
	for i := 5; i < 8; i++ {
		if resp := charge(t, s.ChargeURL(), fmt.Sprintf("k-%d", i)); resp.StatusCode != 200 {
			t.Fatalf("charge %d: %s", i, resp.Status)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := s.Restart(ctx, Relay); err != nil {
		t.Fatal(err)
	}
	if s.Addr(Relay) != relayAddr {
		t.Fatalf("relay moved from %s to %s on restart", relayAddr, s.Addr(Relay))
	}
	testinfra.WaitFor(t, 30*time.Second, effects(8))

	pids := []int{}
	for _, n := range []string{Charge, Relay, Consumer} {
		p, _ := s.get(n)
		pids = append(pids, p.Pid())
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if proc.Alive(pid, "") {
			t.Fatalf("pid %d still alive after Stop", pid)
		}
	}
}

func TestUnknownUnsafeModeIsRefused(t *testing.T) {
	_, err := Start(context.Background(), Config{Binary: "/bin/false", Unsafe: []string{"no-brakes"}})
	if err == nil || !strings.Contains(err.Error(), "unknown unsafe mode") {
		t.Fatalf("err = %v", err)
	}
}
