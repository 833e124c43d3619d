package charge

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/paytest/paytest/internal/testinfra"
	"github.com/paytest/paytest/target/idemcache"
)

// cacheCount reads paytest_idempotency_cache_total{tier,result}.
func (h *harness) cacheCount(tier, result string) float64 {
	return testutil.ToFloat64(h.svc.cache.Counter().WithLabelValues(tier, result))
}

func newCachedHarness(t *testing.T, cfg Config) (*harness, *idemcache.Cache) {
	t.Helper()
	url, prefix := testinfra.Redis(t)
	cfg.RedisURL, cfg.RedisPrefix = url, prefix
	h := newHarness(t, cfg)
	// A second client on the same prefix plays the operator losing keys.
	c, err := idemcache.New(idemcache.Config{URL: url, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = c.Flush(context.Background()); _ = c.Close() })
	return h, c
}

func TestRedisTier(t *testing.T) {
	ctx := context.Background()
	other := `{"amount":999,"currency":"EUR","customer":"cus_1","sku":"sku-1","quantity":1}`
	tests := []struct {
		name string
		// between runs between the first and second request.
		between func(t *testing.T, h *harness, c *idemcache.Cache)
		// the second request's tier and result on the counter.
		tier, result string
	}{
		{"replay from redis", func(*testing.T, *harness, *idemcache.Cache) {}, "redis", idemcache.Hit},
		{"keys flushed: postgres replays", func(t *testing.T, _ *harness, c *idemcache.Cache) {
			if n, err := c.Flush(ctx); err != nil || n != 1 {
				t.Fatalf("Flush = %d, %v; want 1 key deleted", n, err)
			}
		}, tierPostgres, pgReplay},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, c := newCachedHarness(t, Config{})
			first := h.post(t, DefaultAPIKey, "k1", demoBody)
			if first.status != 200 || first.replayed() {
				t.Fatalf("first = %v", first)
			}
			tc.between(t, h, c)
			before := h.cacheCount(tc.tier, tc.result)
			// Pool acquisitions before and after: a Redis hit makes none.
			acquired := h.pool.Stat().AcquireCount()
			second := h.post(t, DefaultAPIKey, "k1", demoBody)
			if second.status != 200 || !second.replayed() || !bytes.Equal(second.body, first.body) ||
				second.header.Get("Content-Type") != first.header.Get("Content-Type") {
				t.Fatalf("second = %v, want a byte-identical replay of %v", second, first)
			}
			if got := h.cacheCount(tc.tier, tc.result); got != before+1 {
				t.Fatalf("cache{tier=%s,result=%s} = %v, want %v", tc.tier, tc.result, got, before+1)
			}
			if tc.tier == "redis" {
				if d := h.pool.Stat().AcquireCount() - acquired; d != 0 {
					t.Fatalf("a Redis hit used Postgres %d times, want none", d)
				}
			}
			// Same key, different body: 422 from whichever tier answers.
			if r := h.post(t, DefaultAPIKey, "k1", other); r.status != 422 {
				t.Fatalf("different body = %v, want 422", r)
			}
			// A third replay comes from Redis again (the fall-through re-cached it).
			hits := h.cacheCount("redis", idemcache.Hit)
			if r := h.post(t, DefaultAPIKey, "k1", demoBody); !bytes.Equal(r.body, first.body) || !r.replayed() {
				t.Fatalf("third = %v", r)
			}
			if h.cacheCount("redis", idemcache.Hit) != hits+1 {
				t.Fatal("the third request was not a Redis hit")
			}
			if keys, charges, events := rows(t, h.pool); keys != 1 || charges != 1 || events != 1 {
				t.Fatalf("keys, charges, events = %d, %d, %d; want one each", keys, charges, events)
			}
		})
	}
}

func TestRedisDownFallsThrough(t *testing.T) {
	tests := []struct {
		name string
		addr func(t *testing.T) string
	}{
		{"connection refused", func(t *testing.T) string {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close() // nothing listens here now
			return addr
		}},
		{"accepts and never answers (timeouts)", func(t *testing.T) string {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var conns []net.Conn
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					conns = append(conns, c)
				}
			}()
			t.Cleanup(func() {
				ln.Close()
				<-done
				for _, c := range conns {
					c.Close()
				}
			})
			return ln.Addr().String()
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Config{RedisURL: "redis://" + tc.addr(t)})
			first := h.post(t, DefaultAPIKey, "down-1", demoBody)
			second := h.post(t, DefaultAPIKey, "down-1", demoBody)
			if first.status != 200 || second.status != 200 || !second.replayed() || !bytes.Equal(first.body, second.body) {
				t.Fatalf("with Redis down: %v then %v; want a charge and its replay", first, second)
			}
			if n := h.cacheCount("redis", idemcache.Error); n != 2 {
				t.Fatalf("redis errors = %v, want 2", n)
			}
			if n := h.cacheCount(tierPostgres, pgReplay); n != 1 {
				t.Fatalf("postgres replays = %v, want 1", n)
			}
			if _, charges, _ := rows(t, h.pool); charges != 1 {
				t.Fatalf("charges = %d, want 1", charges)
			}
		})
	}
}

func TestRedisRaceOneCharge(t *testing.T) {
	// A processing delay keeps the winner in flight, so racers meet its
	// claim in Redis (busy: 409) or, after a flush, its lock in Postgres.
	h, c := newCachedHarness(t, Config{ProcessingDelay: 20 * time.Millisecond})
	const trials, racers = 20, 8
	for trial := range trials {
		key := fmt.Sprintf("race-%d", trial)
		// Odd trials lose the keys mid-race: Postgres still decides.
		var wg sync.WaitGroup
		start := make(chan struct{})
		got := make([]reply, racers)
		for i := range racers {
			wg.Go(func() {
				<-start
				if trial%2 == 1 && i == racers/2 {
					_, _ = c.Flush(context.Background())
				}
				r, err := doPost(h.client, h.url, DefaultAPIKey, key, demoBody)
				if err != nil {
					t.Error(err)
				}
				got[i] = r
			})
		}
		close(start)
		wg.Wait()
		var bodies [][]byte
		for _, r := range got {
			switch {
			case r.status == 200:
				bodies = append(bodies, r.body)
			case r.status == 409 && r.header.Get("Retry-After") != "":
			default:
				t.Fatalf("trial %d: answer %v", trial, r)
			}
		}
		for _, b := range bodies[1:] {
			if !bytes.Equal(b, bodies[0]) {
				t.Fatalf("trial %d: two different 200 bodies:\n%s\n%s", trial, bodies[0], b)
			}
		}
	}
	if n := count(t, h.pool, `SELECT count(*) FROM charges`); n != trials {
		t.Fatalf("charges = %d, want %d (one per key)", n, trials)
	}
	if n := count(t, h.pool, `SELECT count(*) FROM outbox`); n != trials {
		t.Fatalf("events = %d, want %d", n, trials)
	}
	if h.cacheCount("redis", idemcache.Busy) == 0 {
		t.Fatal("no racer met a Redis claim: the race did not exercise the hot tier")
	}
}
