// Package foreign holds charge endpoints that do idempotency the way
// popular middlewares and payment APIs do, not the way paytest's reference
// service does: replays with no marker, a per-key lock instead of a 409, a
// 400 or 417 for a changed body, keys kept in memory, "in progress" rows
// that outlive a crash, connections dropped and bodies cut off. Each is a
// real HTTP handler in front of a real Postgres ledger (one row per charge)
// with its own Prometheus counter, so paytest's verdict on it can be
// checked against the endpoint's own ground truth. The behaviours imitate
// documented ones; no middleware's code is copied:
//
//   - Stripe API v1 saves the first status and body for a key and replays
//     them verbatim, without a replay header; a changed body under a used
//     key gets 400 (idempotency_error); a concurrent request with the key
//     gets 409.
//   - draft-ietf-httpapi-idempotency-key-header answers 422 for a changed
//     body and 409 while the first request is in flight.
//   - Go Fiber's idempotency middleware holds a per-key lock, so a second
//     racer waits for the first and then gets the stored response; its
//     default storage is in memory, lost when the process restarts.
//   - express-idempotency and Stripe keep an "in progress" record from the
//     start of a request: a process that dies before finishing leaves it,
//     and every later try gets 409 until someone clears it.
//   - express-idempotency (ccs-group) marks a cached answer "X-Cache: HIT".
package foreign

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Store says where an endpoint keeps its idempotency keys.
type Store string

// Stores.
const (
	// StoreNone keeps no keys: every request is a new charge.
	StoreNone Store = "none"
	// StoreMemory keeps keys and responses in the process's memory (Fiber's
	// default storage): lost on restart.
	StoreMemory Store = "memory"
	// StoreAtomic writes the key, the charge and the response in one
	// transaction: a racer's insert waits on the first one's row lock and
	// then finds the stored response; a crash rolls everything back.
	StoreAtomic Store = "atomic"
	// StoreLease commits an "in progress" key before processing and the
	// charge and response after it. Nothing expires the lease: a process
	// killed in between leaves the key in progress for good.
	StoreLease Store = "lease"
)

// InFlight says what a request finds when its key's first request is
// still being processed (memory store; the lease store always answers 409,
// the atomic store always waits).
type InFlight string

// In-flight behaviours.
const (
	// InFlightWait blocks on a per-key lock and then replays.
	InFlightWait InFlight = "wait"
	// InFlightConflict answers 409 (with Options.RetryAfter when set).
	InFlightConflict InFlight = "conflict"
)

// Fault is what some first requests suffer after the endpoint read them.
type Fault string

// Faults.
const (
	FaultNone Fault = ""
	// FaultDropAfter closes the connection without an answer after the
	// charge committed.
	FaultDropAfter Fault = "drop-after"
	// FaultDropBefore closes the connection before any processing.
	FaultDropBefore Fault = "drop-before"
	// FaultDropMixed drops after processing for some keys, before for others.
	FaultDropMixed Fault = "drop-mixed"
	// FaultTruncate sends the status line, the headers (with the full
	// Content-Length) and half of the body after the charge, then closes.
	FaultTruncate Fault = "truncate"
)

// Options describe one endpoint. The zero value of each field is named.
type Options struct {
	// Table is the ledger table (one row per charge: merchant, idem_key,
	// amount, currency); the keys table is Table_keys. Letters, digits and
	// underscores.
	Table string `json:"table"`
	// Merchant is the endpoint's own merchant name in its ledger (default
	// "acme").
	Merchant string `json:"merchant,omitempty"`
	// Store keeps the keys (default StoreNone).
	Store Store `json:"store,omitempty"`
	// InFlight is the memory store's answer to a key in flight (default
	// InFlightWait).
	InFlight InFlight `json:"in_flight,omitempty"`
	// Lifetime, when set, forgets a memory-store key this long after its
	// answer was stored (Fiber's Lifetime, 30 minutes by default there): a
	// later request with the key is a new charge.
	Lifetime time.Duration `json:"lifetime,omitempty"`
	// RetryAfter, when set, is the Retry-After value of an in-flight 409.
	RetryAfter string `json:"retry_after,omitempty"`
	// ReplayHeader, "Name: value", marks a replayed answer; empty sends
	// replays exactly as the first answer went.
	ReplayHeader string `json:"replay_header,omitempty"`
	// ReuseStatus answers a changed body under a used key (default 422).
	ReuseStatus int `json:"reuse_status,omitempty"`
	// Status answers a new charge (default 201).
	Status int `json:"status,omitempty"`
	// Delay is the processing time between claiming the key and the
	// charge (a card network's round trip).
	Delay time.Duration `json:"delay,omitempty"`
	// Fault hits the first request of one key in FaultOneIn (by a hash of
	// the key; default 3).
	Fault      Fault `json:"fault,omitempty"`
	FaultOneIn int   `json:"fault_one_in,omitempty"`
	// Envelope wraps every 2xx body as {"data": charge, "request_id": a
	// fresh id per response}, the way many APIs do: a replay's body differs
	// from the first answer's while its /data/id is the same.
	Envelope bool `json:"envelope,omitempty"`
	// MetricsDelay slows every /metrics answer (a collector that takes its
	// time): a scraper's first look can come after a kill.
	MetricsDelay time.Duration `json:"metrics_delay,omitempty"`
	// KeyHeader carries the key (default Idempotency-Key).
	KeyHeader string `json:"key_header,omitempty"`
	// Metric names the counter of charges on /metrics (default
	// DefaultMetric).
	Metric string `json:"metric,omitempty"`
}

// Defaults.
const (
	DefaultMerchant = "acme"
	DefaultMetric   = "acme_charges_total"
	// Path is where an endpoint takes charges; /metrics and /healthz are
	// beside it.
	Path = "/v1/charges"
)

var identifier = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,40}$`)

func (o *Options) defaults() error {
	if !identifier.MatchString(o.Table) {
		return fmt.Errorf("foreign: table %q: want lowercase letters, digits and underscores", o.Table)
	}
	if o.Merchant == "" {
		o.Merchant = DefaultMerchant
	}
	if o.Store == "" {
		o.Store = StoreNone
	}
	switch o.Store {
	case StoreNone, StoreMemory, StoreAtomic, StoreLease:
	default:
		return fmt.Errorf("foreign: unknown store %q", o.Store)
	}
	if o.InFlight == "" {
		o.InFlight = InFlightWait
	}
	if o.ReuseStatus == 0 {
		o.ReuseStatus = http.StatusUnprocessableEntity
	}
	if o.Status == 0 {
		o.Status = http.StatusCreated
	}
	if o.FaultOneIn <= 0 {
		o.FaultOneIn = 3
	}
	if o.KeyHeader == "" {
		o.KeyHeader = "Idempotency-Key"
	}
	if o.Metric == "" {
		o.Metric = DefaultMetric
	}
	if o.ReplayHeader != "" && !strings.Contains(o.ReplayHeader, ":") {
		return fmt.Errorf("foreign: replay header %q: want \"Name: value\"", o.ReplayHeader)
	}
	return nil
}

// Endpoint is one charge endpoint. It serves Path, /metrics and /healthz.
type Endpoint struct {
	o       Options
	db      *pgxpool.Pool
	reg     *prometheus.Registry
	charges prometheus.Counter
	metrics http.Handler

	processing atomic.Int64
	requests   atomic.Int64

	mu       sync.Mutex
	received map[string]int
	mem      map[string]*entry
}

// entry is a key in the memory store.
type entry struct {
	sha     string
	done    chan struct{} // closed when status and body are set
	status  int
	body    []byte
	failed  bool
	expires time.Time // zero: never
}

// New returns the endpoint for o over db, creating its tables if needed.
func New(ctx context.Context, db *pgxpool.Pool, o Options) (*Endpoint, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if err := Setup(ctx, db, o.Table); err != nil {
		return nil, err
	}
	e := &Endpoint{o: o, db: db, reg: prometheus.NewRegistry(), received: map[string]int{}, mem: map[string]*entry{}}
	e.charges = prometheus.NewCounter(prometheus.CounterOpts{Name: o.Metric, Help: "Charges written to the ledger by this process."})
	e.reg.MustRegister(e.charges)
	e.metrics = promhttp.HandlerFor(e.reg, promhttp.HandlerOpts{})
	return e, nil
}

// Setup creates the ledger table and its keys table when missing.
func Setup(ctx context.Context, db *pgxpool.Pool, table string) error {
	if !identifier.MatchString(table) {
		return fmt.Errorf("foreign: table %q: want lowercase letters, digits and underscores", table)
	}
	_, err := db.Exec(ctx, fmt.Sprintf(`
CREATE TABLE IF NOT EXISTS %[1]s (
  id bigserial PRIMARY KEY, merchant text NOT NULL, idem_key text NOT NULL,
  amount bigint NOT NULL, currency text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS %[1]s_keys (
  idem_key text PRIMARY KEY, body_sha text NOT NULL, state text NOT NULL,
  status int, response bytea, created_at timestamptz NOT NULL DEFAULT now())`, table))
	if err != nil {
		return fmt.Errorf("foreign: creating %s: %w", table, err)
	}
	return nil
}

// Options returns the endpoint's options with the defaults filled in.
func (e *Endpoint) Options() Options { return e.o }

// Received returns how many charge requests the endpoint read per key.
func (e *Endpoint) Received() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int, len(e.received))
	for k, v := range e.received {
		out[k] = v
	}
	return out
}

// Processing returns how many charges are between their key's claim and
// their ledger row.
func (e *Endpoint) Processing() int { return int(e.processing.Load()) }

// ServeHTTP serves charges on Path, the counter on /metrics and /healthz.
func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case Path:
		e.serveCharge(w, r)
	case "/metrics":
		if e.o.MetricsDelay > 0 {
			t := time.NewTimer(e.o.MetricsDelay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-r.Context().Done():
				return
			}
		}
		e.metrics.ServeHTTP(w, r)
	case "/healthz":
		_, _ = io.WriteString(w, "ok\n")
	default:
		http.NotFound(w, r)
	}
}

// serveCharge takes one charge request: the key's fault, if any, then the
// store's answer.
func (e *Endpoint) serveCharge(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, `{"error":{"type":"invalid_request_error","message":"POST only"}}`)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return // the client went away
	}
	key := r.Header.Get(e.o.KeyHeader)
	if key == "" {
		// The draft: a missing key on an operation that needs one is a 400.
		writeJSON(w, http.StatusBadRequest, `{"error":{"type":"invalid_request_error","message":"an Idempotency-Key header is required"}}`)
		return
	}
	fault := e.arrive(key)
	if fault == FaultDropBefore {
		panic(http.ErrAbortHandler)
	}
	var req chargeRequest
	if err := json.Unmarshal(body, &req); err != nil || req.Amount <= 0 || req.Currency == "" {
		writeJSON(w, http.StatusBadRequest, `{"error":{"type":"invalid_request_error","message":"amount and currency are required"}}`)
		return
	}
	sum := sha256.Sum256(body)
	a := e.process(r.Context(), key, hex.EncodeToString(sum[:]), req)
	if e.o.Envelope && a.status >= 200 && a.status < 300 {
		a.body = []byte(fmt.Sprintf(`{"data":%s,"request_id":"req_%d"}`, a.body, e.requests.Add(1)))
	}
	switch {
	case fault == FaultDropAfter:
		panic(http.ErrAbortHandler)
	case fault == FaultTruncate && a.status >= 200 && a.status < 300:
		truncate(w, a)
	}
	for k, v := range a.header {
		w.Header()[k] = v
	}
	writeJSON(w, a.status, string(a.body))
}

// truncate sends the headers and half of a's body, then drops the
// connection.
func truncate(w http.ResponseWriter, a answer) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(a.body)))
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body[:len(a.body)/2])
	_ = http.NewResponseController(w).Flush()
	panic(http.ErrAbortHandler)
}

// arrive counts a request for key and returns the fault it suffers: only
// a key's first request, and only for one key in FaultOneIn.
func (e *Endpoint) arrive(key string) Fault {
	e.mu.Lock()
	e.received[key]++
	n := e.received[key]
	e.mu.Unlock()
	if e.o.Fault == FaultNone || n != 1 {
		return FaultNone
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	v := int(h.Sum32() % uint32(2*e.o.FaultOneIn))
	if v%e.o.FaultOneIn != 0 {
		return FaultNone
	}
	if e.o.Fault == FaultDropMixed {
		if v == 0 {
			return FaultDropAfter
		}
		return FaultDropBefore
	}
	return e.o.Fault
}

type chargeRequest struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

// answer is a response to send.
type answer struct {
	status int
	body   []byte
	header http.Header
}

func (e *Endpoint) process(ctx context.Context, key, sha string, req chargeRequest) answer {
	switch e.o.Store {
	case StoreMemory:
		return e.processMemory(ctx, key, sha, req)
	case StoreAtomic:
		return e.processAtomic(ctx, key, sha, req)
	case StoreLease:
		return e.processLease(ctx, key, sha, req)
	}
	a, err := e.charge(ctx, e.db, key, req)
	if err != nil {
		return serverError(err)
	}
	e.charges.Inc()
	return a
}

// charge sleeps the processing delay and writes one ledger row through q.
func (e *Endpoint) charge(ctx context.Context, q querier, key string, req chargeRequest) (answer, error) {
	e.processing.Add(1)
	defer e.processing.Add(-1)
	if e.o.Delay > 0 {
		t := time.NewTimer(e.o.Delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return answer{}, ctx.Err()
		}
	}
	var id int64
	err := q.QueryRow(ctx, fmt.Sprintf(`INSERT INTO %s (merchant, idem_key, amount, currency) VALUES ($1, $2, $3, $4) RETURNING id`, e.o.Table),
		e.o.Merchant, key, req.Amount, req.Currency).Scan(&id)
	if err != nil {
		return answer{}, err
	}
	body := fmt.Sprintf(`{"id":"ch_%d","object":"charge","amount":%d,"currency":%q,"status":"succeeded"}`, id, req.Amount, strings.ToLower(req.Currency))
	return answer{status: e.o.Status, body: []byte(body)}, nil
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (e *Endpoint) processMemory(ctx context.Context, key, sha string, req chargeRequest) answer {
	for {
		e.mu.Lock()
		ent, ok := e.mem[key]
		if ok && !ent.expires.IsZero() && time.Now().After(ent.expires) {
			delete(e.mem, key)
			ok = false
		}
		if !ok {
			ent = &entry{sha: sha, done: make(chan struct{})}
			e.mem[key] = ent
			e.mu.Unlock()
			a, err := e.charge(ctx, e.db, key, req)
			e.mu.Lock()
			if err != nil {
				// Like Fiber: a failed handler stores nothing; the key is free.
				ent.failed = true
				delete(e.mem, key)
			} else {
				e.charges.Inc()
				ent.status, ent.body = a.status, a.body
				if e.o.Lifetime > 0 {
					ent.expires = time.Now().Add(e.o.Lifetime)
				}
			}
			close(ent.done)
			e.mu.Unlock()
			if err != nil {
				return serverError(err)
			}
			return a
		}
		e.mu.Unlock()
		if ent.sha != sha {
			return e.reused()
		}
		select {
		case <-ent.done:
		default:
			if e.o.InFlight == InFlightConflict {
				return e.inFlight()
			}
			select {
			case <-ent.done:
			case <-ctx.Done():
				return serverError(ctx.Err())
			}
		}
		if !ent.failed {
			return e.replay(ent.status, ent.body)
		}
	}
}

func (e *Endpoint) processAtomic(ctx context.Context, key, sha string, req chargeRequest) answer {
	tx, err := e.db.Begin(ctx)
	if err != nil {
		return serverError(err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	// A second insert of the key waits here until the first transaction
	// ends, then does nothing if it committed.
	tag, err := tx.Exec(ctx, fmt.Sprintf(`INSERT INTO %s_keys (idem_key, body_sha, state) VALUES ($1, $2, 'done') ON CONFLICT (idem_key) DO NOTHING`, e.o.Table), key, sha)
	if err != nil {
		return serverError(err)
	}
	if tag.RowsAffected() == 0 {
		_ = tx.Rollback(ctx)
		return e.stored(ctx, key, sha)
	}
	a, err := e.charge(ctx, tx, key, req)
	if err != nil {
		return serverError(err)
	}
	if _, err := tx.Exec(ctx, fmt.Sprintf(`UPDATE %s_keys SET status = $2, response = $3 WHERE idem_key = $1`, e.o.Table), key, a.status, a.body); err != nil {
		return serverError(err)
	}
	if err := tx.Commit(ctx); err != nil {
		return serverError(err)
	}
	e.charges.Inc()
	return a
}

func (e *Endpoint) processLease(ctx context.Context, key, sha string, req chargeRequest) answer {
	tag, err := e.db.Exec(ctx, fmt.Sprintf(`INSERT INTO %s_keys (idem_key, body_sha, state) VALUES ($1, $2, 'in_progress') ON CONFLICT (idem_key) DO NOTHING`, e.o.Table), key, sha)
	if err != nil {
		return serverError(err)
	}
	if tag.RowsAffected() == 0 {
		return e.stored(ctx, key, sha)
	}
	release := func() {
		_, _ = e.db.Exec(context.WithoutCancel(ctx), fmt.Sprintf(`DELETE FROM %s_keys WHERE idem_key = $1 AND state = 'in_progress'`, e.o.Table), key)
	}
	tx, err := e.db.Begin(ctx)
	if err != nil {
		release()
		return serverError(err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	a, err := e.charge(ctx, tx, key, req)
	if err == nil {
		_, err = tx.Exec(ctx, fmt.Sprintf(`UPDATE %s_keys SET state = 'done', status = $2, response = $3 WHERE idem_key = $1`, e.o.Table), key, a.status, a.body)
	}
	if err == nil {
		err = tx.Commit(ctx)
	}
	if err != nil {
		// Roll back first: the transaction's UPDATE holds the key's row
		// lock, and the DELETE in release would wait for it forever.
		_ = tx.Rollback(context.WithoutCancel(ctx))
		release()
		return serverError(err)
	}
	e.charges.Inc()
	return a
}

// stored answers a key already in the keys table: the reuse status for a
// changed body, 409 while in progress, else the stored answer.
func (e *Endpoint) stored(ctx context.Context, key, sha string) answer {
	var storedSHA, state string
	var status *int
	var body []byte
	err := e.db.QueryRow(ctx, fmt.Sprintf(`SELECT body_sha, state, status, response FROM %s_keys WHERE idem_key = $1`, e.o.Table), key).
		Scan(&storedSHA, &state, &status, &body)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		// Released by a failed first request: the client may try again.
		return answer{status: http.StatusServiceUnavailable, body: []byte(`{"error":{"type":"api_error","message":"try again"}}`)}
	case err != nil:
		return serverError(err)
	case storedSHA != sha:
		return e.reused()
	case state != "done" || status == nil:
		return e.inFlight()
	}
	return e.replay(*status, body)
}

func (e *Endpoint) replay(status int, body []byte) answer {
	a := answer{status: status, body: body}
	if e.o.ReplayHeader != "" {
		name, value, _ := strings.Cut(e.o.ReplayHeader, ":")
		a.header = http.Header{http.CanonicalHeaderKey(strings.TrimSpace(name)): {strings.TrimSpace(value)}}
	}
	return a
}

func (e *Endpoint) inFlight() answer {
	a := answer{status: http.StatusConflict,
		body: []byte(`{"error":{"type":"idempotency_error","code":"idempotency_request_in_progress","message":"a request with this key is being processed"}}`)}
	if e.o.RetryAfter != "" {
		a.header = http.Header{"Retry-After": {e.o.RetryAfter}}
	}
	return a
}

// reused is the answer to a changed body under a used key, in the words
// of whoever uses that status.
func (e *Endpoint) reused() answer {
	var body string
	switch e.o.ReuseStatus {
	case http.StatusBadRequest:
		body = `{"error":{"type":"idempotency_error","message":"Keys for idempotent requests can only be used with the same parameters they were first used with."}}`
	case http.StatusUnprocessableEntity:
		body = `{"type":"https://example.com/idempotency","title":"Idempotency-Key is already used","detail":"the key was used with a different request payload"}`
	default:
		body = `{"error":{"type":"idempotency_error","message":"idempotency key reused with different parameters"}}`
	}
	return answer{status: e.o.ReuseStatus, body: []byte(body)}
}

func serverError(err error) answer {
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"type": "api_error", "message": err.Error()}})
	return answer{status: http.StatusInternalServerError, body: b}
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// LedgerCounts returns the ledger's rows per key: the endpoint's ground
// truth.
func LedgerCounts(ctx context.Context, db *pgxpool.Pool, table string) (map[string]int, error) {
	if !identifier.MatchString(table) {
		return nil, fmt.Errorf("foreign: table %q: want lowercase letters, digits and underscores", table)
	}
	rows, err := db.Query(ctx, fmt.Sprintf(`SELECT idem_key, count(*)::int FROM %s GROUP BY 1`, table))
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	var k string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&k, &n}, func() error {
		out[k] = n
		return nil
	})
	return out, err
}

// LedgerAmounts returns the ledger's rows per key and amount: the ground
// truth per operation, where a changed-body reuse carries another amount.
func LedgerAmounts(ctx context.Context, db *pgxpool.Pool, table string) (map[string]map[int64]int, error) {
	if !identifier.MatchString(table) {
		return nil, fmt.Errorf("foreign: table %q: want lowercase letters, digits and underscores", table)
	}
	rows, err := db.Query(ctx, fmt.Sprintf(`SELECT idem_key, amount, count(*)::int FROM %s GROUP BY 1, 2`, table))
	if err != nil {
		return nil, err
	}
	out := map[string]map[int64]int{}
	var k string
	var amount int64
	var n int
	_, err = pgx.ForEachRow(rows, []any{&k, &amount, &n}, func() error {
		if out[k] == nil {
			out[k] = map[int64]int{}
		}
		out[k][amount] = n
		return nil
	})
	return out, err
}

// StuckKeys returns the keys left "in progress" in table's keys table.
func StuckKeys(ctx context.Context, db *pgxpool.Pool, table string) ([]string, error) {
	if !identifier.MatchString(table) {
		return nil, fmt.Errorf("foreign: table %q: want lowercase letters, digits and underscores", table)
	}
	rows, err := db.Query(ctx, fmt.Sprintf(`SELECT idem_key FROM %s_keys WHERE state = 'in_progress' ORDER BY 1`, table))
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
