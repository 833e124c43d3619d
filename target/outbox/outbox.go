// Package outbox is the contract between the charge service and the relay:
// the outbox table, written in the same transaction that finishes an
// idempotency key, and the charge.created event it carries to the broker.
// The consumer reads only the event, never the table.
package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paytest/paytest/internal/pgmigrate"
)

// DefaultSubject is the NATS subject charge.created events are published on
// unless the relay is told another (tests use unique subjects and streams).
const DefaultSubject = "paytest.charges.created"

// DefaultStream is the JetStream stream that holds charge.created events.
const DefaultStream = "PAYTEST_CHARGES"

// EventType names the one event the reference system emits.
const EventType = "charge.created"

// Migrations create the outbox tables. Both the charge service and the
// relay apply them (idempotently) so either can start first.
//
// outbox holds the rows not yet published, and only those: the relay
// claims them by state (a row is unpublished while it is there, whatever its
// id), and marks a published row, in the transaction that claimed it, by
// deleting it, or (relay.Config.KeepPublished) by moving it to
// outbox_published, which keeps when each event was published, how many
// publishes it took (the failed ones counted in outbox.attempts plus the one
// that was acked) and the last failure's error. The second migration moves
// rows an older relay had marked in place (an UPDATE of published_at) to
// outbox_published. Deleting or moving is cheaper than that UPDATE, which
// could never be a HOT update (published_at was in the claim index's
// predicate) and so wrote a new row version and two index entries per row;
// make bench's BenchmarkRelayVsRawJetStream measures the relay.
var Migrations = []string{`
CREATE TABLE IF NOT EXISTS outbox (
	id           bigserial PRIMARY KEY,
	event_id     uuid NOT NULL UNIQUE,
	event_type   text NOT NULL,
	aggregate_id text NOT NULL,
	payload      bytea NOT NULL,
	created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
	published_at timestamptz,
	attempts     int NOT NULL DEFAULT 0,
	last_error   text
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
`, `
CREATE TABLE outbox_published (
	id           bigint NOT NULL,
	event_id     uuid NOT NULL,
	aggregate_id text NOT NULL,
	created_at   timestamptz NOT NULL,
	published_at timestamptz NOT NULL,
	attempts     int NOT NULL,
	last_error   text
);
INSERT INTO outbox_published
	SELECT id, event_id, aggregate_id, created_at, published_at, attempts + 1, last_error
	FROM outbox WHERE published_at IS NOT NULL;
DELETE FROM outbox WHERE published_at IS NOT NULL;
DROP INDEX outbox_unpublished;
ALTER TABLE outbox DROP COLUMN published_at;
`}

// Migrate applies Migrations.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pgmigrate.Apply(ctx, pool, "outbox", Migrations)
}

// ChargeCreated is the event a finished charge emits. Its EventID is what the
// consumer's inbox dedups on; (Merchant, IdempotencyKey) names the logical
// operation, which is how verify counts effects per operation.
type ChargeCreated struct {
	EventID        string    `json:"event_id"`
	ChargeID       string    `json:"charge_id"`
	Merchant       string    `json:"merchant"`
	IdempotencyKey string    `json:"idempotency_key"`
	Amount         int64     `json:"amount"`
	Currency       string    `json:"currency"`
	Customer       string    `json:"customer"`
	SKU            string    `json:"sku"`
	Quantity       int       `json:"quantity"`
	CreatedAt      time.Time `json:"created_at"`
}

// Insert writes ev as an unpublished outbox row inside tx.
func Insert(ctx context.Context, tx pgx.Tx, ev ChargeCreated) error {
	payload, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("outbox: encode: %w", err)
	}
	_, err = tx.Exec(ctx, `INSERT INTO outbox (event_id, event_type, aggregate_id, payload)
		VALUES ($1, $2, $3, $4)`, ev.EventID, EventType, ev.ChargeID, payload)
	if err != nil {
		return fmt.Errorf("outbox: insert: %w", err)
	}
	return nil
}

// Decode parses an event payload, rejecting unknown fields.
func Decode(b []byte) (ChargeCreated, error) {
	var ev ChargeCreated
	if err := json.Unmarshal(b, &ev); err != nil {
		return ev, fmt.Errorf("outbox: decode event: %w", err)
	}
	if ev.EventID == "" || ev.Merchant == "" || ev.IdempotencyKey == "" {
		return ev, fmt.Errorf("outbox: event lacks event_id, merchant or idempotency_key")
	}
	return ev, nil
}
