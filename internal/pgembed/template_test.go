package pgembed

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// mustStart starts a cluster with opts, stopped when the test ends.
func mustStart(tb testing.TB, opts Options) *Cluster {
	tb.Helper()
	c, err := Start(context.Background(), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Stop() })
	return c
}

// mustExec runs sql on database postgres of c.
func mustExec(tb testing.TB, c *Cluster, sql string) {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		tb.Fatal(err)
	}
}

// The first cluster keeps initdb's data directory; the next ones copy it,
// each a directory of its own: what one cluster writes, the next does not
// see, and the template is never written to.
func TestClustersCopyTheKeptTemplate(t *testing.T) {
	cache := t.TempDir()
	began := time.Now()
	first := mustStart(t, Options{CacheDir: cache})
	t.Logf("initdb and start: %v", time.Since(began).Round(time.Millisecond))
	if first.copied {
		t.Fatal("first cluster copied a template from an empty cache")
	}
	mustExec(t, first, "CREATE TABLE only_in_first (x int)")
	entries, err := os.ReadDir(cache)
	if err != nil || len(entries) != 1 {
		t.Fatalf("cache holds %v (%v), want one template", entries, err)
	}
	tmpl := filepath.Join(cache, entries[0].Name())
	if _, err := os.Stat(filepath.Join(tmpl, templateMarker)); err != nil {
		t.Fatalf("template has no marker: %v", err)
	}

	for i := range 2 {
		began = time.Now()
		c := mustStart(t, Options{CacheDir: cache})
		t.Logf("copy and start: %v", time.Since(began).Round(time.Millisecond))
		if !c.copied {
			t.Fatalf("cluster %d ran initdb with a template kept", i+2)
		}
		if _, err := os.Stat(filepath.Join(c.Dir(), "data", templateMarker)); !os.IsNotExist(err) {
			t.Fatalf("cluster %d's data directory kept the marker: %v", i+2, err)
		}
		// A table of the first cluster is not here, and this one's is new.
		mustExec(t, c, "CREATE TABLE only_in_first (x int)")
	}
	if _, err := os.Stat(filepath.Join(tmpl, "postmaster.pid")); !os.IsNotExist(err) {
		t.Fatalf("a server ran in the template itself: %v", err)
	}
}

// A template without its marker (a copy cut short) is never used; the next
// initdb replaces it. CacheOff keeps nothing.
func TestIncompleteTemplateIsReplacedAndCacheOffKeepsNone(t *testing.T) {
	cache := t.TempDir()
	bin, err := findBinDir("")
	if err != nil {
		t.Fatal(err)
	}
	tmpl := templateDir(cache, bin)
	if err := os.MkdirAll(filepath.Join(tmpl, "base"), 0o700); err != nil {
		t.Fatal(err)
	}
	if c := mustStart(t, Options{CacheDir: cache}); c.copied {
		t.Fatal("cluster copied a template without its marker")
	}
	if _, err := os.Stat(filepath.Join(tmpl, templateMarker)); err != nil {
		t.Fatalf("incomplete template not replaced: %v", err)
	}
	if _, err := os.Stat(filepath.Join(tmpl, "PG_VERSION")); err != nil {
		t.Fatalf("replaced template is not a data directory: %v", err)
	}

	if c := mustStart(t, Options{CacheDir: CacheOff}); c.copied {
		t.Fatal("CacheOff copied a template")
	}
	if templateDir(CacheOff, bin) != "" {
		t.Fatal("CacheOff names a template directory")
	}
}

// copyFile leaves zero blocks as holes and keeps the length, also when the
// file ends in zeros.
func TestCopyFileKeepsContentAndLength(t *testing.T) {
	dir := t.TempDir()
	tests := map[string][]byte{
		"empty":       nil,
		"short":       []byte("PG_VERSION 15\n"),
		"zeros":       make([]byte, 3*copyBlock+17),
		"data, holes": append(append([]byte("head"), make([]byte, 2*copyBlock)...), []byte("tail")...),
	}
	for name, content := range tests {
		t.Run(name, func(t *testing.T) {
			src, dst := filepath.Join(dir, name), filepath.Join(dir, name+".copy")
			if err := os.WriteFile(src, content, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := copyFile(src, dst, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(dst)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(content) {
				t.Fatalf("copy differs: %d bytes, want %d", len(got), len(content))
			}
		})
	}
}
