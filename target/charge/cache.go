package charge

import (
	"context"
	"encoding/hex"
	"time"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/target/idemcache"
)

// Results of the Postgres tier on paytest_idempotency_cache_total, beside
// idemcache's Redis results: every lookup the hot tier did not answer.
const (
	pgNew      = "new"
	pgReplay   = "replay"
	pgConflict = "conflict"
	pgMismatch = "mismatch"
	pgError    = "error"
)

// tierPostgres is the metric's tier label for the authority.
const tierPostgres = "postgres"

// chargeCached puts the Redis hot tier in front of the Postgres state
// machine: a cached finished response is replayed (or a different request
// refused) and a claim held elsewhere answered 409, without a database
// round trip. Everything else (a claim won, a miss after a lost key, a Redis
// error or timeout) falls through to chargeSafe unchanged, whose unique
// constraint decides. Only finished 200 answers are cached; a failure that
// stored nothing releases this request's claim.
func (s *Service) chargeCached(ctx context.Context, merchant, key string, req Request) (answer, error) {
	fp := req.Fingerprint()
	fph := hex.EncodeToString(fp[:])
	e, res := s.cache.Lookup(ctx, merchant, key, s.cfg.Lease)
	switch res {
	case idemcache.Hit:
		if e.Fingerprint != fph {
			return answer{}, apperr.Errorf(apperr.EMISMATCH,
				"Idempotency-Key %q was already used with a different request; use a new key for a new charge", key)
		}
		return answer{status: e.Status, contentType: e.ContentType, body: e.Body, replayed: true}, nil
	case idemcache.Busy:
		return answer{}, inFlight(key)
	}
	ans, err := s.chargeSafe(ctx, merchant, key, req)
	// Cache writes outlive a request whose client hung up, and never fail it.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	switch {
	case err == nil:
		if ans.replayed {
			s.pgTier(pgReplay)
		} else {
			s.pgTier(pgNew)
		}
		if ans.status == 200 {
			if perr := s.cache.Put(cctx, merchant, key, idemcache.Entry{Fingerprint: fph, Status: ans.status,
				ContentType: ans.contentType, Body: ans.body}); perr != nil {
				s.log.Debug("idempotency cache: put failed (Postgres holds the answer)", "err", perr)
			}
			return ans, nil
		}
	case apperr.Code(err) == apperr.ECONFLICT:
		s.pgTier(pgConflict)
	case apperr.Code(err) == apperr.EMISMATCH:
		s.pgTier(pgMismatch)
	default:
		s.pgTier(pgError)
	}
	if res == idemcache.Claimed {
		if rerr := s.cache.Release(cctx, merchant, key); rerr != nil {
			s.log.Debug("idempotency cache: release failed (the claim expires with the lease)", "err", rerr)
		}
	}
	return ans, err
}

func (s *Service) pgTier(result string) {
	s.cache.Counter().WithLabelValues(tierPostgres, result).Inc()
}

// newCache connects the hot tier when cfg.RedisURL is set.
func newCache(cfg Config, s *Service) error {
	if cfg.RedisURL == "" {
		return nil
	}
	c, err := idemcache.New(idemcache.Config{URL: cfg.RedisURL, Prefix: cfg.RedisPrefix, TTL: cfg.Retention,
		Timeout: cfg.RedisTimeout, Registerer: s.reg})
	if err != nil {
		return apperr.Wrap(apperr.EUSAGE, err, "charge: --redis-url")
	}
	for _, r := range []string{pgNew, pgReplay, pgConflict, pgMismatch, pgError} {
		c.Counter().WithLabelValues(tierPostgres, r)
	}
	s.cache = c
	return nil
}
