package charge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/target/outbox"
)

// Outcomes, the label values of paytest_charge_requests_total.
const (
	OutcomeNew          = "new"
	OutcomeReplay       = "replay"
	OutcomeConflict     = "conflict"
	OutcomeMismatch     = "mismatch"
	OutcomeInvalid      = "invalid"
	OutcomeUnauthorized = "unauthorized"
	OutcomeError        = "error"
)

// Charge is the JSON body of a successful POST /charge.
type Charge struct {
	ID             string    `json:"id"`
	Object         string    `json:"object"`
	Merchant       string    `json:"merchant"`
	IdempotencyKey string    `json:"idempotency_key"`
	Amount         int64     `json:"amount"`
	Currency       string    `json:"currency"`
	Customer       string    `json:"customer"`
	SKU            string    `json:"sku"`
	Quantity       int       `json:"quantity"`
	Status         string    `json:"status"`
	CreatedAt      time.Time `json:"created_at"`
}

// answer is what the state machine tells the HTTP layer to send.
type answer struct {
	status      int
	contentType string
	body        []byte
	replayed    bool
}

// retryAfter is what 409 and 503 answers tell clients to wait.
const retryAfter = time.Second

const (
	claimSQL = `INSERT INTO idempotency_keys (merchant, key, fingerprint, request, lock_token, locked_until)
		VALUES ($1, $2, $3, $4, $5, now() + $6 * interval '1 millisecond')
		ON CONFLICT (merchant, key) DO NOTHING RETURNING id`
	lookupSQL = `SELECT id, fingerprint, state, coalesce(locked_until > now(), false),
		coalesce(response_status, 0), coalesce(response_headers ->> 'Content-Type', ''), response_body
		FROM idempotency_keys WHERE merchant = $1 AND key = $2`
	takeoverSQL = `UPDATE idempotency_keys
		SET lock_token = $2, locked_until = now() + $3 * interval '1 millisecond', attempts = attempts + 1, updated_at = now()
		WHERE id = $1 AND state = 'started' AND locked_until < now() RETURNING attempts`
	releaseSQL = `UPDATE idempotency_keys SET locked_until = now(), updated_at = now()
		WHERE id = $1 AND lock_token = $2 AND state = 'started'`
	unclaimSQL      = `DELETE FROM idempotency_keys WHERE id = $1 AND lock_token = $2 AND state = 'started'`
	insertChargeSQL = `INSERT INTO charges (id, merchant, idempotency_key, amount, currency, customer, sku, quantity, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8::bigint, $9)`
	upsertFinishedSQL = `INSERT INTO idempotency_keys (merchant, key, fingerprint, request, state, charge_id,
		    response_status, response_headers, response_body, finished_at)
		VALUES ($1, $2, $3, $4, 'finished', $5, $6, $7, $8, now())
		ON CONFLICT (merchant, key) DO UPDATE SET state = 'finished', charge_id = excluded.charge_id,
		    response_status = excluded.response_status, response_headers = excluded.response_headers,
		    response_body = excluded.response_body, finished_at = now(), updated_at = now()`
)

// chargeTxSQL returns the charge transaction as one statement, so one
// implicit transaction: finish the key with the stored response, insert the
// charge, and insert its outbox row (unless withOutbox is false: dual-write).
// The charge is inserted only from the finished key row and the outbox row
// only from the inserted charge, so when the key is not held with this lock
// token (never claimed, or the lease was lost to a takeover) the statement
// writes nothing and reports 0 rows: no error, no partial write.
//
// The key is addressed by id ($1) or, for the pipelined claim in which the
// id is not known yet, by (merchant $7, key $1). Parameters: $2 lock token,
// $3 charge id, $4 status, $5 headers, $6 body, $7 merchant, $8 amount,
// $9 currency, $10 customer, $11 sku, $12 quantity, $13 created_at, then
// with the outbox $14 event id, $15 event type, $16 payload. The outbox
// columns are target/outbox's table. The quantity is sent as a bigint, so
// that one out of the column's range is refused by Postgres (22003, the
// request's fault) and not by the driver before anything is sent, an error
// indistinguishable from a lost connection.
func chargeTxSQL(byKey, withOutbox bool) string {
	where := "id = $1"
	if byKey {
		where = "merchant = $7 AND key = $1"
	}
	sql := `WITH k AS (
		UPDATE idempotency_keys
		SET state = 'finished', lock_token = NULL, locked_until = NULL, charge_id = $3,
		    response_status = $4, response_headers = $5, response_body = $6, updated_at = now(), finished_at = now()
		WHERE ` + where + ` AND lock_token = $2 AND state = 'started'
		RETURNING key)`
	insertCharge := `INSERT INTO charges (id, merchant, idempotency_key, amount, currency, customer, sku, quantity, created_at)
		SELECT $3, $7, k.key, $8, $9, $10, $11, $12::bigint, $13 FROM k`
	if !withOutbox {
		return sql + "\n" + insertCharge
	}
	return sql + `,
		c AS (` + insertCharge + ` RETURNING id)
		INSERT INTO outbox (event_id, event_type, aggregate_id, payload)
		SELECT $14, $15, c.id, $16 FROM c`
}

// chargeTxArgs are chargeTxSQL's parameters; keyRef is the id or the key.
func (s *Service) chargeTxArgs(keyRef any, token lockToken, ch Charge, body []byte) ([]any, error) {
	args := []any{keyRef, token, ch.ID, 200, jsonHeaders, body,
		ch.Merchant, ch.Amount, ch.Currency, ch.Customer, ch.SKU, ch.Quantity, ch.CreatedAt}
	if s.cfg.Unsafe.DualWrite {
		return args, nil
	}
	ev := eventOf(ch)
	payload, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("charge: encode event: %w", err)
	}
	return append(args, ev.EventID, outbox.EventType, payload), nil
}

// charge runs one validated request for merchant under key through the
// state machine the service is configured with.
func (s *Service) charge(ctx context.Context, merchant, key string, req Request) (answer, error) {
	switch {
	case s.cfg.Unsafe.NoIdempotency:
		return s.chargeUnkeyed(ctx, merchant, key, req)
	case s.cfg.Unsafe.NonAtomicCreate:
		return s.chargeNonAtomic(ctx, merchant, key, req)
	case s.cache != nil:
		return s.chargeCached(ctx, merchant, key, req)
	default:
		return s.chargeSafe(ctx, merchant, key, req)
	}
}

// chargeSafe is the reference state machine.
func (s *Service) chargeSafe(ctx context.Context, merchant, key string, req Request) (answer, error) {
	fp := req.Fingerprint()
	canon := req.Canonical()
	token := newLockToken()
	lease := s.cfg.Lease.Milliseconds()
	for attempt := range 3 {
		var id int64
		if attempt == 0 && !s.cfg.Crash.Armed(CrashAfterClaim) && s.cfg.ProcessingDelay == 0 {
			claimed, ans, err := s.claimAndExecute(ctx, merchant, key, req, fp[:], canon, token)
			if claimed || err != nil {
				return ans, err
			}
		} else {
			err := s.pool.QueryRow(ctx, claimSQL, merchant, key, fp[:], canon, token, lease).Scan(&id)
			if err == nil {
				return s.execute(ctx, id, token, merchant, key, req)
			}
			if !errors.Is(err, pgx.ErrNoRows) {
				return answer{}, dbError(err, "claim idempotency key")
			}
		}
		// The key exists: decide from its row.
		var (
			state    string
			locked   bool
			stored   []byte
			status   int
			ctype    string
			storedFP []byte
		)
		err := s.pool.QueryRow(ctx, lookupSQL, merchant, key).Scan(&id, &storedFP, &state, &locked, &status, &ctype, &stored)
		if errors.Is(err, pgx.ErrNoRows) {
			continue // reaped between the two statements: claim again
		}
		if err != nil {
			return answer{}, dbError(err, "look up idempotency key")
		}
		switch {
		case !bytes.Equal(storedFP, fp[:]):
			return answer{}, apperr.Errorf(apperr.EMISMATCH,
				"Idempotency-Key %q was already used with a different request; use a new key for a new charge", key)
		case state == "finished":
			return answer{status: status, contentType: ctype, body: stored, replayed: true}, nil
		case locked:
			return answer{}, inFlight(key)
		}
		// Started, and its lease has run out: the request that claimed it
		// died or stalled. Take it over; the UPDATE decides between rivals.
		var attempts int
		err = s.pool.QueryRow(ctx, takeoverSQL, id, token, lease).Scan(&attempts)
		if err == nil {
			s.log.Info("took over an abandoned idempotency key", "merchant", merchant, "key", key, "attempt", attempts)
			return s.execute(ctx, id, token, merchant, key, req)
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return answer{}, dbError(err, "take over idempotency key")
		}
		// Someone else took it over or finished it: look again.
	}
	return answer{}, inFlight(key)
}

// lockToken identifies the request holding a key. It is a pgtype.UUID, not
// a uuid.UUID: pgx sends the latter through its driver.Valuer string, which
// it fails to encode as binary (building an error) before parsing it back.
type lockToken = pgtype.UUID

func newLockToken() lockToken { return lockToken{Bytes: uuid.New(), Valid: true} }

func inFlight(key string) error {
	return &apperr.Error{Code: apperr.ECONFLICT, RetryAfter: retryAfter,
		Message: "a request with Idempotency-Key " + quote(key) + " is still in flight; retry after it finishes"}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// newCharge builds the charge and its response body.
func newCharge(merchant, key string, req Request) (Charge, []byte) {
	ch := Charge{
		ID: "ch_" + strings.ReplaceAll(uuid.NewString(), "-", ""), Object: "charge",
		Merchant: merchant, IdempotencyKey: key,
		Amount: req.Amount, Currency: req.Currency, Customer: req.Customer, SKU: req.SKU, Quantity: req.Quantity,
		Status: "succeeded", CreatedAt: time.Now().UTC().Truncate(time.Microsecond),
	}
	body, _ := json.Marshal(ch)
	return ch, body
}

func eventOf(ch Charge) outbox.ChargeCreated {
	return outbox.ChargeCreated{
		EventID: uuid.NewString(), ChargeID: ch.ID, Merchant: ch.Merchant, IdempotencyKey: ch.IdempotencyKey,
		Amount: ch.Amount, Currency: ch.Currency, Customer: ch.Customer, SKU: ch.SKU, Quantity: ch.Quantity,
		CreatedAt: ch.CreatedAt,
	}
}

// jsonHeaders are a stored response's headers, as the jsonb pgx sends
// as is (a map would be marshalled per request).
var jsonHeaders = []byte(`{"Content-Type": "application/json"}`)

// claimAndExecute is the hot path for a key seen for the first time: one
// round trip (a pgx batch) that claims the key and commits the claim, then
// runs the charge transaction as a second, implicit transaction. The
// database goes through the same states as with a separate claim and
// execute (started and locked, then finished), so crashes and retries are
// handled alike. If the key already existed, the claim inserts nothing and
// the charge transaction, which needs the key held with this request's
// token, writes nothing: claimed is false. With the after-claim crash point
// armed, chargeSafe claims and executes in two round trips instead, so that
// the point sits between them.
func (s *Service) claimAndExecute(ctx context.Context, merchant, key string, req Request, fp, canon []byte, token lockToken) (claimed bool, ans answer, err error) {
	ch, body := newCharge(merchant, key, req)
	args, err := s.chargeTxArgs(key, token, ch, body)
	if err != nil {
		return true, answer{}, err
	}
	b := &pgx.Batch{}
	b.Queue(claimSQL, merchant, key, fp, canon, token, s.cfg.Lease.Milliseconds())
	b.Queue("COMMIT") // ends the implicit transaction: the claim is committed on its own
	b.Queue(s.txByKey, args...)
	br := s.pool.SendBatch(ctx, b)
	var (
		id  int64
		tag pgconn.CommandTag
	)
	err = br.QueryRow().Scan(&id)
	claimed = err == nil
	if errors.Is(err, pgx.ErrNoRows) {
		err = nil
	}
	if err == nil {
		_, err = br.Exec()
	}
	if err == nil {
		tag, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	switch {
	case err != nil && s.lostCommit(ctx, ch.ID, err):
		// Committed, the answer lost (even the claim's): a charge like any.
	case err != nil:
		err = dbError(err, "claim and charge")
		if claimed {
			s.giveBack(ctx, id, token, err)
		}
		return true, answer{}, err
	case !claimed:
		return false, answer{}, nil
	case tag.RowsAffected() != 1:
		// Only a lease shorter than the round trip gets here.
		return true, answer{}, inFlight(key)
	}
	s.committed(ctx, ch)
	return true, answer{status: 200, contentType: "application/json", body: body}, nil
}

// release unlocks a key this request holds after a failure, so that a retry
// can run it at once instead of waiting out the lease. Best effort: if the
// database is gone, the lease does the same later. A finished key is left
// alone.
func (s *Service) release(ctx context.Context, id int64, token lockToken) {
	s.unlock(ctx, releaseSQL, id, token)
}

// giveBack hands back a key this request holds after its charge transaction
// failed with err (which wrote nothing). When the fault is the request's own
// (EINVALID: the database refused its data), the claim is deleted, so the
// key is as if never used: a corrected request under it is charged, where a
// released key would answer 422 for a different body forever. Any other
// failure releases the key for a retry of the same request.
func (s *Service) giveBack(ctx context.Context, id int64, token lockToken, err error) {
	if apperr.Code(err) == apperr.EINVALID {
		// The request's checks should have caught it first: say so.
		s.log.Warn("the database refused a claimed request's data; its claim is deleted", "id", id, "err", err)
		s.unlock(ctx, unclaimSQL, id, token)
		return
	}
	s.release(ctx, id, token)
}

func (s *Service) unlock(ctx context.Context, sql string, id int64, token lockToken) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if _, err := s.pool.Exec(rctx, sql, id, token); err != nil {
		s.log.Warn("could not hand back an idempotency key (its lease frees it later)", "id", id, "err", err)
	}
}

// execute does the work for a key this request holds (id, token): the
// charge transaction, one statement. If the lease was lost meanwhile
// (another request took the key over), it writes nothing and the answer is
// 409.
func (s *Service) execute(ctx context.Context, id int64, token lockToken, merchant, key string, req Request) (answer, error) {
	s.cfg.Crash.Hit(CrashAfterClaim)
	if d := s.cfg.ProcessingDelay; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			s.release(context.WithoutCancel(ctx), id, token)
			return answer{}, apperr.Wrap(apperr.EUNAVAILABLE, ctx.Err(), "charge: request ended during processing")
		}
	}
	ch, body := newCharge(merchant, key, req)
	args, err := s.chargeTxArgs(id, token, ch, body)
	if err != nil {
		return answer{}, err
	}
	tag, err := s.pool.Exec(ctx, s.txByID, args...)
	switch {
	case err != nil && s.lostCommit(ctx, ch.ID, err):
		// Committed, the answer lost: a charge like any.
	case err != nil:
		err = dbError(err, "charge transaction")
		s.giveBack(ctx, id, token, err)
		return answer{}, err
	case tag.RowsAffected() != 1:
		// Our lease ran out and another request holds the key now.
		return answer{}, inFlight(key)
	}
	s.committed(ctx, ch)
	return answer{status: 200, contentType: "application/json", body: body}, nil
}

// writeEvent adds the outbox row to tx, except in dual-write mode.
func (s *Service) writeEvent(ctx context.Context, tx pgx.Tx, ch Charge) error {
	if s.cfg.Unsafe.DualWrite {
		return nil
	}
	if err := outbox.Insert(ctx, tx, eventOf(ch)); err != nil {
		return dbError(err, "insert outbox row")
	}
	return nil
}

// committed runs after a charge commits: the crash point, the metric and,
// in dual-write mode, the publish that a crash here loses.
func (s *Service) committed(ctx context.Context, ch Charge) {
	s.m.created.Inc()
	s.cfg.Crash.Hit(CrashAfterCommit)
	if !s.cfg.Unsafe.DualWrite {
		return
	}
	ev := eventOf(ch)
	payload, _ := json.Marshal(ev)
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := s.js.Publish(pctx, s.cfg.Subject, payload); err != nil {
		s.log.Error("dual-write: publish failed after commit: the event is lost", "charge_id", ch.ID, "event_id", ev.EventID, "err", err)
	}
}

// lostCommit reports whether the charge transaction that failed with err
// committed all the same: the connection died after the COMMIT and before
// its answer. Only a failure without an answer from the server leaves that
// open (an error the server sent means the statement rolled back), and the
// charge row, whose id is this request's own, settles it. Without this the
// charge would be made and never counted in charges_created_total, which
// is the side effect's evidence; if the database cannot be asked either,
// the request fails as before and the count stays short.
func (s *Service) lostCommit(ctx context.Context, chargeID string, err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) || pgconn.SafeToRetry(err) {
		return false
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	var found bool
	if qerr := s.pool.QueryRow(cctx, `SELECT EXISTS (SELECT 1 FROM charges WHERE id = $1)`, chargeID).Scan(&found); qerr != nil {
		s.log.Warn("a charge transaction's answer was lost and the database cannot say whether it committed", "charge_id", chargeID, "err", err, "check", qerr)
		return false
	}
	if found {
		s.log.Info("a charge transaction committed and its answer was lost; answering it", "charge_id", chargeID, "err", err)
	}
	return found
}

// chargeUnkeyed is the no-idempotency mode: a new charge every time.
func (s *Service) chargeUnkeyed(ctx context.Context, merchant, key string, req Request) (answer, error) {
	ch, body := newCharge(merchant, key, req)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, insertChargeSQL, ch.ID, merchant, key, ch.Amount, ch.Currency, ch.Customer, ch.SKU, ch.Quantity, ch.CreatedAt); err != nil {
			return dbError(err, "insert charge")
		}
		return s.writeEvent(ctx, tx, ch)
	})
	if err != nil {
		return answer{}, dbError(err, "charge transaction")
	}
	s.committed(ctx, ch)
	return answer{status: 200, contentType: "application/json", body: body}, nil
}

// chargeNonAtomic is the non-atomic-create mode: read the key, and if it is
// absent do the work and upsert the key afterwards. Two concurrent requests
// both read "absent" and both charge.
func (s *Service) chargeNonAtomic(ctx context.Context, merchant, key string, req Request) (answer, error) {
	fp := req.Fingerprint()
	var (
		id       int64
		state    string
		locked   bool
		stored   []byte
		status   int
		ctype    string
		storedFP []byte
	)
	err := s.pool.QueryRow(ctx, lookupSQL, merchant, key).Scan(&id, &storedFP, &state, &locked, &status, &ctype, &stored)
	switch {
	case err == nil && !bytes.Equal(storedFP, fp[:]):
		return answer{}, apperr.Errorf(apperr.EMISMATCH, "Idempotency-Key %q was already used with a different request", key)
	case err == nil && state == "finished":
		return answer{status: status, contentType: ctype, body: stored, replayed: true}, nil
	case err == nil:
		return answer{}, inFlight(key)
	case !errors.Is(err, pgx.ErrNoRows):
		return answer{}, dbError(err, "look up idempotency key")
	}
	ch, body := newCharge(merchant, key, req)
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, insertChargeSQL, ch.ID, merchant, key, ch.Amount, ch.Currency, ch.Customer, ch.SKU, ch.Quantity, ch.CreatedAt); err != nil {
			return dbError(err, "insert charge")
		}
		if err := s.writeEvent(ctx, tx, ch); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, upsertFinishedSQL, merchant, key, fp[:], req.Canonical(), ch.ID, 200, jsonHeaders, body)
		return dbError(err, "upsert idempotency key")
	})
	if err != nil {
		return answer{}, dbError(err, "charge transaction")
	}
	s.committed(ctx, ch)
	return answer{status: 200, contentType: "application/json", body: body}, nil
}

// dbError classifies a database error: the server or the network being
// unavailable is EUNAVAILABLE with a Retry-After; the database refusing the
// request's data (a value out of range, a NUL in text, a failed check) is
// EINVALID, the client's to fix; any other SQL error is a bug. Errors that
// already carry a code keep it.
func dbError(err error, what string) error {
	if err == nil {
		return nil
	}
	var ae *apperr.Error
	if errors.As(err, &ae) {
		return err
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "22"), // data exception
			pgErr.Code == "23502", pgErr.Code == "23514": // not null, check
			return apperr.Wrap(apperr.EINVALID, err, "the database refused the request's data (%s): %s; nothing was charged", what, pgErr.Message)
		case strings.HasPrefix(pgErr.Code, "08"), // connection exception
			strings.HasPrefix(pgErr.Code, "53"),          // insufficient resources
			strings.HasPrefix(pgErr.Code, "57P"),         // shutdown, cannot connect now
			pgErr.Code == "40001", pgErr.Code == "40P01": // serialization, deadlock
		default:
			return apperr.Wrap(apperr.EINTERNAL, err, "%s", what)
		}
	}
	return &apperr.Error{Code: apperr.EUNAVAILABLE, RetryAfter: retryAfter, Err: err,
		Message: "the database is unavailable (" + what + "); retry later"}
}
