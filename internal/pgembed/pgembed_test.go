package pgembed

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/paytest/paytest/internal/apperr"
)

func TestStartQueryStop(t *testing.T) {
	ctx := context.Background()
	began := time.Now()
	c, err := Start(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	t.Logf("cluster up in %s on port %d", time.Since(began).Round(time.Millisecond), c.Port())

	if err := CreateDatabase(ctx, c.URL("postgres"), "pgembed_t"); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, c.URL("pgembed_t"))
	if err != nil {
		t.Fatal(err)
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("SELECT 1 = %d, %v", one, err)
	}
	conn.Close(ctx)

	dir := c.Dir()
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("directory %s left behind: %v", dir, err)
	}
	if _, err := pgx.Connect(ctx, c.URL("postgres")); err == nil {
		t.Fatal("server still accepts connections after Stop")
	}
}

func TestMissingBinariesIsInconclusiveWithAdvice(t *testing.T) {
	_, err := Start(context.Background(), Options{BinDir: t.TempDir()})
	if apperr.Code(err) != apperr.EINCONCLUSIVE {
		t.Fatalf("code = %q (%v)", apperr.Code(err), err)
	}
	if msg := err.Error(); !strings.Contains(msg, "apt-get install postgresql") || !strings.Contains(msg, "--database-url") {
		t.Fatalf("message does not teach the fix: %s", msg)
	}
}

func TestWithDatabase(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u@h:5/postgres?sslmode=disable":    "postgres://u@h:5/x?sslmode=disable",
		"postgres://u@h:5":                             "postgres://u@h:5/x",
		"postgresql://h/db":                            "postgresql://h/x",
		"postgres://u:p%40ss@h/db%2Fold?sslmode=allow": "postgres://u:p%40ss@h/x?sslmode=allow",
		"host=h user=u dbname=old sslmode=disable":     "host=h user=u dbname='x' sslmode=disable",
		"dbname = 'old db' host=h":                     "dbname='x' host=h",
		"host=h user=u":                                "host=h user=u dbname='x'",
		"host=h mydbname=keep":                         "host=h mydbname=keep dbname='x'",
	} {
		got, err := WithDatabase(in, "x")
		if err != nil || got != want {
			t.Errorf("WithDatabase(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := WithDatabase("postgres://h:bad port/db", "x"); err == nil {
		t.Error("a malformed URL was accepted")
	}
}
