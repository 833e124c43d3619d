// Package relay moves outbox rows to NATS JetStream at least once.
//
// The outbox table holds unpublished rows only (see outbox.Migrations), and
// the relay claims them in batches by state, never by position:
//
//	SELECT ... FROM outbox ORDER BY id LIMIT n FOR UPDATE SKIP LOCKED
//
// inside a transaction, publishes each row asynchronously, waits for the
// broker's acks, then marks the acked rows published by deleting them (or,
// with Config.KeepPublished, by moving them to outbox_published, where
// published_at is set after the acks) and commits, in the same transaction.
// A row whose id was allocated early but committed late is therefore never
// skipped (an `id > last` poller would skip it for good), and two relays
// never publish the same row twice in the normal path, because a claimed
// row is locked, and gone once its claim commits. A crash between an ack
// and the commit republishes the batches in flight: the relay is
// at-least-once and the consumer's inbox absorbs the repeats.
//
// Each worker is a three-stage pipeline: while it publishes batch k, it
// settles batch k-1 (whose acks arrived meanwhile) and claims batch k+1,
// each on its own connection and transaction, so that the database marks
// and claims while the broker stores. The claim of k+1 skips the rows k-1
// and k hold. Each transaction takes two round trips: BEGIN, its settings
// and the claim pipelined, then the marks pipelined with COMMIT. The claim
// reads the primary key in id order and stops after Batch rows (sorting is
// disabled for it: otherwise the planner may sort every unpublished row
// for each claim). Config.Workers pipelines may run at once (SKIP LOCKED
// keeps their batches apart), but one is the default: measured, more
// workers only cost Postgres more CPU (each claim steps over the rows the
// others hold), and one worker publishes in id order.
//
// Marking by deleting rather than updating published_at in place is what
// lets one worker keep up with the broker: an in-place UPDATE writes a new
// row version and two index entries per row, a move to outbox_published
// one insert, a delete less again (make bench's
// BenchmarkRelayVsRawJetStream has the figures). Marking inside the claim
// (UPDATE ... WHERE id IN (claim) RETURNING) gains nothing: Postgres locks
// each row for the subquery all the same, so it writes as much WAL, and the
// mark would predate the ack.
//
// A drained relay does not keep every worker polling: one idle worker probes
// for an unpublished row every Config.PollInterval (a read-only query) and
// claims when there is one; the others wait until a worker that claimed a
// full batch wakes one of them.
//
// Publishing goes through a token bucket (Config.PublishRate, Config.Burst)
// so that a backlog drains at a set pace (a paced worker settles each batch
// before publishing the next); failed publishes back off with full jitter
// and bump the row's attempts and last_error.
package relay

import (
	"cmp"
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
	DefaultBatch         = 1000
	DefaultWorkers       = 1
	DefaultPollInterval  = 10 * time.Millisecond
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
	// Batch is how many rows one transaction claims (a paced relay claims
	// at most a tenth of a second's worth of PublishRate). A worker has up
	// to two batches published and not yet marked (a crash republishes
	// them) and, unless paced, one more claimed ahead.
	Batch int
	// PublishRate caps publishing in events per second; 0 is unlimited.
	PublishRate float64
	// Burst is the token bucket's size; 0 means a tenth of a second's worth
	// of PublishRate, at least 1.
	Burst int
	// KeepPublished keeps a record of each published row: it is moved to
	// outbox_published (with published_at, its attempts and last error)
	// instead of deleted. The record costs Postgres about 2 us per row.
	KeepPublished bool
	// PublishDedup sets Nats-Msg-Id to the event id, so JetStream drops a
	// republished event within its duplicates window. Crash tests turn it
	// off to show that the consumer's inbox does the work.
	PublishDedup bool
	// Workers is how many claim-publish-mark pipelines run at once. Like
	// several relays, they give up global publish order (never a row). One
	// worker publishes in id order and, measured, drains fastest: each
	// worker already overlaps database and broker work.
	Workers int
	// PollInterval is how often one idle worker looks for new rows when
	// the outbox is drained.
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
	batch   int    // rows per claim: cfg.Batch, or less when paced
	markSQL string // deleteSQL, or moveSQL with KeepPublished
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
	polling atomic.Bool   // an idle worker is polling for new rows
	wake    chan struct{} // idle workers that do not poll wait here
	pool    atomic.Pointer[pgxpool.Pool]
	nc      atomic.Pointer[nats.Conn]
}

// New validates cfg and returns a Relay. It opens no connection: Run does.
func New(cfg Config) (*Relay, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
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
	limiter, batch := pace(&cfg)
	markSQL := deleteSQL
	if cfg.KeepPublished {
		markSQL = moveSQL
	}
	r := &Relay{cfg: cfg, batch: batch, markSQL: markSQL, log: log, crash: crash, limiter: limiter, reg: prometheus.NewRegistry(), wake: make(chan struct{})}
	r.registerMetrics()
	return r, nil
}

// withDefaults checks cfg, New's requirements included, and fills in the
// defaults of the fields left zero.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.DatabaseURL == "" {
		return cfg, apperr.Errorf(apperr.EUSAGE, "relay: a database URL is required")
	}
	if cfg.NATSURL == "" {
		return cfg, apperr.Errorf(apperr.EUSAGE, "relay: a NATS URL is required")
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	cfg.Stream = cmp.Or(cfg.Stream, outbox.DefaultStream)
	cfg.Subject = cmp.Or(cfg.Subject, outbox.DefaultSubject)
	cfg.Batch = cmp.Or(cfg.Batch, DefaultBatch)
	cfg.Workers = cmp.Or(cfg.Workers, DefaultWorkers)
	cfg.PollInterval = positiveOr(cfg.PollInterval, DefaultPollInterval)
	cfg.AckTimeout = positiveOr(cfg.AckTimeout, DefaultAckTimeout)
	cfg.BackoffBase = positiveOr(cfg.BackoffBase, DefaultBackoffBase)
	cfg.BackoffMax = positiveOr(cfg.BackoffMax, DefaultBackoffMax)
	cfg.StatsInterval = positiveOr(cfg.StatsInterval, DefaultStatsInterval)
	return cfg, nil
}

// positiveOr is d, or def when d is not positive.
func positiveOr(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// pace returns the publishing rate limiter cfg asks for (unlimited without
// a PublishRate), filling in its Burst, and the batch size that goes with
// it.
func pace(cfg *Config) (*rate.Limiter, int) {
	if cfg.PublishRate <= 0 {
		return rate.NewLimiter(rate.Inf, 0), cfg.Batch
	}
	if cfg.Burst == 0 {
		cfg.Burst = max(1, int(math.Ceil(cfg.PublishRate/10)))
	}
	// A paced batch holds a tenth of a second's publishing at most, so
	// that marks (and paytest_relay_published_total) follow the
	// publishes closely instead of in steps of a whole batch.
	batch := min(cfg.Batch, max(1, int(math.Ceil(cfg.PublishRate/10))))
	return rate.NewLimiter(rate.Limit(cfg.PublishRate), cfg.Burst), batch
}

// registerMetrics makes the relay's metrics, the configured pace among
// them, and registers them with the Go and process collectors.
func (r *Relay) registerMetrics() {
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
	limit.Set(r.cfg.PublishRate)
	r.reg.MustRegister(r.published, r.publishErrors, r.pending, r.lag, limit,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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
	// Each worker holds up to three transactions (one marking, one
	// publishing, one claimed ahead); the stats loop and the idle poll take
	// one more each.
	pcfg.MaxConns = max(pcfg.MaxConns, int32(3*r.cfg.Workers+2))
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
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(max(4096, 2*r.cfg.Workers*r.cfg.Batch)))
	if err != nil {
		return apperr.Wrap(apperr.EINTERNAL, err, "relay: jetstream")
	}
	r.pool.Store(pool)
	r.nc.Store(nc)

	if err := r.setup(ctx, pool, js); err != nil {
		return nil // ctx ended while waiting for the dependencies
	}
	r.ready.Store(true)
	r.log.Info("relay running", "stream", r.cfg.Stream, "subject", r.cfg.Subject, "batch", r.batch, "workers", r.cfg.Workers,
		"publish_rate", r.cfg.PublishRate, "burst", r.cfg.Burst, "publish_dedup", r.cfg.PublishDedup, "keep_published", r.cfg.KeepPublished)

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

// loop runs one worker's pipeline until ctx ends, backing off with full
// jitter after a failure. On the way out it settles the batch it has in
// flight, so a graceful stop marks what it published, and releases the one
// it claimed ahead, unpublished.
func (r *Relay) loop(ctx context.Context, pool *pgxpool.Pool, nc *nats.Conn, js jetstream.JetStream) {
	var inflight, ahead *batch
	defer func() { r.settleLogged(inflight); r.settleLogged(ahead) }()
	failures := 0
	for ctx.Err() == nil {
		if !nc.IsConnected() {
			r.settleLogged(inflight)
			r.settleLogged(ahead)
			inflight, ahead = nil, nil
			if r.awaitBroker(ctx, nc) {
				failures = 0 // a new connection: no reason to wait long
			}
			continue
		}
		var n int
		var err error
		n, inflight, ahead, err = r.step(ctx, pool, js, inflight, ahead)
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
		if n < r.batch {
			r.idle(ctx, pool)
		}
	}
}

// reconnectJitter bounds the random wait after the broker returns.
const reconnectJitter = 100 * time.Millisecond

// awaitBroker waits until the NATS connection is back (the client
// reconnects on its own), checking every PollInterval, then a random part
// of reconnectJitter, so that relays that lost the same broker do not all
// come back at once. Waiting for the connection rather than backing off
// exponentially while it is away means a backlog starts draining as soon as
// the broker returns, not up to BackoffMax later. It reports whether the
// connection is back (false: ctx ended).
func (r *Relay) awaitBroker(ctx context.Context, nc *nats.Conn) bool {
	t := time.NewTicker(r.cfg.PollInterval)
	defer t.Stop()
	for !nc.IsConnected() {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return backoff.Sleep(ctx, backoff.FullJitter(reconnectJitter, reconnectJitter, 0))
}

// settleLogged settles b, logging a failure (the rows it could not mark
// stay unpublished and are claimed again).
func (r *Relay) settleLogged(b *batch) {
	if err := r.settle(b); err != nil {
		r.log.Warn("relay batch failed", "err", err)
	}
}

// idle returns when there may be rows to claim, or ctx ended. One idle
// worker at a time polls: every PollInterval it asks whether any row is
// unpublished (a read-only probe, lighter than a claim), and returns to
// claim once one is. The other idle workers wait until a worker that
// claimed a full batch wakes them, one at a time (step), so a backlog
// brings every worker in while a trickle keeps one busy.
func (r *Relay) idle(ctx context.Context, pool *pgxpool.Pool) {
	if !r.polling.CompareAndSwap(false, true) {
		select {
		case <-r.wake:
		case <-ctx.Done():
		}
		return
	}
	defer r.polling.Store(false)
	t := time.NewTicker(r.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if r.unpublished(ctx, pool) {
			return
		}
	}
}

// unpublished reports whether the outbox holds an unpublished row, or
// whether the database could not say (the claim will then fail and back
// off). The rows it sees may be claimed already; the claim skips those.
func (r *Relay) unpublished(ctx context.Context, pool *pgxpool.Pool) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var found bool
	err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM outbox)`).Scan(&found)
	return err != nil || found
}

// wakeOne wakes one waiting idle worker, if any.
func (r *Relay) wakeOne() {
	select {
	case r.wake <- struct{}{}:
	default:
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

// batch is one claimed batch: its transaction, open on conn until settle,
// and its publishes.
type batch struct {
	ctx     context.Context // outlives the relay's ctx: a claimed batch is always settled
	cancel  context.CancelFunc
	conn    *pgxpool.Conn
	rows    []row
	futures []jetstream.PubAckFuture
	errs    []error
	sent    int
}

// step runs one turn of a worker's pipeline. It publishes cur (the batch
// claimed ahead on the previous turn, or one it claims now) while, beside
// it, it settles prev (the batch published on the previous turn, whose acks
// arrived meanwhile) and claims the next batch ahead: the database marks
// one batch and claims another while the broker stores a third, each batch
// on its own connection and transaction. The claim ahead skips the rows
// the two others hold locked (or, once prev commits, finds them gone). It
// returns how many rows cur held and the batches left in flight and
// claimed ahead (nil once the outbox looks drained, on an error, or when
// ctx ended: then everything is settled).
func (r *Relay) step(ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream, prev, ahead *batch) (int, *batch, *batch, error) {
	if r.cfg.PublishRate > 0 {
		n, inflight, err := r.pacedStep(ctx, pool, js, prev) // nothing is claimed ahead
		return n, inflight, nil, err
	}
	cur := ahead
	if cur == nil {
		var err error
		if cur, err = r.claim(ctx, pool); err != nil {
			return 0, nil, nil, errors.Join(err, r.settle(prev))
		}
	}
	n := len(cur.rows)
	if n < r.batch || ctx.Err() != nil { // the last of a backlog, or a trickle
		r.publish(ctx, js, cur)
		return n, nil, nil, errors.Join(r.settle(prev), r.settle(cur))
	}
	r.wakeOne() // a backlog: bring another worker in
	var wg sync.WaitGroup
	var settleErr, claimErr error
	var next *batch
	wg.Go(func() { settleErr = r.settle(prev) })
	wg.Go(func() { next, claimErr = r.claim(ctx, pool) })
	r.publish(ctx, js, cur)
	wg.Wait()
	if err := errors.Join(settleErr, claimErr); err != nil || ctx.Err() != nil {
		return n, nil, nil, errors.Join(err, r.settle(cur), r.settle(next))
	}
	if len(next.rows) == 0 {
		next = nil // claim ended its transaction
	}
	return n, cur, next, nil
}

// pacedStep is step for a paced relay: it claims cur, settles prev, and
// only then publishes cur, so that a mark never waits for a slow batch. It
// claims nothing ahead.
func (r *Relay) pacedStep(ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream, prev *batch) (int, *batch, error) {
	cur, err := r.claim(ctx, pool)
	if err != nil {
		return 0, nil, errors.Join(err, r.settle(prev))
	}
	n := len(cur.rows)
	if n == r.batch {
		r.wakeOne()
	}
	if err := r.settle(prev); err != nil {
		return n, nil, errors.Join(err, r.settle(cur))
	}
	r.publish(ctx, js, cur)
	if n < r.batch || ctx.Err() != nil {
		return n, nil, r.settle(cur)
	}
	return n, cur, nil
}

// claim opens a transaction and claims up to Batch unpublished rows in it.
// BEGIN, the settings and the claim share one round trip (an explicit BEGIN
// inside a pipeline opens a transaction that outlives the pipeline's Sync).
// An empty claim ends its transaction at once.
func (r *Relay) claim(ctx context.Context, pool *pgxpool.Pool) (*batch, error) {
	b := &batch{}
	b.ctx, b.cancel = context.WithTimeout(context.WithoutCancel(ctx), r.cfg.AckTimeout+30*time.Second)
	conn, err := pool.Acquire(b.ctx)
	if err != nil {
		b.cancel()
		return nil, fmt.Errorf("connect: %w", err)
	}
	b.conn = conn
	q := &pgx.Batch{}
	q.Queue("BEGIN")
	q.Queue(settingsSQL)
	q.Queue(claimSQL, r.batch)
	br := conn.SendBatch(b.ctx, q)
	for range 2 {
		if _, err := br.Exec(); err != nil {
			_ = br.Close()
			r.release(b, false)
			return nil, fmt.Errorf("begin: %w", err)
		}
	}
	rows, err := br.Query()
	if err == nil {
		var x row
		_, err = pgx.ForEachRow(rows, []any{&x.id, &x.eventID, &x.payload}, func() error {
			b.rows = append(b.rows, x)
			return nil
		})
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		r.release(b, false)
		return nil, fmt.Errorf("claim: %w", err)
	}
	if len(b.rows) == 0 {
		_, err := conn.Exec(b.ctx, "COMMIT")
		r.release(b, err == nil)
		if err != nil {
			return nil, fmt.Errorf("commit: %w", err)
		}
	}
	return b, nil
}

// release returns b's connection to the pool, rolling back first unless
// its transaction ended (pgxpool destroys a connection released inside a
// transaction).
func (r *Relay) release(b *batch, ended bool) {
	if b.conn == nil {
		return
	}
	if !ended {
		_, _ = b.conn.Exec(b.ctx, "ROLLBACK")
	}
	b.conn.Release()
	b.conn = nil
	b.cancel()
}

// publish sends b's rows asynchronously, paced by the token bucket. If ctx
// ends while it waits for a token it publishes no more: settle marks what
// was sent.
func (r *Relay) publish(ctx context.Context, js jetstream.JetStream, b *batch) {
	b.futures = make([]jetstream.PubAckFuture, len(b.rows))
	b.errs = make([]error, len(b.rows))
	for i, x := range b.rows {
		if err := r.limiter.Wait(ctx); err != nil {
			break
		}
		msg := &nats.Msg{Subject: r.cfg.Subject, Data: x.payload}
		if r.cfg.PublishDedup {
			msg.Header = nats.Header{jetstream.MsgIDHeader: []string{x.eventID}}
		}
		b.futures[i], b.errs[i] = js.PublishMsgAsync(msg)
		b.sent = i + 1
	}
}

// settle waits for b's acks, then marks the acked rows published, records
// the failed ones and commits, in one round trip. It returns an error if
// any publish failed or the database did. A nil or empty b is settled.
func (r *Relay) settle(b *batch) error {
	if b == nil || b.conn == nil {
		return nil
	}
	errNoAck := errors.New("no publish ack within " + r.cfg.AckTimeout.String())
	timeout := time.NewTimer(r.cfg.AckTimeout)
	defer timeout.Stop()
	timedOut := false
	for i := range b.sent {
		if b.errs[i] != nil {
			continue
		}
		if timedOut { // take what has resolved, fail the rest
			select {
			case <-b.futures[i].Ok():
			case err := <-b.futures[i].Err():
				b.errs[i] = err
			default:
				b.errs[i] = errNoAck
			}
			continue
		}
		select {
		case <-b.futures[i].Ok():
		case err := <-b.futures[i].Err():
			b.errs[i] = err
		case <-timeout.C:
			timedOut, b.errs[i] = true, errNoAck
		}
	}

	okIDs := make([]int64, 0, b.sent)
	var failIDs []int64
	var failMsgs []string
	var first error
	for i := range b.sent {
		if b.errs[i] != nil {
			failIDs = append(failIDs, b.rows[i].id)
			failMsgs = append(failMsgs, b.errs[i].Error())
			if first == nil {
				first = b.errs[i]
			}
			continue
		}
		r.published.Inc()
		r.crash.Hit(CrashAfterPublish)
		okIDs = append(okIDs, b.rows[i].id)
	}
	if len(failIDs) > 0 {
		r.publishErrors.Add(float64(len(failIDs)))
	}
	if err := r.finish(b.ctx, b.conn, okIDs, failIDs, failMsgs); err != nil {
		r.release(b, false)
		return err
	}
	r.release(b, true)
	if first != nil {
		return fmt.Errorf("%d of %d publishes failed: %w", len(failIDs), b.sent, first)
	}
	return nil
}

// settingsSQL sets the claim transaction's settings in one statement. A
// mark lost in a database crash only republishes its rows, which
// at-least-once delivery already allows: the commit need not wait for the
// WAL flush. And the claim must read the primary key in id order and stop
// after Batch rows: without enable_sort = off the planner, whose estimate
// of unpublished rows is often far below Batch (a fresh or just drained
// table), sorts every unpublished row for each claim instead, which makes
// draining a backlog quadratic.
const settingsSQL = `SELECT set_config('synchronous_commit', 'off', true), set_config('enable_sort', 'off', true)`

// claimSQL claims a batch by state, never by position.
const claimSQL = `SELECT id, event_id::text, payload FROM outbox
	ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`

// deleteSQL marks acked rows published by deleting them.
const deleteSQL = `DELETE FROM outbox WHERE id = ANY($1)`

// moveSQL marks acked rows published by moving them to outbox_published.
const moveSQL = `WITH moved AS (DELETE FROM outbox WHERE id = ANY($1)
		RETURNING id, event_id, aggregate_id, created_at, attempts, last_error)
	INSERT INTO outbox_published (id, event_id, aggregate_id, created_at, published_at, attempts, last_error)
	SELECT id, event_id, aggregate_id, created_at, clock_timestamp(), attempts + 1, last_error FROM moved`

// finish marks the acked rows published (deletes or moves them), records
// the failed ones, and commits, in one pipelined round trip. A failed statement makes the server
// skip the rest, COMMIT included; the caller then rolls back.
func (r *Relay) finish(ctx context.Context, conn *pgxpool.Conn, okIDs, failIDs []int64, failMsgs []string) error {
	b := &pgx.Batch{}
	if len(okIDs) > 0 {
		b.Queue(r.markSQL, okIDs)
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
		FROM outbox`).Scan(&n, &lag)
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
