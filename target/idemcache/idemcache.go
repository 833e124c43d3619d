// Package idemcache is the charge service's hot tier for idempotency keys: a
// Redis claim (SET NX PX) that turns away a concurrent duplicate without a
// database round trip, and a cache of finished responses for replay. Postgres
// stays the authority: every miss, lost key, timeout or outage here falls
// through to it, and its unique constraint decides. Nothing in this package
// can make a request charge twice; it can only make one cheaper.
package idemcache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Config configures a Cache.
type Config struct {
	// URL is a redis:// URL.
	URL string
	// Prefix namespaces every key (tests use a unique one).
	Prefix string
	// TTL is how long a finished response stays cached; default 24h.
	TTL time.Duration
	// Timeout bounds each Redis call; past it the caller falls through to
	// Postgres. Default 50ms.
	Timeout time.Duration
	// Registerer receives paytest_idempotency_cache_total{tier="redis",result}.
	Registerer prometheus.Registerer
}

// Entry is a finished response as cached.
type Entry struct {
	Fingerprint string `json:"f"`
	Status      int    `json:"s"`
	ContentType string `json:"c"`
	Body        []byte `json:"b"`
}

// Lookup results, also the metric's result label.
const (
	Hit     = "hit"     // a finished response was cached
	Claimed = "claimed" // no entry: this caller now holds the claim
	Busy    = "busy"    // another caller holds the claim: in flight
	Error   = "error"   // Redis failed or timed out: fall through
)

// Cache is a Redis-backed idempotency cache.
type Cache struct {
	rdb     *redis.Client
	prefix  string
	ttl     time.Duration
	timeout time.Duration
	results *prometheus.CounterVec
}

// New connects to Redis. It does not fail when Redis is down: calls will
// report Error and the service falls through to Postgres.
func New(cfg Config) (*Cache, error) {
	opt, err := redis.ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("idemcache: --redis-url: %w", err)
	}
	if cfg.TTL == 0 {
		cfg.TTL = 24 * time.Hour
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 50 * time.Millisecond
	}
	opt.MaxRetries = -1 // a retry would only delay the fall-through
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = cfg.Timeout, cfg.Timeout, cfg.Timeout
	c := &Cache{rdb: redis.NewClient(opt), prefix: cfg.Prefix, ttl: cfg.TTL, timeout: cfg.Timeout,
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paytest_idempotency_cache_total",
			Help: "Idempotency lookups by tier (redis, postgres) and result.",
		}, []string{"tier", "result"})}
	for _, r := range []string{Hit, Claimed, Busy, Error} {
		c.results.WithLabelValues("redis", r)
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(c.results); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
			c.results = are.ExistingCollector.(*prometheus.CounterVec)
		}
	}
	return c, nil
}

// Counter returns the cache's counter vector, so the service can count its
// Postgres tier under the same metric.
func (c *Cache) Counter() *prometheus.CounterVec { return c.results }

func (c *Cache) key(merchant, key string) string {
	return c.prefix + "idem:" + merchant + ":" + key
}

// claimMark is what a claim holds until the response replaces it.
const claimMark = "claim"

// Lookup returns the cached entry (Hit), or claims the key for lease
// (Claimed), or reports a claim held by another caller (Busy), or Error.
func (c *Cache) Lookup(ctx context.Context, merchant, key string, lease time.Duration) (Entry, string) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	k := c.key(merchant, key)
	ok, err := c.rdb.SetNX(ctx, k, claimMark, lease).Result()
	if err != nil {
		return c.count(Entry{}, Error)
	}
	if ok {
		return c.count(Entry{}, Claimed)
	}
	v, err := c.rdb.Get(ctx, k).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		// The claim expired between the two calls: let Postgres decide.
		return c.count(Entry{}, Error)
	case err != nil:
		return c.count(Entry{}, Error)
	case string(v) == claimMark:
		return c.count(Entry{}, Busy)
	}
	var e Entry
	if err := json.Unmarshal(v, &e); err != nil {
		return c.count(Entry{}, Error)
	}
	return c.count(e, Hit)
}

func (c *Cache) count(e Entry, result string) (Entry, string) {
	c.results.WithLabelValues("redis", result).Inc()
	return e, result
}

// Put caches a finished response, replacing the claim.
func (c *Cache) Put(ctx context.Context, merchant, key string, e Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return c.rdb.Set(ctx, c.key(merchant, key), b, c.ttl).Err()
}

// Release drops a claim this caller holds, after a failure that stored
// nothing, so a retry is not turned away until the lease ends.
func (c *Cache) Release(ctx context.Context, merchant, key string) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	k := c.key(merchant, key)
	// Only delete a claim, never a cached response.
	return c.rdb.Eval(ctx, `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`,
		[]string{k}, claimMark).Err()
}

// Flush deletes every key under the prefix and returns how many: a simulated
// loss of the hot tier.
func (c *Cache) Flush(ctx context.Context) (int, error) {
	n := 0
	iter := c.rdb.Scan(ctx, 0, c.prefix+"idem:*", 1000).Iterator()
	batch := make([]string, 0, 1000)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		d, err := c.rdb.Del(ctx, batch...).Result()
		n += int(d)
		batch = batch[:0]
		return err
	}
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return n, err
	}
	return n, flush()
}

// Close closes the Redis client.
func (c *Cache) Close() error { return c.rdb.Close() }
