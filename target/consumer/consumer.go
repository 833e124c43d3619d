// Package consumer is the reference system's ledger consumer: it applies
// each charge.created event from NATS JetStream to a double-entry ledger and
// an inventory exactly once, although the relay delivers at least once.
//
// Per event it runs one Postgres transaction: insert the event id into
// ledger_inbox (ON CONFLICT DO NOTHING); only if the id is new, post the
// entry (customer debited, merchant credited, the postings summing to zero)
// and decrement the sku's stock; commit; then ack. The transaction is one
// statement, a call of the ledger_apply function the migrations create, so
// it costs one round trip and holds the sku's stock row only while that
// statement runs. A redelivered event finds
// its id in the inbox and changes nothing. An event that can never apply
// (undecodable, unknown sku, an unbalanced posting) is retried with backoff
// up to MaxDeliver deliveries and then published to a dead-letter stream with
// its reason and delivery count, and terminated. The consumer owns its tables
// and never reads the charge service's.
package consumer

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/backoff"
	"github.com/paytest/paytest/internal/crashpoint"
	"github.com/paytest/paytest/internal/health"
	"github.com/paytest/paytest/internal/pgmigrate"
	"github.com/paytest/paytest/target/outbox"
)

// CrashAfterApplyBeforeAck is the consumer's crash point: armed with
// "after-apply-before-ack:N" it SIGKILLs the process after the N-th event's
// transaction committed and before the event is acked.
const CrashAfterApplyBeforeAck = "after-apply-before-ack"

// UnsafeNoInboxDedup names the unsafe mode that skips the inbox, so that a
// redelivered event is applied again: it exists to prove verify catches it.
const UnsafeNoInboxDedup = "no-inbox-dedup"

// DefaultDLQStream is the dead-letter stream's default name.
const DefaultDLQStream = "PAYTEST_DLQ"

// Headers of a dead-letter message. Its body is the original payload.
const (
	// HeaderReason says why the event could not be applied.
	HeaderReason = "reason"
	// HeaderDeliveries is how many times the event was delivered.
	HeaderDeliveries = "deliveries"
	// HeaderStreamSeq is the event's sequence in the source stream.
	HeaderStreamSeq = "stream-seq"
)

// LedgerQuery is verify's default ledger query for the reference system:
// ledger effects per logical operation (merchant, idempotency key).
const LedgerQuery = "SELECT merchant, idempotency_key, count(*) FROM ledger_entries GROUP BY 1, 2"

// EventsQuery lists the events the consumer applied more than once, with
// their merchant and key: what tells an event applied twice (the inbox let
// a repeat through) from two charges (two distinct events).
const EventsQuery = "SELECT event_id::text, merchant, idempotency_key, count(*) FROM ledger_entries GROUP BY 1, 2, 3 HAVING count(*) > 1"

// DLQSubject is the dead-letter subject for events published on subject.
func DLQSubject(subject string) string { return subject + ".dlq" }

// Defaults for the zero fields of Config.
const (
	DefaultDurable     = "ledger"
	DefaultMaxInflight = 256
	DefaultMaxDeliver  = 5
	DefaultAckWait     = 30 * time.Second
	DefaultNakDelay    = 250 * time.Millisecond
	DefaultCatalog     = 100
	DefaultDBConns     = 16
	// InitialStock is each catalog sku's seeded stock: large enough that
	// no run sells out.
	InitialStock = 1_000_000_000
)

// Migrations create the consumer's tables. They are applied under the
// component name "consumer".
var Migrations = []string{`
CREATE TABLE IF NOT EXISTS ledger_inbox (
	event_id    uuid PRIMARY KEY,
	received_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE IF NOT EXISTS ledger_entries (
	id              bigserial PRIMARY KEY,
	event_id        uuid NOT NULL,
	charge_id       text NOT NULL,
	merchant        text NOT NULL,
	idempotency_key text NOT NULL,
	amount          bigint NOT NULL,
	currency        text NOT NULL,
	sku             text NOT NULL,
	quantity        int NOT NULL,
	applied_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS ledger_entries_event_id ON ledger_entries (event_id);
CREATE TABLE IF NOT EXISTS ledger_postings (
	id       bigserial PRIMARY KEY,
	entry_id bigint NOT NULL REFERENCES ledger_entries (id),
	account  text NOT NULL,
	amount   bigint NOT NULL,
	currency text NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_postings_entry_id ON ledger_postings (entry_id);
CREATE TABLE IF NOT EXISTS ledger_inventory (
	sku     text PRIMARY KEY,
	on_hand bigint NOT NULL
);
`, `
-- ledger_apply is one event's whole transaction in one statement (one round
-- trip, autocommit): the inbox row (unless dedup is off), the entry, its two
-- postings and the stock. A repeat returns 'duplicate' and changes nothing;
-- an unknown sku raises no_data_found and rolls everything back, inbox row
-- included. The stock row, the one every event of a sku contends for, is
-- locked last so it is held for the shortest time.
CREATE OR REPLACE FUNCTION ledger_apply(
	p_event_id uuid, p_charge_id text, p_merchant text, p_key text,
	p_amount bigint, p_currency text, p_sku text, p_quantity int,
	p_account1 text, p_amount1 bigint, p_account2 text, p_amount2 bigint,
	p_dedup boolean
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	v_entry bigint;
BEGIN
	IF p_dedup THEN
		INSERT INTO ledger_inbox (event_id) VALUES (p_event_id) ON CONFLICT DO NOTHING;
		IF NOT FOUND THEN
			RETURN 'duplicate';
		END IF;
	END IF;
	INSERT INTO ledger_entries (event_id, charge_id, merchant, idempotency_key, amount, currency, sku, quantity)
	VALUES (p_event_id, p_charge_id, p_merchant, p_key, p_amount, p_currency, p_sku, p_quantity)
	RETURNING id INTO v_entry;
	INSERT INTO ledger_postings (entry_id, account, amount, currency)
	VALUES (v_entry, p_account1, p_amount1, p_currency), (v_entry, p_account2, p_amount2, p_currency);
	UPDATE ledger_inventory SET on_hand = on_hand - p_quantity WHERE sku = p_sku;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown sku %', p_sku USING ERRCODE = 'no_data_found';
	END IF;
	RETURN 'applied';
END
$$;
`, `
-- The handling of one delivery tags its inbox row with an attempt id. When a
-- commit's answer is lost (the connection cut after the server committed),
-- the retry finds the row: its own id means "you applied it", so the effect
-- is counted once; another id means a duplicate delivery.
ALTER TABLE ledger_inbox ADD COLUMN IF NOT EXISTS attempt uuid;
DROP FUNCTION IF EXISTS ledger_apply(uuid, text, text, text, bigint, text, text, int, text, bigint, text, bigint, boolean);
CREATE OR REPLACE FUNCTION ledger_apply(
	p_event_id uuid, p_charge_id text, p_merchant text, p_key text,
	p_amount bigint, p_currency text, p_sku text, p_quantity int,
	p_account1 text, p_amount1 bigint, p_account2 text, p_amount2 bigint,
	p_dedup boolean, p_attempt uuid
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
	v_entry bigint;
BEGIN
	IF p_dedup THEN
		INSERT INTO ledger_inbox (event_id, attempt) VALUES (p_event_id, p_attempt) ON CONFLICT DO NOTHING;
		IF NOT FOUND THEN
			IF EXISTS (SELECT 1 FROM ledger_inbox WHERE event_id = p_event_id AND attempt = p_attempt) THEN
				RETURN 'applied';
			END IF;
			RETURN 'duplicate';
		END IF;
	END IF;
	INSERT INTO ledger_entries (event_id, charge_id, merchant, idempotency_key, amount, currency, sku, quantity)
	VALUES (p_event_id, p_charge_id, p_merchant, p_key, p_amount, p_currency, p_sku, p_quantity)
	RETURNING id INTO v_entry;
	INSERT INTO ledger_postings (entry_id, account, amount, currency)
	VALUES (v_entry, p_account1, p_amount1, p_currency), (v_entry, p_account2, p_amount2, p_currency);
	UPDATE ledger_inventory SET on_hand = on_hand - p_quantity WHERE sku = p_sku;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'unknown sku %', p_sku USING ERRCODE = 'no_data_found';
	END IF;
	RETURN 'applied';
END
$$;
`}

// Config configures a Consumer. Zero fields take the defaults above and the
// outbox package's stream and subject.
type Config struct {
	// DatabaseURL is the Postgres database for the ledger tables.
	DatabaseURL string
	// NATSURL is the NATS server with JetStream.
	NATSURL string
	// Stream and Subject name the events' stream and subject.
	Stream  string
	Subject string
	// Durable names the JetStream consumer.
	Durable string
	// MaxInflight bounds delivered-but-unsettled events (the consumer's
	// MaxAckPending, and how many are applied at once).
	MaxInflight int
	// MaxDeliver is how many deliveries a failing event gets before it is
	// dead-lettered; a negative value retries forever. A healthy event is
	// applied however many deliveries it took (see consumerConfig).
	MaxDeliver int
	// AckWait is how long the broker waits for an ack before redelivering.
	AckWait time.Duration
	// NakDelay is the first retry delay of a failing event; it doubles per
	// delivery, capped at AckWait.
	NakDelay time.Duration
	// DLQStream and DLQSubject name the dead-letter stream and its subject
	// (DefaultDLQStream, DLQSubject(Subject)).
	DLQStream  string
	DLQSubject string
	// Catalog is how many skus (sku-1 .. sku-N) the inventory is seeded with.
	Catalog int
	// DBConns caps the Postgres pool.
	DBConns int
	// NoInboxDedup is the unsafe mode UnsafeNoInboxDedup: the inbox is
	// skipped and a redelivered event is applied again.
	NoInboxDedup bool
	// CrashAt arms crash points ("after-apply-before-ack[:N]").
	CrashAt []string
	// Logger receives the consumer's logs; nil discards them.
	Logger *slog.Logger
}

// Consumer applies charge.created events to the ledger. Create it with New,
// run it with Run, and serve Handler for /metrics, /healthz and /readyz.
type Consumer struct {
	cfg   Config
	log   *slog.Logger
	crash *crashpoint.Set
	reg   *prometheus.Registry

	applied      prometheus.Counter
	duplicates   prometheus.Counter
	dlq          prometheus.Counter
	redeliveries prometheus.Counter
	retries      prometheus.Counter
	inflightG    prometheus.Gauge
	inflightMaxG prometheus.Gauge

	mu          sync.Mutex
	inflight    int
	inflightMax int

	running atomic.Bool
	ready   atomic.Bool
	pool    atomic.Pointer[pgxpool.Pool]
	nc      atomic.Pointer[nats.Conn]
}

// New validates cfg and returns a Consumer. It opens no connection: Run does.
func New(cfg Config) (*Consumer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	crash, err := crashpoint.Parse(cfg.CrashAt, CrashAfterApplyBeforeAck)
	if err != nil {
		return nil, err
	}
	if crash != nil {
		crash.Notes = func(msg string) { log.Warn(msg) }
		log.Warn("crash point armed", "crash_at", cfg.CrashAt)
	}
	if cfg.NoInboxDedup {
		log.Warn("UNSAFE MODE no-inbox-dedup: the inbox is skipped, redelivered events are applied AGAIN (for testing the checker only)")
	}
	c := &Consumer{cfg: cfg, log: log, crash: crash, reg: prometheus.NewRegistry()}
	c.registerMetrics()
	return c, nil
}

// withDefaults checks cfg, New's requirements included, and fills in the
// defaults of the fields left zero.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.DatabaseURL == "" {
		return cfg, apperr.Errorf(apperr.EUSAGE, "consumer: a database URL is required")
	}
	if cfg.NATSURL == "" {
		return cfg, apperr.Errorf(apperr.EUSAGE, "consumer: a NATS URL is required")
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	cfg.Stream = cmp.Or(cfg.Stream, outbox.DefaultStream)
	cfg.Subject = cmp.Or(cfg.Subject, outbox.DefaultSubject)
	cfg.Durable = cmp.Or(cfg.Durable, DefaultDurable)
	cfg.MaxInflight = cmp.Or(cfg.MaxInflight, DefaultMaxInflight)
	cfg.MaxDeliver = cmp.Or(cfg.MaxDeliver, DefaultMaxDeliver)
	if cfg.MaxDeliver < 0 {
		cfg.MaxDeliver = -1
	}
	cfg.AckWait = cmp.Or(cfg.AckWait, DefaultAckWait)
	cfg.NakDelay = cmp.Or(cfg.NakDelay, DefaultNakDelay)
	cfg.DLQStream = cmp.Or(cfg.DLQStream, DefaultDLQStream)
	cfg.DLQSubject = cmp.Or(cfg.DLQSubject, DLQSubject(cfg.Subject))
	if cfg.DLQStream == cfg.Stream || cfg.DLQSubject == cfg.Subject {
		return cfg, apperr.Errorf(apperr.EUSAGE, "consumer: the dead-letter stream and subject must differ from the event stream's")
	}
	cfg.Catalog = cmp.Or(cfg.Catalog, DefaultCatalog)
	cfg.DBConns = cmp.Or(cfg.DBConns, DefaultDBConns)
	return cfg, nil
}

// registerMetrics makes the consumer's metrics and registers them with
// the Go and process collectors.
func (c *Consumer) registerMetrics() {
	c.applied = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "paytest_side_effects_applied_total",
		Help: "Ledger effects applied (one per charge.created event, unless an unsafe mode is on).",
	})
	c.duplicates = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "paytest_inbox_duplicates_total",
		Help: "Events whose id was already in the inbox: deliveries deduped, nothing applied.",
	})
	c.dlq = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "paytest_dlq_messages_total",
		Help: "Events published to the dead-letter stream.",
	})
	c.redeliveries = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "paytest_consumer_redeliveries_total",
		Help: "Messages received with a delivery count above 1.",
	})
	c.retries = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "paytest_consumer_retries_total",
		Help: "Failed attempts to apply an event (transient errors retried in place, poison naked).",
	})
	c.inflightG = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "paytest_consumer_inflight",
		Help: "Messages received and not yet acked, naked or terminated.",
	})
	c.inflightMaxG = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "paytest_consumer_inflight_max",
		Help: "Peak of paytest_consumer_inflight since start.",
	})
	c.reg.MustRegister(c.applied, c.duplicates, c.dlq, c.redeliveries, c.retries, c.inflightG, c.inflightMaxG,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// Validate checks everything in cfg but the URLs, without side effects, so
// a command can reject bad flags before it boots embedded infrastructure.
func (cfg Config) Validate() error {
	if cfg.MaxInflight < 0 || cfg.Catalog < 0 || cfg.DBConns < 0 || cfg.AckWait < 0 || cfg.NakDelay < 0 {
		return apperr.Errorf(apperr.EUSAGE, "consumer: --max-inflight, --catalog, --ack-wait, --nak-delay and --db-conns must not be negative")
	}
	if cfg.DLQStream != "" && cfg.DLQStream == cfg.Stream {
		return apperr.Errorf(apperr.EUSAGE, "consumer: the dead-letter stream must differ from the event stream")
	}
	if _, err := crashpoint.Parse(cfg.CrashAt, CrashAfterApplyBeforeAck); err != nil {
		return err
	}
	return nil
}

// Handler serves /metrics, /healthz (the process is alive) and /readyz (200
// once the tables, streams and durable consumer exist and both Postgres and
// NATS answer).
func (c *Consumer) Handler() http.Handler {
	return health.Mux(c.reg, c.checkReady)
}

func (c *Consumer) checkReady(ctx context.Context) error {
	return health.Ready(ctx, "consumer", c.ready.Load(), c.pool.Load(), c.nc.Load())
}

// Run connects to Postgres and NATS, ensures the tables, the catalog, both
// streams and the durable consumer, and applies events until ctx ends. It
// rides out database and broker outages on its own and returns nil on a
// clean stop, or an error only for what retrying cannot fix (a bad URL).
// Events being applied when ctx ends are finished and acked. Run may be
// called once.
func (c *Consumer) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return apperr.Errorf(apperr.EINTERNAL, "consumer: Run called twice")
	}
	pcfg, err := pgxpool.ParseConfig(c.cfg.DatabaseURL)
	if err != nil {
		return apperr.Wrap(apperr.EUSAGE, err, "consumer: database URL")
	}
	pcfg.MaxConns = int32(c.cfg.DBConns)
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return apperr.Wrap(apperr.EUNAVAILABLE, err, "consumer: database")
	}
	defer pool.Close()
	nc, err := outbox.Connect(c.cfg.NATSURL, "paytest-consumer", c.log)
	if err != nil {
		return apperr.Wrap(apperr.EUSAGE, err, "consumer: NATS URL")
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return apperr.Wrap(apperr.EINTERNAL, err, "consumer: jetstream")
	}
	c.pool.Store(pool)
	c.nc.Store(nc)

	var wg sync.WaitGroup
	defer wg.Wait() // deferred last, so handlers end before the connections close
	for failures := 0; ctx.Err() == nil; {
		cons, err := c.setup(ctx, pool, js)
		if err != nil {
			failures++
			d := backoff.FullJitter(100*time.Millisecond, 5*time.Second, failures)
			c.log.Warn("consumer setup failed; retrying", "err", err, "backoff", d)
			backoff.Sleep(ctx, d)
			continue
		}
		if !c.ready.Swap(true) {
			c.log.Info("consumer running", "stream", c.cfg.Stream, "subject", c.cfg.Subject, "durable", c.cfg.Durable,
				"max_inflight", c.cfg.MaxInflight, "max_deliver", c.cfg.MaxDeliver, "ack_wait", c.cfg.AckWait,
				"dlq_stream", c.cfg.DLQStream, "inbox_dedup", !c.cfg.NoInboxDedup)
		}
		err = c.consume(ctx, pool, js, cons, &wg)
		if err == nil || ctx.Err() != nil {
			break
		}
		failures++
		d := backoff.FullJitter(100*time.Millisecond, 5*time.Second, failures)
		c.log.Warn("consuming interrupted; resubscribing", "err", err, "backoff", d)
		backoff.Sleep(ctx, d)
	}
	wg.Wait()
	c.log.Info("consumer stopped")
	return nil
}

// setup creates the tables, seeds the catalog, and creates or updates both
// streams and the durable consumer.
func (c *Consumer) setup(ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := pgmigrate.Apply(ctx, pool, "consumer", Migrations); err != nil {
		return nil, err
	}
	if _, err := pool.Exec(ctx, `INSERT INTO ledger_inventory (sku, on_hand)
		SELECT 'sku-' || g, $2 FROM generate_series(1, $1) AS g ON CONFLICT (sku) DO NOTHING`,
		c.cfg.Catalog, int64(InitialStock)); err != nil {
		return nil, fmt.Errorf("seed catalog: %w", err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, outbox.StreamConfig(c.cfg.Stream, c.cfg.Subject)); err != nil {
		return nil, fmt.Errorf("stream %s: %w", c.cfg.Stream, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: c.cfg.DLQStream, Subjects: []string{c.cfg.DLQSubject}, Storage: jetstream.FileStorage,
	}); err != nil {
		return nil, fmt.Errorf("dead-letter stream %s: %w", c.cfg.DLQStream, err)
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, c.cfg.Stream, c.consumerConfig())
	if err != nil {
		return nil, fmt.Errorf("durable consumer %s: %w", c.cfg.Durable, err)
	}
	return cons, nil
}

// consumerConfig is the durable pull consumer: explicit acks, at most
// MaxInflight unacked.
//
// MaxDeliver is enforced by the consumer, not the server: the server's
// MaxDeliver stops delivering a message whose deliveries ran out however
// they ran out, so a healthy event whose deliveries were used up by crashes
// or ack timeouts would silently never be applied (only an advisory says
// so). Here the server redelivers without limit, and a delivery that fails
// to apply with NumDelivered >= MaxDeliver is dead-lettered; a healthy event
// always applies.
//
// It sets no BackOff either: the consumer paces a failing event's retries
// itself with NakWithDelay (NakDelay doubling per delivery), and nats-server
// adds BackOff[n]-BackOff[0] to an explicit nak delay (measured: a 2 s
// NakWithDelay redelivered after 12 s with BackOff [10s 20s]). AckWait alone
// paces redelivery after a crash.
func (c *Consumer) consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       c.cfg.Durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: c.cfg.MaxInflight,
		FilterSubject: c.cfg.Subject,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
}

// consume pulls messages and applies each on its own goroutine, at most
// MaxInflight at once, until ctx ends (nil) or the subscription fails (an
// error: Run sets up again). Handlers it starts are tracked by wg.
func (c *Consumer) consume(ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream, cons jetstream.Consumer, wg *sync.WaitGroup) error {
	iter, err := cons.Messages(jetstream.PullMaxMessages(c.cfg.MaxInflight))
	if err != nil {
		return err
	}
	defer iter.Stop()
	slots := make(chan struct{}, c.cfg.MaxInflight)
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		msg, err := iter.Next(jetstream.NextContext(ctx))
		if err != nil {
			<-slots
			switch {
			case ctx.Err() != nil:
				return nil
			case errors.Is(err, jetstream.ErrNoHeartbeat):
				c.log.Warn("no heartbeat from the broker; still waiting", "err", err)
				continue
			default:
				return err
			}
		}
		c.track(+1)
		wg.Go(func() {
			defer func() {
				c.track(-1)
				<-slots
			}()
			c.handle(ctx, pool, js, msg)
		})
	}
}

// track moves the in-flight count and its peak.
func (c *Consumer) track(delta int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inflight += delta
	if c.inflight > c.inflightMax {
		c.inflightMax = c.inflight
		c.inflightMaxG.Set(float64(c.inflightMax))
	}
	c.inflightG.Set(float64(c.inflight))
}

// InflightMax returns the peak number of messages in flight since start.
func (c *Consumer) InflightMax() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inflightMax
}

// poisonError is an event that can never be applied: retrying cannot help.
type poisonError struct{ reason string }

func (e *poisonError) Error() string { return e.reason }

func poison(format string, args ...any) error {
	return &poisonError{reason: fmt.Sprintf(format, args...)}
}

// posting is one leg of a ledger entry.
type posting struct {
	account string
	amount  int64
}

// postings builds the entry's legs: the customer debited, the merchant
// credited. They must sum to zero and move a positive amount.
func postings(ev outbox.ChargeCreated) ([]posting, error) {
	if ev.Amount <= 0 {
		return nil, poison("unbalanced posting: amount %d is not a positive debit", ev.Amount)
	}
	legs := []posting{
		{account: "customer:" + ev.Customer, amount: -ev.Amount},
		{account: "merchant:" + ev.Merchant, amount: ev.Amount},
	}
	var sum int64
	for _, l := range legs {
		sum += l.amount
	}
	if sum != 0 {
		return nil, poison("unbalanced posting: legs sum to %d", sum)
	}
	return legs, nil
}

// decode parses and validates an event; every failure is poison.
func decode(data []byte) (outbox.ChargeCreated, []posting, error) {
	ev, err := outbox.Decode(data)
	if err != nil {
		return ev, nil, poison("undecodable: %v", err)
	}
	if _, err := uuid.Parse(ev.EventID); err != nil {
		return ev, nil, poison("undecodable: event_id %q is not a UUID", ev.EventID)
	}
	if ev.Customer == "" || ev.Currency == "" || ev.SKU == "" {
		return ev, nil, poison("undecodable: customer, currency or sku missing")
	}
	if ev.Quantity <= 0 {
		return ev, nil, poison("undecodable: quantity %d is not positive", ev.Quantity)
	}
	legs, err := postings(ev)
	return ev, legs, err
}

// sqlstateNoDataFound is what ledger_apply raises for an unknown sku.
const sqlstateNoDataFound = "P0002"

// applySQL runs ledger_apply: the event's transaction in one statement.
const applySQL = `SELECT ledger_apply($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`

// apply runs the event's one transaction (one round trip). It reports
// whether the event was new (and so applied) or had been applied under the
// same attempt id, by a try whose answer was lost; a poisonError means it
// can never apply.
func (c *Consumer) apply(ctx context.Context, pool *pgxpool.Pool, ev outbox.ChargeCreated, legs []posting, attempt pgtype.UUID) (bool, error) {
	var result string
	err := pool.QueryRow(ctx, applySQL, ev.EventID, ev.ChargeID, ev.Merchant, ev.IdempotencyKey,
		ev.Amount, ev.Currency, ev.SKU, ev.Quantity,
		legs[0].account, legs[0].amount, legs[1].account, legs[1].amount, !c.cfg.NoInboxDedup, attempt).Scan(&result)
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == sqlstateNoDataFound {
		return false, poison("unknown sku %q", ev.SKU)
	}
	if err != nil {
		return false, fmt.Errorf("apply: %w", err)
	}
	return result == "applied", nil
}

// handle settles one message: apply and ack, dedup and ack, retry poison
// with a delayed nak, or dead-letter it once its deliveries are used up.
// Transient failures (the database away) are retried in place, keeping the
// message alive with InProgress, so an outage never burns deliveries.
func (c *Consumer) handle(ctx context.Context, pool *pgxpool.Pool, js jetstream.JetStream, msg jetstream.Msg) {
	md, err := msg.Metadata()
	if err != nil {
		c.log.Error("message without metadata; terminating it", "err", err)
		_ = msg.Term()
		return
	}
	if md.NumDelivered > 1 {
		c.redeliveries.Inc()
	}
	ev, legs, err := decode(msg.Data())
	// A started apply finishes even if ctx ends: a graceful stop acks it.
	actx := context.WithoutCancel(ctx)
	applied := false
	// One id for every try of this delivery: a try that committed but lost
	// its answer is recognised by the next one and counted once.
	// (A pgtype.UUID, which pgx encodes directly; a uuid.UUID goes through
	// its string and a failed binary encode first.)
	attempt := pgtype.UUID{Bytes: uuid.New(), Valid: true}
	for failures := 1; err == nil; failures++ {
		tctx, cancel := context.WithTimeout(actx, 30*time.Second)
		var aerr error
		applied, aerr = c.apply(tctx, pool, ev, legs, attempt)
		cancel()
		var pe *poisonError
		if aerr == nil || errors.As(aerr, &pe) {
			err = aerr
			break
		}
		c.retries.Inc()
		d := backoff.FullJitter(50*time.Millisecond, min(c.cfg.AckWait/3, 5*time.Second), failures)
		c.log.Warn("apply failed; retrying", "event_id", ev.EventID, "err", aerr, "backoff", d)
		_ = msg.InProgress()
		if !backoff.Sleep(ctx, d) {
			_ = msg.Nak() // stopping: let another instance have it
			return
		}
	}
	if err != nil {
		c.retries.Inc()
		c.deadLetterOrRetry(ctx, js, msg, md, err)
		return
	}
	if applied {
		c.applied.Inc()
	} else if !c.cfg.NoInboxDedup {
		c.duplicates.Inc()
		c.log.Debug("duplicate event deduped by the inbox", "event_id", ev.EventID, "deliveries", md.NumDelivered)
	}
	c.crash.Hit(CrashAfterApplyBeforeAck)
	if err := msg.Ack(); err != nil {
		// The effect is committed; a redelivery will be deduped.
		c.log.Warn("ack failed", "event_id", ev.EventID, "err", err)
	}
}

// deadLetterOrRetry naks a poison message with a growing delay, or, on its
// last delivery, publishes it to the dead-letter stream and terminates it.
func (c *Consumer) deadLetterOrRetry(ctx context.Context, js jetstream.JetStream, msg jetstream.Msg, md *jetstream.MsgMetadata, cause error) {
	deliveries := int(md.NumDelivered)
	if c.cfg.MaxDeliver < 0 || deliveries < c.cfg.MaxDeliver {
		d := min(c.cfg.NakDelay<<min(deliveries-1, 20), c.cfg.AckWait)
		c.log.Warn("event cannot be applied; will retry", "stream_seq", md.Sequence.Stream,
			"deliveries", deliveries, "reason", cause.Error(), "delay", d)
		_ = msg.NakWithDelay(d)
		return
	}
	dm := &nats.Msg{Subject: c.cfg.DLQSubject, Data: msg.Data(), Header: nats.Header{}}
	dm.Header.Set(HeaderReason, cause.Error())
	dm.Header.Set(HeaderDeliveries, strconv.Itoa(deliveries))
	dm.Header.Set(HeaderStreamSeq, strconv.FormatUint(md.Sequence.Stream, 10))
	// A dead-lettering interrupted by a crash and repeated stays one message.
	dm.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("dlq:%s:%d", c.cfg.Stream, md.Sequence.Stream))
	for failures := 1; ; failures++ {
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_, err := js.PublishMsg(pctx, dm)
		cancel()
		if err == nil {
			break
		}
		c.log.Warn("dead-letter publish failed; retrying", "stream_seq", md.Sequence.Stream, "err", err)
		_ = msg.InProgress()
		if !backoff.Sleep(ctx, backoff.FullJitter(100*time.Millisecond, 5*time.Second, failures)) {
			return // not acked: redelivered (or advised as exhausted) later
		}
	}
	c.dlq.Inc()
	c.log.Error("event dead-lettered", "stream_seq", md.Sequence.Stream, "deliveries", deliveries,
		"reason", cause.Error(), "dlq_stream", c.cfg.DLQStream)
	if err := msg.Term(); err != nil {
		c.log.Warn("terminate after dead-lettering failed", "err", err)
	}
}

// DLQEntry is one dead-lettered event as read back from the DLQ stream.
type DLQEntry struct {
	Reason     string
	Deliveries int
	StreamSeq  uint64
	Data       []byte
}

// DecodeDLQ reads a dead-letter message's headers and body.
func DecodeDLQ(header nats.Header, data []byte) DLQEntry {
	d, _ := strconv.Atoi(header.Get(HeaderDeliveries))
	seq, _ := strconv.ParseUint(header.Get(HeaderStreamSeq), 10, 64)
	return DLQEntry{Reason: header.Get(HeaderReason), Deliveries: d, StreamSeq: seq, Data: data}
}

// fullJitter is a uniform random duration in [0, min(ceiling, base*2^(n-1))).
