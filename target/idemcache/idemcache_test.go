package idemcache

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/paytest/paytest/internal/testinfra"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

func mustCache(t *testing.T) *Cache {
	t.Helper()
	url, prefix := testinfra.Redis(t)
	c, err := New(Config{URL: url, Prefix: prefix, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = c.Flush(context.Background()); _ = c.Close() })
	return c
}

func TestClaimBusyHitAndFlush(t *testing.T) {
	ctx := context.Background()
	c := mustCache(t)
	if _, r := c.Lookup(ctx, "m", "k", time.Minute); r != Claimed {
		t.Fatalf("first lookup = %s, want claimed", r)
	}
	if _, r := c.Lookup(ctx, "m", "k", time.Minute); r != Busy {
		t.Fatalf("second lookup while claimed = %s, want busy", r)
	}
	if _, r := c.Lookup(ctx, "other", "k", time.Minute); r != Claimed {
		t.Fatalf("another merchant's same key = %s, want claimed: keys are per merchant", r)
	}
	want := Entry{Fingerprint: "fp", Status: 200, ContentType: "application/json", Body: []byte(`{"id":"ch_1"}`)}
	if err := c.Put(ctx, "m", "k", want); err != nil {
		t.Fatal(err)
	}
	got, r := c.Lookup(ctx, "m", "k", time.Minute)
	if r != Hit || got.Fingerprint != "fp" || string(got.Body) != string(want.Body) || got.Status != 200 {
		t.Fatalf("after Put: %s %+v", r, got)
	}
	if err := c.Release(ctx, "m", "k"); err != nil {
		t.Fatal(err)
	}
	if _, r := c.Lookup(ctx, "m", "k", time.Minute); r != Hit {
		t.Fatalf("Release must never drop a cached response; lookup = %s", r)
	}
	n, err := c.Flush(ctx)
	if err != nil || n != 2 {
		t.Fatalf("Flush = %d, %v; want 2 keys", n, err)
	}
	if _, r := c.Lookup(ctx, "m", "k", time.Minute); r != Claimed {
		t.Fatalf("after Flush lookup = %s, want claimed (the hot tier forgot)", r)
	}
	if v := testutil.ToFloat64(c.Counter().WithLabelValues("redis", Hit)); v != 2 {
		t.Fatalf("hit count = %v, want 2", v)
	}
}

func TestRedisDownIsAnErrorNotABlock(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c, err := New(Config{URL: "redis://" + addr + "/0", Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	began := time.Now()
	if _, r := c.Lookup(context.Background(), "m", "k", time.Minute); r != Error {
		t.Fatalf("lookup with redis down = %s, want error", r)
	}
	if d := time.Since(began); d > time.Second {
		t.Fatalf("a down Redis held the request for %s", d)
	}
	if v := testutil.ToFloat64(c.Counter().WithLabelValues("redis", Error)); v != 1 {
		t.Fatalf("error count = %v", v)
	}
}
