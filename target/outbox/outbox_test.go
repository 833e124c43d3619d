package outbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/paytest/paytest/internal/pgmigrate"
	"github.com/paytest/paytest/internal/testinfra"
	"github.com/paytest/paytest/target/outbox"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// A database an earlier paytest left at version 1 (rows marked published in
// place) is upgraded without losing a row: its published rows move to
// outbox_published with their published_at, attempts (plus the acked one)
// and last error, its unpublished rows stay in outbox for the relay, and
// migrating again changes nothing.
func TestMigrateMovesRowsPublishedInPlace(t *testing.T) {
	ctx := context.Background()
	pool := testinfra.PostgresPool(t)
	if err := pgmigrate.Apply(ctx, pool, "outbox", outbox.Migrations[:1]); err != nil {
		t.Fatal(err)
	}
	published := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	_, err := pool.Exec(ctx, `INSERT INTO outbox (event_id, event_type, aggregate_id, payload, published_at, attempts, last_error)
		SELECT gen_random_uuid(), 'charge.created', 'ch_' || g, '{}', CASE WHEN g <= 3 THEN $1::timestamptz END,
			CASE WHEN g = 1 THEN 2 ELSE 0 END, CASE WHEN g = 1 THEN 'no responders' END
		FROM generate_series(1, 5) g`, published)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := outbox.Migrate(ctx, pool); err != nil {
			t.Fatal(err)
		}
	}

	rows, err := pool.Query(ctx, `SELECT aggregate_id FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	pending, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(pending) != 2 || pending[0] != "ch_4" || pending[1] != "ch_5" {
		t.Fatalf("outbox holds %v (%v), want the two unpublished rows [ch_4 ch_5]", pending, err)
	}

	type moved struct {
		Agg       string
		At        time.Time
		Attempts  int
		LastError *string
	}
	rows, err = pool.Query(ctx, `SELECT aggregate_id, published_at, attempts, last_error FROM outbox_published ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[moved])
	if err != nil || len(got) != 3 {
		t.Fatalf("outbox_published holds %d rows (%v), want 3", len(got), err)
	}
	for i, m := range got {
		wantAttempts := 1
		if i == 0 {
			wantAttempts = 3
			if m.LastError == nil || *m.LastError != "no responders" {
				t.Errorf("%s: last_error %v, want the failure it had", m.Agg, m.LastError)
			}
		}
		if !m.At.Equal(published) || m.Attempts != wantAttempts {
			t.Errorf("%s: published_at %v attempts %d, want %v and %d", m.Agg, m.At, m.Attempts, published, wantAttempts)
		}
	}
}
