// Package pgmigrate applies a component's embedded SQL migrations in order,
// once each, under a transaction-scoped advisory lock: safe to run twice and
// from several processes at once.
package pgmigrate

import (
	"context"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Apply runs the migrations of component that have not run yet, in order,
// each in its own transaction. Versions are the 1-based positions in steps.
func Apply(ctx context.Context, pool *pgxpool.Pool, component string, steps []string) error {
	h := fnv.New64a()
	_, _ = h.Write([]byte("paytest-migrate"))
	lockID := int64(h.Sum64())
	for i, step := range steps {
		version := i + 1
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockID); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS paytest_migrations (
				component text NOT NULL, version int NOT NULL,
				applied_at timestamptz NOT NULL DEFAULT now(),
				PRIMARY KEY (component, version))`); err != nil {
				return err
			}
			var done bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM paytest_migrations WHERE component = $1 AND version = $2)`,
				component, version).Scan(&done); err != nil {
				return err
			}
			if done {
				return nil
			}
			if _, err := tx.Exec(ctx, step); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO paytest_migrations (component, version) VALUES ($1, $2)`, component, version)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate %s to version %d: %w", component, version, err)
		}
	}
	return nil
}
