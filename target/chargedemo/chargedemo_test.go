package chargedemo_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/testinfra"
	"github.com/paytest/paytest/target/charge"
	"github.com/paytest/paytest/target/chargedemo"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

func newService(t *testing.T, cfg charge.Config) *charge.Service {
	t.Helper()
	cfg.Pool = testinfra.PostgresPool(t)
	svc, err := charge.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	return svc
}

// TestRunShowsTheFourAnswers: on a sound service the walk-through gets a
// new charge, its replay, a 409 in flight and a 422, prints each, and
// finds one charge per key.
func TestRunShowsTheFourAnswers(t *testing.T) {
	// A processing delay keeps the racing requests' winner in flight, so
	// that the first round catches a 409.
	svc := newService(t, charge.Config{ProcessingDelay: 50 * time.Millisecond})
	var out bytes.Buffer
	if err := chargedemo.Run(context.Background(), svc, chargedemo.Config{Out: &out}); err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	for _, want := range []string{
		"1. new:", "-> 200 OK", "2. replay:", "Idempotent-Replayed: true", "3. in flight:", "-> 409 Conflict",
		"Retry-After: 1", "4. mismatch:", "-> 422 Unprocessable Entity", "each key charged exactly once",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	var keys, charges int
	if err := svc.Pool().QueryRow(context.Background(), `SELECT count(DISTINCT idempotency_key), count(*) FROM charges`).Scan(&keys, &charges); err != nil {
		t.Fatal(err)
	}
	if keys < 2 || keys != charges {
		t.Fatalf("%d keys, %d charges; want the first key and a raced one, each charged once", keys, charges)
	}
}

// TestRunCatchesABrokenService: a service that charges every request anew
// fails the walk-through at the replay, as a violation.
func TestRunCatchesABrokenService(t *testing.T) {
	svc := newService(t, charge.Config{Unsafe: charge.Unsafe{NoIdempotency: true}})
	var out bytes.Buffer
	err := chargedemo.Run(context.Background(), svc, chargedemo.Config{Out: &out})
	if apperr.Code(err) != apperr.EVIOLATED || !strings.Contains(err.Error(), `"replay"`) {
		t.Fatalf("Run = %v; want a violation at the replay\n%s", err, out.String())
	}
}

// TestRunRefusesABadListenAddress: an address it cannot listen on is the
// caller's mistake.
func TestRunRefusesABadListenAddress(t *testing.T) {
	svc := newService(t, charge.Config{})
	err := chargedemo.Run(context.Background(), svc, chargedemo.Config{Listen: "127.0.0.1:notaport"})
	if apperr.Code(err) != apperr.EUSAGE {
		t.Fatalf("Run = %v; want a usage error", err)
	}
}
