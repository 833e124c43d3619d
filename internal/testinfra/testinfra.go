// Package testinfra gives paytest's tests real infrastructure: a fresh
// PostgreSQL database, a NATS JetStream server, a Redis key prefix and the
// paytest binary itself. Each comes from the machine's running service when
// its environment variable names one (PAYTEST_TEST_DATABASE_URL,
// PAYTEST_TEST_NATS_URL, PAYTEST_TEST_REDIS_URL) and from an embedded default
// otherwise, so tests pass on a machine where nothing runs. Every test gets
// its own database, stream names and key prefix, so runs never collide.
//
// A package that uses it calls Main from its TestMain, so shared embedded
// servers are stopped when the tests end.
package testinfra

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paytest/paytest/internal/natsembed"
	"github.com/paytest/paytest/internal/pgembed"
	"github.com/paytest/paytest/internal/promtext"
	"github.com/paytest/paytest/internal/redisembed"
)

// Environment variables that point tests at running services.
const (
	EnvDatabaseURL = "PAYTEST_TEST_DATABASE_URL"
	EnvNATSURL     = "PAYTEST_TEST_NATS_URL"
	EnvRedisURL    = "PAYTEST_TEST_REDIS_URL"
)

var (
	mu       sync.Mutex
	cluster  *pgembed.Cluster
	redisSrv *redisembed.Server
	binDir   string
	binPath  string
	binErr   error
	binOnce  sync.Once
	stoppers []func()
)

// Main runs the tests and then stops the shared embedded servers.
func Main(m *testing.M) {
	code := m.Run()
	mu.Lock()
	for i := len(stoppers) - 1; i >= 0; i-- {
		stoppers[i]()
	}
	mu.Unlock()
	os.Exit(code)
}

// Name returns a name unique to this test run, made of prefix, lowercase
// letters, digits and underscores: safe for databases, streams and keys.
func Name(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + "_" + hex.EncodeToString(b)
}

// AdminDatabaseURL returns a URL to an administrative database ("postgres")
// on the test server, starting the embedded cluster if needed.
func AdminDatabaseURL(tb testing.TB) string {
	tb.Helper()
	if u := os.Getenv(EnvDatabaseURL); u != "" {
		return u
	}
	mu.Lock()
	defer mu.Unlock()
	if cluster == nil {
		c, err := pgembed.Start(context.Background(), pgembed.Options{})
		if err != nil {
			tb.Fatalf("testinfra: embedded postgres: %v", err)
		}
		cluster = c
		stoppers = append(stoppers, func() { _ = c.Stop() })
	}
	return cluster.URL("postgres")
}

// Postgres returns the URL of a new, empty database that is dropped when the
// test ends.
func Postgres(tb testing.TB) string {
	tb.Helper()
	admin := AdminDatabaseURL(tb)
	name := Name("paytest")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pgembed.CreateDatabase(ctx, admin, name); err != nil {
		tb.Fatalf("testinfra: create database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := pgembed.DropDatabase(ctx, admin, name); err != nil {
			tb.Logf("testinfra: drop database %s: %v", name, err)
		}
	})
	u, err := pgembed.WithDatabase(admin, name)
	if err != nil {
		tb.Fatalf("testinfra: %v", err)
	}
	return u
}

// PostgresPool returns a pool on a new, empty database (Postgres), closed
// and dropped when the test ends.
func PostgresPool(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	pool, err := pgxpool.New(context.Background(), Postgres(tb))
	if err != nil {
		tb.Fatalf("testinfra: connect: %v", err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// NATS returns the URL of a NATS server with JetStream. With
// PAYTEST_TEST_NATS_URL unset it is a new embedded server for this test,
// shut down when the test ends; tests must still use Name for streams.
func NATS(tb testing.TB) string {
	tb.Helper()
	if u := os.Getenv(EnvNATSURL); u != "" {
		return u
	}
	s, err := natsembed.Start(natsembed.Options{})
	if err != nil {
		tb.Fatalf("testinfra: embedded nats: %v", err)
	}
	tb.Cleanup(s.Shutdown)
	return s.URL()
}

// EmbeddedNATS returns a new embedded NATS server for tests that must stop
// and restart the broker themselves.
func EmbeddedNATS(tb testing.TB) *natsembed.Server {
	tb.Helper()
	s, err := natsembed.Start(natsembed.Options{})
	if err != nil {
		tb.Fatalf("testinfra: embedded nats: %v", err)
	}
	tb.Cleanup(s.Shutdown)
	return s
}

// Redis returns a Redis URL and a key prefix unique to this test.
func Redis(tb testing.TB) (url, prefix string) {
	tb.Helper()
	prefix = Name("paytest") + ":"
	if u := os.Getenv(EnvRedisURL); u != "" {
		return u, prefix
	}
	mu.Lock()
	defer mu.Unlock()
	if redisSrv == nil {
		s, err := redisembed.Start(context.Background())
		if err != nil {
			tb.Fatalf("testinfra: embedded redis: %v", err)
		}
		redisSrv = s
		stoppers = append(stoppers, s.Stop)
	}
	return redisSrv.URL(), prefix
}

// Paytest returns the path of a paytest binary built from this module, once
// per test binary.
func Paytest(tb testing.TB) string {
	tb.Helper()
	binOnce.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			binErr = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		root := filepath.Dir(strings.TrimSpace(string(out)))
		dir, err := os.MkdirTemp("", "paytest-bin-")
		if err != nil {
			binErr = err
			return
		}
		mu.Lock()
		binDir = dir
		stoppers = append(stoppers, func() { _ = os.RemoveAll(binDir) })
		mu.Unlock()
		path := filepath.Join(dir, "paytest")
		cmd := exec.Command("go", "build", "-o", path, "./cmd/paytest")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
			return
		}
		binPath = path
	})
	if binErr != nil {
		tb.Fatalf("testinfra: %v", binErr)
	}
	return binPath
}

// WaitFor polls f every 20 ms until it returns nil or timeout passes, then
// fails the test with f's last error (nats-server's checkFor).
func WaitFor(tb testing.TB, timeout time.Duration, f func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("testinfra: condition not met after %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Scrape reads the Prometheus text page at url and returns the sum of the
// named metric's counter, gauge and untyped values over all its series.
func Scrape(url, metric string) (float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	page, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	sum, found, err := promtext.Sum(page, metric)
	if err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("%s: no %s", url, metric)
	}
	return sum, nil
}
