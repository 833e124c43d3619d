package verify

import (
	"math"
	"os"

	"github.com/paytest/paytest/internal/promtext"
)

// MetricIdempotencyCache is the charge service's two-tier idempotency
// counter, labelled tier (redis, postgres) and result.
const MetricIdempotencyCache = "paytest_idempotency_cache_total"

// CacheFigures is report.json's "idempotency_cache": how the charge
// service's Redis hot tier and its Postgres authority answered, read from
// metrics/charge.prom. Present only when that page has the metric.
type CacheFigures struct {
	// RedisHit counts duplicates Redis answered from a cached response.
	RedisHit float64 `json:"redis_hit"`
	// RedisBusy counts same-key requests Redis's claim answered 409.
	RedisBusy float64 `json:"redis_busy"`
	// RedisError counts lookups that failed or timed out in Redis.
	RedisError float64 `json:"redis_error"`
	// FallThrough counts duplicates Redis did not answer that Postgres
	// decided (replay, conflict or mismatch): lost keys, outages, races.
	FallThrough float64 `json:"fall_through"`
	// PostgresNew counts first requests, charged through Postgres.
	PostgresNew float64 `json:"postgres_new"`
	// HitRatio is RedisHit / (RedisHit + FallThrough): the share of the
	// duplicates reaching a replay decision that Redis answered.
	HitRatio float64 `json:"hit_ratio"`
}

// readCacheFigures reads the cache counter by label from a metrics page;
// nil when the page or the metric is absent.
func readCacheFigures(path string) *CacheFigures {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	fams, err := promtext.Parse(b)
	if err != nil {
		return nil
	}
	f, ok := fams[MetricIdempotencyCache]
	if !ok {
		return nil
	}
	c := &CacheFigures{}
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		v := m.GetCounter().GetValue()
		switch tier, result := labels["tier"], labels["result"]; {
		case tier == "redis" && result == "hit":
			c.RedisHit += v
		case tier == "redis" && result == "busy":
			c.RedisBusy += v
		case tier == "redis" && result == "error":
			c.RedisError += v
		case tier == "postgres" && result == "new":
			c.PostgresNew += v
		case tier == "postgres" && (result == "replay" || result == "conflict" || result == "mismatch"):
			c.FallThrough += v
		}
	}
	if d := c.RedisHit + c.FallThrough; d > 0 {
		c.HitRatio = math.Round(c.RedisHit/d*1000) / 1000
	}
	return c
}
