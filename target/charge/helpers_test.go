package charge

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paytest/paytest/internal/testinfra"
)

const demoBody = `{"amount":1299,"currency":"EUR","customer":"cus_1","sku":"sku-1","quantity":1}`

// harness is an in-process charge service on a fresh database.
type harness struct {
	svc    *Service
	url    string // http://host:port
	pool   *pgxpool.Pool
	client *http.Client
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	return newServerHarness(t, cfg, ServerConfig{})
}

// newServerHarness serves the service as `paytest serve charge` does: its
// Server with sc's limits, on a ProblemListener.
func newServerHarness(t *testing.T, cfg Config, sc ServerConfig) *harness {
	t.Helper()
	if cfg.DatabaseURL == "" && cfg.Pool == nil {
		cfg.DatabaseURL = testinfra.Postgres(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svc, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	hs, err := svc.Server(sc)
	if err != nil {
		svc.Close()
		t.Fatalf("Server: %v", err)
	}
	srv := httptest.NewUnstartedServer(hs.Handler)
	srv.Config = hs
	srv.Listener = ProblemListener(srv.Listener)
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		svc.Close()
	})
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &harness{svc: svc, url: srv.URL, pool: svc.Pool(), client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// reply is one HTTP answer, read whole.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) replayed() bool { return r.header.Get(ReplayedHeader) == "true" }

func (r reply) String() string {
	return fmt.Sprintf("%d replayed=%v %s", r.status, r.replayed(), r.body)
}

// post sends POST /charge with the bearer secret and key ("" omits either).
func (h *harness) post(t *testing.T, secret, key, body string) reply {
	t.Helper()
	r, err := doPost(h.client, h.url, secret, key, body)
	if err != nil {
		t.Fatalf("POST /charge: %v", err)
	}
	return r
}

func doPost(c *http.Client, base, secret, key, body string) (reply, error) {
	req, err := http.NewRequest(http.MethodPost, base+"/charge", bytes.NewBufferString(body))
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := c.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// count runs a count(*) query.
func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// rows counts the three tables the service writes.
func rows(t *testing.T, pool *pgxpool.Pool) (keys, charges, events int) {
	t.Helper()
	return count(t, pool, `SELECT count(*) FROM idempotency_keys`),
		count(t, pool, `SELECT count(*) FROM charges`),
		count(t, pool, `SELECT count(*) FROM outbox`)
}
