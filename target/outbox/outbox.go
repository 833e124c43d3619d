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

// Migrations create the outbox table. Both the charge service and the relay
// apply them (idempotently) so either can start first.
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
