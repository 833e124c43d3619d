// Package relay moves outbox rows to NATS JetStream at least once.
//
// It claims unpublished rows in batches by state, never by position:
//
//	SELECT ... FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT n FOR UPDATE SKIP LOCKED
//
// inside a transaction, publishes each row and waits for the broker's ack,
// then marks the acked rows published in the same transaction and commits.
// A row whose id was allocated early but committed late is therefore never
// skipped (an `id > last` poller would skip it for good), and two relays
// never publish the same row twice in the normal path, because a claimed row
// is locked. A crash between the ack and the commit republishes the batch:
// the relay is at-least-once and the consumer's inbox absorbs the repeats.
//
// Config.Workers such loops run at once (SKIP LOCKED keeps their batches
// apart), overlapping database and broker round trips; each batch's
// transaction takes two round trips (BEGIN pipelined with the claim, the
// marks with COMMIT).
//
// Publishing goes through a token bucket (Config.PublishRate, Config.Burst)
// so that a backlog drains at a set pace; failed publishes back off with full
// jitter and bump the row's attempts and last_error.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/time/rate"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/backoff"
	"github.com/paytest/paytest/internal/crashpoint"
	"github.com/paytest/paytest/internal/health"
	"github.com/paytest/paytest/target/outbox"
)

// CrashAfterPublish is the relay's crash point: armed with
// "after-publish:N" it SIGKILLs the process right after the broker acked the
// N-th publish and before that row is marked published.
const CrashAfterPublish = "after-publish"

// Defaults for the zero fields of Config.
const (
	DefaultBatch         = 100
	DefaultWorkers       = 4
	DefaultPollInterval  = 50 * time.Millisecond
	DefaultAckTimeout    = 10 * time.Second
	DefaultBackoffBase   = 100 * time.Millisecond
	DefaultBackoffMax    = 5 * time.Second
	DefaultStatsInterval = 500 * time.Millisecond
)

// Config configures a Relay. Zero fields take the defaults above, the
// outbox package's stream and subject, and unlimited publishing.
type Config struct {
	// DatabaseURL is the Postgres database holding the outbox table.
	DatabaseURL string
	// NATSURL is the NATS server with JetStream.
	NATSURL string
	// Stream and Subject name the JetStream stream and the subject events
	// are published on (outbox.DefaultStream, outbox.DefaultSubject).
	Stream  string
	Subject string
	// Batch is how many rows one transaction claims.
	Batch int
	// PublishRate caps publishing in events per second; 0 is unlimited.
	PublishRate float64
	// Burst is the token bucket's size; 0 means a tenth of a second's worth
	// of PublishRate, at least 1.
	Burst int
	// PublishDedup sets Nats-Msg-Id to the event id, so JetStream drops a
	// republished event within its duplicates window. Crash tests turn it
	// off to show that the consumer's inbox does the work.
	PublishDedup bool
	// Workers is how many claim-publish-mark loops run at once. They
	// overlap database and broker round trips; like several relays, they
	// give up global publish order (never a row). One worker publishes in
	// id order.
	Workers int
	// PollInterval is how long the relay sleeps when the outbox is drained.
	PollInterval time.Duration
	// AckTimeout bounds the wait for a batch's publish acks.
	AckTimeout time.Duration
	// BackoffBase and BackoffMax shape the full-jitter backoff after a
	// failed batch: sleep a random time in [0, min(max, base*2^failures)).
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// StatsInterval is how often paytest_outbox_pending and
	// paytest_outbox_lag_seconds are refreshed.
	StatsInterval time.Duration
	// CrashAt arms crash points ("after-publish" or "after-publish:N").
	CrashAt []string
	// Logger receives the relay's logs; nil discards them.
	Logger *slog.Logger
}

// Relay publishes outbox rows to JetStream. Create it with New, run it with
// Run, and serve Handler for /metrics, /healthz and /readyz.
type Relay struct {
	cfg     Config
	log     *slog.Logger
	crash   *crashpoint.Set
	limiter *rate.Limiter
	reg     *prometheus.Registry

	published     prometheus.Counter
	publishErrors prometheus.Counter
	pending       prometheus.Gauge
	lag           prometheus.Gauge

	running atomic.Bool
	ready   atomic.Bool
	pool    atomic.Pointer[pgxpool.Pool]
	nc      atomic.Pointer[nats.Conn]
}

// New validates cfg and returns a Relay. It opens no connection: Run does.
func New(cfg Config) (*Relay, error) {
	if cfg.DatabaseURL == "" {
		return nil, apperr.Errorf(apperr.EUSAGE, "relay: a database URL is required")
	}
	if cfg.NATSURL == "" {
		return nil, apperr.Errorf(apperr.EUSAGE, "relay: a NATS URL is required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Stream == "" {
		cfg.Stream = outbox.DefaultStream
	}
	if cfg.Subject == "" {
		cfg.Subject = outbox.DefaultSubject
	}
	if cfg.Batch == 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.Workers == 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = DefaultAckTimeout
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = DefaultBackoffBase
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = DefaultBackoffMax
	}
	if cfg.StatsInterval <= 0 {
		cfg.StatsInterval = DefaultStatsInterval
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	crash, err := crashpoint.Parse(cfg.CrashAt, CrashAfterPublish)
	if err != nil {
		return nil, err
	}
	if crash != nil {
		crash.Notes = func(msg string) { log.Warn(msg) }
		log.Warn("crash point armed", "crash_at", cfg.CrashAt)
	}
	limiter := rate.NewLimiter(rate.Inf, 0)
	if cfg.PublishRate > 0 {
		if cfg.Burst == 0 {
			cfg.Burst = max(1, int(math.Ceil(cfg.PublishRate/10)))
		}
		limiter = rate.NewLimiter(rate.Limit(cfg.PublishRate), cfg.Burst)
	}
	r := &Relay{cfg: cfg, log: log, crash: crash, limiter: limiter, reg: prometheus.NewRegistry()}
	r.published = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "paytest_relay_published_total",
		Help: "Outbox events the broker acknowledged (a republished event counts again).",
	})
	r.publishErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "paytest_relay_publish_errors_total",
		Help: "Publishes that failed or were not acknowledged in time.",
	})
	r.pending = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "paytest_outbox_pending",
		Help: "Outbox rows not yet published.",
	})
	r.lag = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "paytest_outbox_lag_seconds",
		Help: "Age of the oldest unpublished outbox row (0 when none).",
	})
	// The configured pace, so that evidence can judge a drain against it.
	limit := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "paytest_relay_publish_rate_limit",
		Help: "The relay's --publish-rate in events per second (0: unlimited).",
	})
	limit.Set(cfg.PublishRate)
	r.reg.MustRegister(r.published, r.publishErrors, r.pending, r.lag, limit,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r, nil
}

// Validate checks everything in cfg but the URLs, without side effects, so
// a command can reject bad flags before it boots embedded infrastructure.
func (cfg Config) Validate() error {
	if cfg.Batch < 0 || cfg.PublishRate < 0 || cfg.Burst < 0 || cfg.Workers < 0 {
		return apperr.Errorf(apperr.EUSAGE, "relay: --batch, --workers, --publish-rate and --burst must not be negative")
	}
	if _, err := crashpoint.Parse(cfg.CrashAt, CrashAfterPublish); err != nil {
		return err
	}
	return nil
}

// Handler serves /metrics, /healthz (the process is alive) and /readyz (200
// once the stream exists and both Postgres and NATS answer).
func (r *Relay) Handler() http.Handler {
	return health.Mux(r.reg, r.checkReady)
}

func (r *Relay) checkReady(ctx context.Context) error {
	return health.Ready(ctx, "relay", r.ready.Load(), r.pool.Load(), r.nc.Load())
}

// Run connects to Postgres and NATS, ensures the outbox table and the
// stream, and relays rows until ctx ends. It rides out database and broker
// outages on its own (retrying with backoff) and returns nil on a clean stop
// or an error only for what retrying cannot fix (a bad URL). Run may be
// called once.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return apperr.Errorf(apperr.EINTERNAL, "relay: Run called twice")
	}
	pcfg, err := pgxpool.ParseConfig(r.cfg.DatabaseURL)
	if err != nil {
		return apperr.Wrap(apperr.EUSAGE, err, "relay: database URL")
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return apperr.Wrap(apperr.EUNAVAILABLE, err, "relay: database")
	}
	defer pool.Close()
	nc, err := outbox.Connect(r.cfg.NATSURL, "paytest-relay", r.log,
		// No reconnect buffer: while the broker is away a publish fails at
		// once and the row stays unpublished, instead of hiding in memory.
		nats.ReconnectBufSize(-1),
	)
	if err != nil {
		return apperr.Wrap(apperr.EUSAGE, err, "relay: NATS URL")
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(max(256, 2*r.cfg.Batch)))
	if err != nil {
		return apperr.Wrap(apperr.EINTERNAL, err, "relay: jetstream")
	}
	r.pool.Store(pool)
	r.nc.Store(nc)

	if err := r.setup(ctx, pool, js); err != nil {
		return nil // ctx ended while waiting for the dependencies
	}
	r.ready.Store(true)
	r.log.Info("relay running", "stream", r.cfg.Stream, "subject", r.cfg.Subject, "batch", r.cfg.Batch, "workers", r.cfg.Workers,
		"publish_rate", r.cfg.PublishRate, "burst", r.cfg.Burst, "publish_dedup", r.cfg.PublishDedup)

	var wg sync.WaitGroup
	wg.Go(func() { r.statsLoop(ctx, pool) })
	defer wg.Wait()

	for range r.cfg.Workers {
		wg.Go(func() { r.loop(ctx, pool, nc, js) })
	}
	wg.Wait()
	r.log.Info("relay stopped")
	return nil
}

// loop claims, publishes and marks batches until ctx ends, backing off
// with full jitter after a failure.
func (r *Relay) loop(ctx context.Context, pool *pgxpool.Pool, nc *nats.Conn, js jetstream.JetStream) {
	failures := 0
	for ctx.Err() == nil {
		if !nc.IsConnected() {
			failures++
			backoff.Sleep(ctx, r.backoff(failures))
			continue
		}
		n, err := r.relayBatch(ctx, pool, js)
		if err != nil {
			failures++
			d := r.backoff(failures)
			r.log.Warn("relay batch failed", "err", err, "failures", failures, "backoff", d)
			if errors.Is(err, jetstream.ErrNoStreamResponse) {
				// The stream is gone (deleted, or a broker that lost its
				// store): create it again rather than fail forever.
				if err := r.ensureStream(ctx, js); err != nil {
					r.log.Warn("recreating the stream failed", "err", err)
				}
			}
			backoff.Sleep(ctx, d)
			continue
		}
		failures = 0
		if n < r.cfg.Batch {
			backoff.Sleep(ctx, r.cfg.PollInterval)
		}
	}
}

// setup creates the outbox table and the stream, retrying until both exist
// or ctx ends.
func (r *Relay) setup(ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream) error {
	for failures := 1; ; failures++ {
		err := func() error {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if err := outbox.Migrate(ctx, pool); err != nil {
				return err
			}
			return r.ensureStream(ctx, js)
		}()
		if err == nil {
			return nil
		}
		d := r.backoff(failures)
		r.log.Warn("relay setup failed; retrying", "err", err, "backoff", d)
		if !backoff.Sleep(ctx, d) {
			return ctx.Err()
		}
	}
}

// ensureStream creates or updates the stream with the configuration the
// consumer uses too.
func (r *Relay) ensureStream(ctx context.Context, js jetstream.JetStream) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := js.CreateOrUpdateStream(ctx, outbox.StreamConfig(r.cfg.Stream, r.cfg.Subject)); err != nil {
		return fmt.Errorf("stream %s: %w", r.cfg.Stream, err)
	}
	return nil
}

// row is one claimed outbox row.
type row struct {
	id      int64
	eventID string
	payload []byte
}

// relayBatch claims up to Batch rows, publishes them, marks the acked ones
// and records the failures, all in one transaction. It returns how many rows
// it claimed, and an error if any publish failed or the database did.
//
// Once rows are claimed the batch finishes even if ctx ends (only the rate
// limiter's wait stops early), so a graceful stop marks what it published.
func (r *Relay) relayBatch(ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream) (int, error) {
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.AckTimeout+30*time.Second)
	defer cancel()
	// The transaction is driven by hand so that its statements take two
	// round trips: BEGIN and the claim are pipelined, and so are the
	// marks and COMMIT (an explicit BEGIN inside a pipeline opens a
	// transaction that outlives the pipeline's Sync). Round trips, not rows,
	// bound the relay on a busy machine.
	conn, err := pool.Acquire(bctx)
	if err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	// pgxpool destroys a connection released inside a transaction.
	defer conn.Release()
	done := false
	defer func() {
		if !done {
			_, _ = conn.Exec(context.WithoutCancel(bctx), "ROLLBACK")
		}
	}()
	claim := &pgx.Batch{}
	claim.Queue("BEGIN")
	// A mark lost in a database crash only republishes its rows, which
	// at-least-once delivery already allows: the commit need not wait for
	// the WAL flush.
	claim.Queue("SET LOCAL synchronous_commit = off")
	claim.Queue(claimSQL, r.cfg.Batch)
	br := conn.SendBatch(bctx, claim)
	for range 2 {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			return 0, fmt.Errorf("begin: %w", err)
		}
	}
	rows, err := br.Query()
	if err != nil {
		_ = br.Close()
		return 0, fmt.Errorf("claim: %w", err)
	}
	batch, err := pgx.CollectRows(rows, func(rs pgx.CollectableRow) (row, error) {
		var x row
		err := rs.Scan(&x.id, &x.eventID, &x.payload)
		return x, err
	})
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("claim: %w", err)
	}
	if len(batch) == 0 {
		if _, err := conn.Exec(bctx, "COMMIT"); err != nil {
			return 0, fmt.Errorf("commit: %w", err)
		}
		done = true
		return 0, nil
	}

	// Publish asynchronously, paced by the token bucket, then wait for
	// every ack: one round trip's latency per batch instead of per row.
	futures := make([]jetstream.PubAckFuture, len(batch))
	errs := make([]error, len(batch))
	sent := 0
	for i, x := range batch {
		if err := r.limiter.Wait(ctx); err != nil {
			break // stopping: publish no more, mark what was acked
		}
		msg := &nats.Msg{Subject: r.cfg.Subject, Data: x.payload, Header: nats.Header{}}
		if r.cfg.PublishDedup {
			msg.Header.Set(jetstream.MsgIDHeader, x.eventID)
		}
		futures[i], errs[i] = js.PublishMsgAsync(msg)
		sent = i + 1
	}
	errNoAck := errors.New("no publish ack within " + r.cfg.AckTimeout.String())
	timeout := time.NewTimer(r.cfg.AckTimeout)
	defer timeout.Stop()
	timedOut := false
	for i := range sent {
		if errs[i] != nil {
			continue
		}
		if timedOut { // take what has resolved, fail the rest
			select {
			case <-futures[i].Ok():
			case err := <-futures[i].Err():
				errs[i] = err
			default:
				errs[i] = errNoAck
			}
			continue
		}
		select {
		case <-futures[i].Ok():
		case err := <-futures[i].Err():
			errs[i] = err
		case <-timeout.C:
			timedOut, errs[i] = true, errNoAck
		}
	}

	var okIDs, failIDs []int64
	var failMsgs []string
	for i := range sent {
		if errs[i] != nil {
			failIDs = append(failIDs, batch[i].id)
			failMsgs = append(failMsgs, errs[i].Error())
			continue
		}
		r.published.Inc()
		r.crash.Hit(CrashAfterPublish)
		okIDs = append(okIDs, batch[i].id)
	}
	if len(failIDs) > 0 {
		r.publishErrors.Add(float64(len(failIDs)))
	}
	if err := r.finish(bctx, conn, okIDs, failIDs, failMsgs); err != nil {
		return len(batch), err
	}
	done = true
	if len(failIDs) > 0 {
		var first error
		for i := range sent {
			if errs[i] != nil {
				first = errs[i]
				break
			}
		}
		return len(batch), fmt.Errorf("%d of %d publishes failed: %w", len(failIDs), sent, first)
	}
	return len(batch), nil
}

// claimSQL claims a batch by state, never by position.
const claimSQL = `SELECT id, event_id::text, payload FROM outbox
	WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`

// finish marks the acked rows published, records the failed ones, and
// commits, in one pipelined round trip. A failed statement makes the server
// skip the rest, COMMIT included; the caller then rolls back.
func (r *Relay) finish(ctx context.Context, conn *pgxpool.Conn, okIDs, failIDs []int64, failMsgs []string) error {
	b := &pgx.Batch{}
	if len(okIDs) > 0 {
		b.Queue(`UPDATE outbox SET published_at = clock_timestamp() WHERE id = ANY($1)`, okIDs)
	}
	if len(failIDs) > 0 {
		b.Queue(`UPDATE outbox o SET attempts = o.attempts + 1, last_error = f.msg
			FROM unnest($1::bigint[], $2::text[]) AS f(id, msg) WHERE o.id = f.id`, failIDs, failMsgs)
	}
	b.Queue("COMMIT")
	br := conn.SendBatch(ctx, b)
	var err error
	for i := range b.Len() {
		tag, e := br.Exec()
		if e != nil {
			err = fmt.Errorf("mark: %w", e)
			break
		}
		if i == b.Len()-1 && tag.String() != "COMMIT" {
			err = fmt.Errorf("commit: the transaction was rolled back (%s)", tag)
		}
	}
	if cerr := br.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("mark: %w", cerr)
	}
	return err
}

// statsLoop refreshes the pending and lag gauges until ctx ends.
func (r *Relay) statsLoop(ctx context.Context, pool *pgxpool.Pool) {
	t := time.NewTicker(r.cfg.StatsInterval)
	defer t.Stop()
	for {
		r.refreshStats(ctx, pool)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *Relay) refreshStats(ctx context.Context, pool *pgxpool.Pool) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var n int64
	var lag float64
	err := pool.QueryRow(ctx, `SELECT count(*),
		COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - min(created_at)), 0)::float8
		FROM outbox WHERE published_at IS NULL`).Scan(&n, &lag)
	if err != nil {
		return // keep the last values; the main loop reports the outage
	}
	r.pending.Set(float64(n))
	r.lag.Set(max(0, lag))
}

// backoff is full jitter: a uniform random duration in [0, min(max, base*2^n)).
func (r *Relay) backoff(failures int) time.Duration {
	return backoff.FullJitter(r.cfg.BackoffBase, r.cfg.BackoffMax, failures)
}
