package pgmigrate

import (
	"context"
	"sync"
	"testing"

	"github.com/paytest/paytest/internal/testinfra"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

func TestApplyTwiceAndConcurrently(t *testing.T) {
	ctx := context.Background()
	pool := testinfra.PostgresPool(t)
	steps := []string{
		"CREATE TABLE widgets (id int PRIMARY KEY)",
		"INSERT INTO widgets VALUES (1)",
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func(i int) { defer wg.Done(); errs[i] = Apply(ctx, pool, "widgets", steps) }(i)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := Apply(ctx, pool, "widgets", steps); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM widgets").Scan(&n); err != nil || n != 1 {
		t.Fatalf("widgets rows = %d (%v), want 1: a step ran twice", n, err)
	}
}
