// Package charge is paytest's reference charge API: POST /charge behind an
// idempotency-key state machine in PostgreSQL, in the style of Stripe's
// idempotent requests and brandur's rocket-rides-atomic.
//
// A key is claimed atomically (INSERT ... ON CONFLICT DO NOTHING on
// UNIQUE(merchant, key) decides every race), bound to a SHA-256 fingerprint
// of the canonical request, and locked with a lease. The charge row, its
// outbox row and the key's stored response are written in one transaction,
// so a finished key always has exactly one charge and one event. Every
// (merchant, key) gets exactly one of: new (200), replay (the stored answer
// byte for byte with Idempotent-Replayed: true), 409 while in flight, 422 for
// a different request. A request whose process died keeps its key locked
// only until the lease ends; then a retry takes it over and completes it once.
//
// The unsafe modes (Unsafe) break these properties on purpose, so that tests
// can show paytest's checks catch the breakage.
package charge

import (
	"cmp"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/crashpoint"
	"github.com/paytest/paytest/internal/pgmigrate"
	"github.com/paytest/paytest/target/consumer"
	"github.com/paytest/paytest/target/idemcache"
	"github.com/paytest/paytest/target/outbox"
)

// Crash points this service arms with --crash-at.
const (
	// CrashAfterClaim fires once a key is claimed (committed as started)
	// and before the charge transaction commits.
	CrashAfterClaim = "after-claim"
	// CrashAfterCommit fires once the charge transaction has committed and
	// before the response is written (and, with dual-write, before the
	// event is published).
	CrashAfterCommit = "after-commit-before-response"
)

// CrashPoints lists the crash points for crashpoint.Parse.
var CrashPoints = []string{CrashAfterClaim, CrashAfterCommit}

// Unsafe modes, each refused unless asked for by name.
const (
	// ModeNoIdempotency ignores the key: every request makes a new charge.
	ModeNoIdempotency = "no-idempotency"
	// ModeNonAtomicCreate reads the key and, if absent, does the work and
	// then upserts the key: concurrent same-key requests double-charge.
	ModeNonAtomicCreate = "non-atomic-create"
	// ModeDualWrite writes no outbox row and publishes the event to NATS
	// after the commit: a crash in between loses the event.
	ModeDualWrite = "dual-write"
)

// UnsafeModes lists the unsafe modes by name.
var UnsafeModes = []string{ModeNoIdempotency, ModeNonAtomicCreate, ModeDualWrite}

// Unsafe is the set of unsafe modes enabled. The zero value is the safe
// service.
type Unsafe struct {
	NoIdempotency   bool
	NonAtomicCreate bool
	DualWrite       bool
}

// ParseUnsafe turns mode names into an Unsafe set, refusing unknown names
// and the contradictory pair no-idempotency + non-atomic-create.
func ParseUnsafe(modes []string) (Unsafe, error) {
	var u Unsafe
	for _, m := range modes {
		switch strings.TrimSpace(m) {
		case "":
		case ModeNoIdempotency:
			u.NoIdempotency = true
		case ModeNonAtomicCreate:
			u.NonAtomicCreate = true
		case ModeDualWrite:
			u.DualWrite = true
		default:
			return Unsafe{}, apperr.Errorf(apperr.EUSAGE, "unknown unsafe mode %q (the charge service has: %s)", m, strings.Join(UnsafeModes, ", "))
		}
	}
	if u.NoIdempotency && u.NonAtomicCreate {
		return Unsafe{}, apperr.Errorf(apperr.EUSAGE, "unsafe modes %s and %s exclude each other", ModeNoIdempotency, ModeNonAtomicCreate)
	}
	return u, nil
}

// Modes returns the enabled modes' names, sorted.
func (u Unsafe) Modes() []string {
	var m []string
	if u.DualWrite {
		m = append(m, ModeDualWrite)
	}
	if u.NoIdempotency {
		m = append(m, ModeNoIdempotency)
	}
	if u.NonAtomicCreate {
		m = append(m, ModeNonAtomicCreate)
	}
	sort.Strings(m)
	return m
}

// Defaults for Config's zero fields.
const (
	DefaultLease     = 30 * time.Second
	DefaultRetention = 24 * time.Hour
	DefaultMaxConns  = 16
	// DefaultRequestTimeout bounds the database work of one request.
	DefaultRequestTimeout = 10 * time.Second
	// DefaultAPIKey is the documented demo credential: merchant "demo".
	DefaultAPIKey   = "sk_test_demo"
	DefaultMerchant = "demo"
)

// Config configures a Service. Pool or DatabaseURL is required.
type Config struct {
	// Pool is used as is when set (and not closed by Close); otherwise a
	// pool is opened on DatabaseURL with MaxConns connections.
	Pool        *pgxpool.Pool
	DatabaseURL string
	MaxConns    int32
	// APIKeys maps a bearer secret to the merchant it names. Empty means
	// {DefaultAPIKey: DefaultMerchant}.
	APIKeys map[string]string
	// Lease is how long a claimed key stays locked to the request working
	// on it; after that a retry may take it over. Default 30s.
	Lease time.Duration
	// Retention is how long keys are kept before the reaper deletes them.
	// Default 24h.
	Retention time.Duration
	// ReapInterval is how often Run reaps; default min(Retention/2, 1m).
	ReapInterval time.Duration
	// RequestTimeout bounds the database work of one request; default
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// ProcessingDelay simulates the call to a card processor that a real
	// charge makes between claiming its key and recording the charge. While
	// it lasts, a same-key request finds the key in flight and gets 409 +
	// Retry-After, as it would in production. Zero (the default) writes the
	// charge in the same round trip as the claim.
	ProcessingDelay time.Duration
	// Catalog is how many skus the service sells: the consumer's catalog,
	// consumer.CatalogSKU(1) .. CatalogSKU(Catalog). A charge for any other
	// sku is refused (400), since the consumer could not apply it. Zero
	// means consumer.DefaultCatalog, the consumer's own default.
	Catalog int
	// Crash holds the armed crash points (CrashPoints); nil arms none.
	Crash *crashpoint.Set
	// Unsafe enables unsafe modes; the zero value is safe.
	Unsafe Unsafe
	// Logger logs; nil discards.
	Logger *slog.Logger
	// Registry receives the service's metrics; nil makes a new one.
	Registry *prometheus.Registry
	// NATSURL and Subject are used by the dual-write mode only.
	NATSURL string
	Subject string
	// RedisURL, when set, puts a Redis hot tier (target/idemcache) in
	// front of Postgres: cached replays and in-flight claims are answered
	// without a database round trip; any miss, lost key or Redis failure
	// falls through to Postgres, which stays the authority. Safe mode only.
	RedisURL string
	// RedisPrefix namespaces the cache's keys (tests use a unique one).
	RedisPrefix string
	// RedisTimeout bounds each Redis call; default 50ms.
	RedisTimeout time.Duration
}

// Service is a running charge API.
type Service struct {
	cfg     Config
	pool    *pgxpool.Pool
	ownPool bool
	keys    apiKeys
	log     *slog.Logger
	reg     *prometheus.Registry
	m       *metrics
	nc      *nats.Conn
	js      jetstream.JetStream
	cache   *idemcache.Cache
	// The charge transaction, addressing the key by id or by key.
	txByID, txByKey string

	closeOnce sync.Once
}

// New validates cfg, connects, applies the migrations (charge and outbox)
// and returns a Service ready to serve.
func New(ctx context.Context, cfg Config) (*Service, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: cfg.Logger, reg: cfg.Registry,
		txByID: chargeTxSQL(false, !cfg.Unsafe.DualWrite), txByKey: chargeTxSQL(true, !cfg.Unsafe.DualWrite)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.reg == nil {
		s.reg = prometheus.NewRegistry()
	}
	if s.keys, err = parseKeys(cfg.APIKeys); err != nil {
		return nil, err
	}
	if err := s.openPool(ctx); err != nil {
		return nil, err
	}
	if err := s.setUp(ctx); err != nil {
		s.Close()
		return nil, err
	}
	for _, mode := range cfg.Unsafe.Modes() {
		s.log.Warn("UNSAFE MODE ENABLED: this charge service is deliberately broken", "unsafe", mode, "breaks", unsafeBreaks[mode])
	}
	return s, nil
}

// withDefaults fills in the defaults of the fields left zero and checks
// the result.
func (cfg Config) withDefaults() (Config, error) {
	cfg.Lease = cmp.Or(cfg.Lease, DefaultLease)
	cfg.Retention = cmp.Or(cfg.Retention, DefaultRetention)
	cfg.ReapInterval = cmp.Or(cfg.ReapInterval, min(cfg.Retention/2, time.Minute))
	cfg.RequestTimeout = cmp.Or(cfg.RequestTimeout, DefaultRequestTimeout)
	cfg.MaxConns = cmp.Or(cfg.MaxConns, DefaultMaxConns)
	cfg.Subject = cmp.Or(cfg.Subject, outbox.DefaultSubject)
	cfg.Catalog = cmp.Or(cfg.Catalog, consumer.DefaultCatalog)
	switch {
	case cfg.Catalog < 0:
		return cfg, apperr.Errorf(apperr.EUSAGE, "the catalog must hold at least one sku, got %d", cfg.Catalog)
	case cfg.Lease < 0 || cfg.Retention < 0 || cfg.ReapInterval < 0 || cfg.RequestTimeout < 0 || cfg.ProcessingDelay < 0:
		return cfg, apperr.Errorf(apperr.EUSAGE, "lease, retention and intervals must be positive")
	case cfg.ProcessingDelay >= cfg.Lease:
		return cfg, apperr.Errorf(apperr.EUSAGE, "processing delay (%s) must be shorter than the lease (%s)", cfg.ProcessingDelay, cfg.Lease)
	case cfg.Retention < cfg.Lease:
		return cfg, apperr.Errorf(apperr.EUSAGE, "retention (%s) must not be shorter than the lease (%s)", cfg.Retention, cfg.Lease)
	case cfg.Unsafe.NoIdempotency && cfg.Unsafe.NonAtomicCreate:
		return cfg, apperr.Errorf(apperr.EUSAGE, "unsafe modes %s and %s exclude each other", ModeNoIdempotency, ModeNonAtomicCreate)
	case cfg.Unsafe.DualWrite && cfg.NATSURL == "":
		return cfg, apperr.Errorf(apperr.EUSAGE, "unsafe mode %s publishes straight to NATS: it needs a NATS URL (--nats-url)", ModeDualWrite)
	case cfg.Pool == nil && cfg.DatabaseURL == "":
		return cfg, apperr.Errorf(apperr.EUSAGE, "charge: a database pool or URL is required")
	}
	return cfg, nil
}

// parseKeys turns secret -> merchant into the digests requests are
// checked against; none means the demo key.
func parseKeys(keys map[string]string) (apiKeys, error) {
	if len(keys) == 0 {
		keys = map[string]string{DefaultAPIKey: DefaultMerchant}
	}
	var out apiKeys
	for secret, merchant := range keys {
		if secret == "" || merchant == "" {
			return nil, apperr.Errorf(apperr.EUSAGE, "an API key needs both a merchant and a secret")
		}
		out = append(out, apiKey{digest: sha256.Sum256([]byte(secret)), merchant: merchant})
	}
	return out, nil
}

// openPool takes the configured pool, or opens one on the database URL.
func (s *Service) openPool(ctx context.Context) error {
	if s.cfg.Pool != nil {
		s.pool = s.cfg.Pool
		return nil
	}
	pc, err := pgxpool.ParseConfig(s.cfg.DatabaseURL)
	if err != nil {
		return apperr.Wrap(apperr.EUSAGE, err, "database URL")
	}
	pc.MaxConns = s.cfg.MaxConns
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return apperr.Wrap(apperr.EUSAGE, err, "database URL")
	}
	s.pool, s.ownPool = pool, true
	return nil
}

// setUp applies the migrations and makes the metrics, the cache and, in
// the dual-write mode, the NATS connection.
func (s *Service) setUp(ctx context.Context) error {
	if err := pgmigrate.Apply(ctx, s.pool, "charge", Migrations); err != nil {
		return apperr.Wrap(apperr.EUNAVAILABLE, err, "charge: migrations")
	}
	if err := outbox.Migrate(ctx, s.pool); err != nil {
		return apperr.Wrap(apperr.EUNAVAILABLE, err, "charge: outbox migrations")
	}
	m, err := newMetrics(s.reg, s.pool)
	if err != nil {
		return fmt.Errorf("charge: metrics: %w", err)
	}
	s.m = m
	if err := newCache(s.cfg, s); err != nil {
		return err
	}
	if s.cfg.Unsafe.DualWrite {
		return s.connectNATS()
	}
	return nil
}

// connectNATS connects the dual-write mode to the broker it publishes to.
func (s *Service) connectNATS() error {
	nc, err := nats.Connect(s.cfg.NATSURL, nats.Name("paytest-charge"), nats.MaxReconnects(-1),
		// No reconnect buffer: a publish while the broker is away fails
		// now, as a dual write does, instead of being sent later and
		// hiding the loss this mode exists to show.
		nats.ReconnectBufSize(-1))
	if err != nil {
		return apperr.Wrap(apperr.EUNAVAILABLE, err, "charge: connect to NATS at %s", s.cfg.NATSURL)
	}
	s.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("charge: jetstream: %w", err)
	}
	s.js = js
	return nil
}

var unsafeBreaks = map[string]string{
	ModeNoIdempotency:   "every request is a new charge: retries double-charge",
	ModeNonAtomicCreate: "keys are read then written: concurrent same-key requests double-charge",
	ModeDualWrite:       "no outbox: the event is published after commit and a crash in between loses it",
}

// Pool returns the database pool the service uses.
func (s *Service) Pool() *pgxpool.Pool { return s.pool }

// Registry returns the registry holding the service's metrics.
func (s *Service) Registry() *prometheus.Registry { return s.reg }

// Run reaps expired idempotency keys every ReapInterval until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.ReapInterval)
	defer t.Stop()
	for {
		if n, err := s.Reap(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("reaper: could not delete expired keys", "err", err)
		} else if n > 0 {
			s.log.Info("reaper: deleted expired idempotency keys", "keys", n, "retention", s.cfg.Retention)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Reap deletes the keys older than Retention that nobody holds, in batches,
// and returns how many it deleted. A key reused after it was reaped starts a
// new operation, as at Stripe.
func (s *Service) Reap(ctx context.Context) (int64, error) {
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE id IN (
			SELECT id FROM idempotency_keys
			WHERE created_at < now() - $1 * interval '1 millisecond'
			  AND (state = 'finished' OR locked_until < now())
			LIMIT 1000)`, s.cfg.Retention.Milliseconds())
		if err != nil {
			return total, dbError(err, "reap keys")
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < 1000 {
			return total, nil
		}
	}
}

// Close releases the database pool (if New opened it) and the NATS
// connection. It is safe to call more than once.
func (s *Service) Close() {
	s.closeOnce.Do(func() {
		if s.nc != nil {
			s.nc.Close()
		}
		if s.cache != nil {
			_ = s.cache.Close()
		}
		if s.ownPool && s.pool != nil {
			s.pool.Close()
		}
	})
}
