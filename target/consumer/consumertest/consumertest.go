// Package consumertest holds the fixtures the relay's and the consumer's
// tests share: a fresh database and unique stream names on a real NATS
// server, outbox rows written the way the charge service writes them, a
// reader for what reached a stream, the ledger as the consumer left it, and
// a Prometheus scrape. It is for tests only.
package consumertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paytest/paytest/internal/proc"
	"github.com/paytest/paytest/internal/promtext"
	"github.com/paytest/paytest/internal/testinfra"
	"github.com/paytest/paytest/target/consumer"
	"github.com/paytest/paytest/target/outbox"
)

// Env is one test's infrastructure: its own database (with the outbox
// table) and its own stream, subject, dead-letter stream and durable name.
type Env struct {
	DatabaseURL string
	NATSURL     string
	Stream      string
	Subject     string
	DLQStream   string
	Durable     string
	Pool        *pgxpool.Pool
	logger      *slog.Logger
	NC          *nats.Conn
	JS          jetstream.JetStream
}

// New returns an Env on natsURL ("" means testinfra.NATS). Its streams are
// deleted and its connections closed when the test ends.
func New(tb testing.TB, natsURL string) *Env {
	tb.Helper()
	if natsURL == "" {
		natsURL = testinfra.NATS(tb)
	}
	name := testinfra.Name("PT")
	e := &Env{
		DatabaseURL: testinfra.Postgres(tb),
		NATSURL:     natsURL,
		Stream:      name,
		Subject:     name + ".charges",
		DLQStream:   name + "_DLQ",
		Durable:     "ledger_" + name,
	}
	if testing.Verbose() {
		e.logger = slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, e.DatabaseURL)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	e.Pool = pool
	if err := outbox.Migrate(ctx, pool); err != nil {
		tb.Fatal(err)
	}
	nc, err := nats.Connect(natsURL, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	e.NC = nc
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	e.JS = js
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = js.DeleteStream(ctx, e.Stream)
		_ = js.DeleteStream(ctx, e.DLQStream)
		nc.Close()
	})
	return e
}

// ConsumerConfig is a consumer.Config for this Env with test-friendly
// timings; callers adjust what their test is about.
func (e *Env) ConsumerConfig() consumer.Config {
	return consumer.Config{
		DatabaseURL: e.DatabaseURL,
		NATSURL:     e.NATSURL,
		Stream:      e.Stream,
		Subject:     e.Subject,
		Durable:     e.Durable,
		DLQStream:   e.DLQStream,
		MaxInflight: 64,
		MaxDeliver:  3,
		AckWait:     10 * time.Second,
		NakDelay:    50 * time.Millisecond,
		Catalog:     10,
		Logger:      e.logger,
	}
}

// Logger logs to the test's output under -v and discards otherwise.
func (e *Env) Logger() *slog.Logger {
	if e.logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.logger
}

// Event is the i-th well-formed charge.created event of a test.
func Event(i int) outbox.ChargeCreated {
	return outbox.ChargeCreated{
		EventID:        uuid.NewString(),
		ChargeID:       fmt.Sprintf("ch_%d", i),
		Merchant:       "demo",
		IdempotencyKey: fmt.Sprintf("key-%d-%s", i, uuid.NewString()[:8]),
		Amount:         int64(100 + i),
		Currency:       "EUR",
		Customer:       fmt.Sprintf("cus_%d", i%7),
		SKU:            fmt.Sprintf("sku-%d", 1+i%10),
		Quantity:       1 + i%3,
		CreatedAt:      time.Now().UTC(),
	}
}

// Insert writes n events as outbox rows, exactly as the charge service does
// (outbox.Insert in a transaction), committing every 500, and returns them
// in id order.
func (e *Env) Insert(tb testing.TB, n int) []outbox.ChargeCreated {
	tb.Helper()
	ctx := context.Background()
	evs := make([]outbox.ChargeCreated, n)
	for start := 0; start < n; start += 500 {
		err := pgx.BeginFunc(ctx, e.Pool, func(tx pgx.Tx) error {
			for i := start; i < min(n, start+500); i++ {
				evs[i] = Event(i)
				if err := outbox.Insert(ctx, tx, evs[i]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	return evs
}

// Unpublished counts outbox rows not yet published (the relay moves a
// published row to outbox_published).
func (e *Env) Unpublished(tb testing.TB) int {
	tb.Helper()
	var n int
	if err := e.Pool.QueryRow(context.Background(), `SELECT count(*) FROM outbox`).Scan(&n); err != nil {
		tb.Fatal(err)
	}
	return n
}

// EnsureStream creates the event stream with the shared configuration, for
// tests that publish to it before any relay or consumer runs.
func (e *Env) EnsureStream(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.JS.CreateOrUpdateStream(ctx, outbox.StreamConfig(e.Stream, e.Subject)); err != nil {
		tb.Fatal(err)
	}
}

// Publish puts raw payloads straight onto the event stream (no relay).
func (e *Env) Publish(tb testing.TB, payloads ...[]byte) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, p := range payloads {
		if _, err := e.JS.Publish(ctx, e.Subject, p); err != nil {
			tb.Fatal(err)
		}
	}
}

// Payload encodes ev as the relay would carry it.
func Payload(tb testing.TB, ev outbox.ChargeCreated) []byte {
	tb.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// Msg is one message read back from a stream.
type Msg struct {
	Seq    uint64
	Time   time.Time
	Header nats.Header
	Data   []byte
}

// Messages reads every message a stream holds, in order.
func (e *Env) Messages(tb testing.TB, stream string) []Msg {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := e.JS.Stream(ctx, stream)
	if err != nil {
		tb.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	want := int(info.State.Msgs)
	if want == 0 {
		return nil
	}
	oc, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	out := make([]Msg, 0, want)
	for len(out) < want {
		batch, err := oc.Fetch(min(1000, want-len(out)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			tb.Fatal(err)
		}
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				tb.Fatal(err)
			}
			out = append(out, Msg{Seq: md.Sequence.Stream, Time: md.Timestamp, Header: m.Headers(), Data: m.Data()})
		}
		if err := batch.Error(); err != nil {
			tb.Fatalf("reading stream %s: %v (have %d of %d)", stream, err, len(out), want)
		}
	}
	return out
}

// StreamCounts counts the event stream's messages per event id.
func (e *Env) StreamCounts(tb testing.TB) map[string]int {
	tb.Helper()
	counts := map[string]int{}
	for _, m := range e.Messages(tb, e.Stream) {
		var ev struct {
			EventID string `json:"event_id"`
		}
		_ = json.Unmarshal(m.Data, &ev)
		counts[ev.EventID]++
	}
	return counts
}

// StreamLen is how many messages a stream holds (0 if it does not exist).
func (e *Env) StreamLen(stream string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.JS.Stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return int(info.State.Msgs), nil
}

// LedgerCounts counts ledger entries per event id.
func (e *Env) LedgerCounts(tb testing.TB) map[string]int {
	tb.Helper()
	rows, err := e.Pool.Query(context.Background(), `SELECT event_id::text, count(*) FROM ledger_entries GROUP BY 1`)
	if err != nil {
		tb.Fatal(err)
	}
	counts := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			tb.Fatal(err)
		}
		counts[id] = n
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return counts
}

// LedgerTotal counts ledger entries, or returns an error (the table may not
// exist yet), for use inside testinfra.WaitFor.
func (e *Env) LedgerTotal() (int, error) {
	var n int
	err := e.Pool.QueryRow(context.Background(), `SELECT count(*) FROM ledger_entries`).Scan(&n)
	return n, err
}

// WaitLedger waits until the ledger holds want entries.
func (e *Env) WaitLedger(tb testing.TB, timeout time.Duration, want int) {
	tb.Helper()
	testinfra.WaitFor(tb, timeout, func() error {
		n, err := e.LedgerTotal()
		if err != nil {
			return err
		}
		if n != want {
			return fmt.Errorf("ledger has %d entries, want %d", n, want)
		}
		return nil
	})
}

// WaitCounter waits until the counter name on baseURL's /metrics reaches
// want and fails at once if it goes past it. A consumer commits an effect
// before it counts it, so a ledger row can be visible a moment before its
// increment: tests that compare the two wait for the counter.
func WaitCounter(tb testing.TB, baseURL, name string, want float64, timeout time.Duration) {
	tb.Helper()
	testinfra.WaitFor(tb, timeout, func() error {
		m, err := ScrapeErr(baseURL + "/metrics")
		if err != nil {
			return err
		}
		if m[name] > want {
			tb.Fatalf("%s = %v, past the %v expected", name, m[name], want)
		}
		if m[name] != want {
			return fmt.Errorf("%s = %v, want %v", name, m[name], want)
		}
		return nil
	})
}

// Scrape fetches a /metrics page and returns each counter, gauge and
// untyped metric by name (a labelled family gives the sum of its series).
func Scrape(tb testing.TB, url string) map[string]float64 {
	tb.Helper()
	m, err := ScrapeErr(url)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// ScrapeErr is Scrape returning its error, for use inside WaitFor.
func ScrapeErr(url string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	page, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	out, err := promtext.Sums(page)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", url, err)
	}
	return out, nil
}

// Runner is what the relay and the consumer have in common.
type Runner interface {
	Run(ctx context.Context) error
	Handler() http.Handler
}

// Serve runs r in-process with its handler on an httptest server, waits for
// /readyz, and stops both when the test ends. It returns the base URL and
// a stop function (idempotent) for tests that stop it early.
func Serve(tb testing.TB, r Runner) (baseURL string, stop func()) {
	tb.Helper()
	srv := httptest.NewServer(r.Handler())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() { runErr = r.Run(ctx) })
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			srv.Close()
			if runErr != nil {
				tb.Errorf("Run: %v", runErr)
			}
		})
	}
	tb.Cleanup(stop)
	WaitReady(tb, srv.URL, 30*time.Second)
	return srv.URL, stop
}

// WaitReady waits for baseURL/readyz to answer 200.
func WaitReady(tb testing.TB, baseURL string, timeout time.Duration) {
	tb.Helper()
	testinfra.WaitFor(tb, timeout, func() error { return Ready(baseURL) })
}

// Ready is nil when baseURL/readyz answers 200.
func Ready(baseURL string) error {
	resp, err := http.Get(baseURL + "/readyz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz %d: %s", resp.StatusCode, bytes.TrimSpace(body))
	}
	return nil
}

// logBuffer collects a child's log and prints it if the test fails.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Process is a paytest child process started by StartProcess.
type Process struct {
	*proc.Process
	log *logBuffer
}

// Log returns everything the child has logged so far.
func (p *Process) Log() string { return p.log.String() }

// StartProcess starts `paytest args...` from a fresh build, waits for its
// listening line (and /readyz when ready is true), and stops it when the
// test ends, printing its log if the test failed.
func StartProcess(tb testing.TB, name string, ready bool, args ...string) *Process {
	tb.Helper()
	log := &logBuffer{}
	spec := proc.Spec{Name: name, Path: testinfra.Paytest(tb), Args: args, Log: log, StartTimeout: 60 * time.Second}
	if ready {
		spec.Ready = "/readyz"
	}
	p, err := proc.Start(context.Background(), spec)
	if err != nil {
		tb.Fatalf("%v\n%s", err, log.String())
	}
	tb.Cleanup(func() {
		_ = p.Stop(10 * time.Second)
		if tb.Failed() {
			tb.Logf("log of %s:\n%s", name, log.String())
		}
	})
	return &Process{Process: p, log: log}
}

// BaseURL is the child's http://addr.
func (p *Process) BaseURL() string { return "http://" + p.Addr() }

// ConsumerArgs are `serve consumer` arguments for this Env.
func (e *Env) ConsumerArgs(extra ...string) []string {
	return append([]string{"serve", "consumer", "--database-url", e.DatabaseURL, "--nats-url", e.NATSURL,
		"--stream", e.Stream, "--subject", e.Subject, "--dlq-stream", e.DLQStream, "--durable", e.Durable,
		"--catalog", "10", "--log-level", "debug"}, extra...)
}

// RelayArgs are `serve relay` arguments for this Env.
func (e *Env) RelayArgs(extra ...string) []string {
	return append([]string{"serve", "relay", "--database-url", e.DatabaseURL, "--nats-url", e.NATSURL,
		"--stream", e.Stream, "--subject", e.Subject}, extra...)
}

// Itoa is strconv.Itoa, for building argument lists.
func Itoa(n int) string { return strconv.Itoa(n) }
