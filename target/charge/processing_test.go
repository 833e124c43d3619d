package charge

import (
	"errors"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/testinfra"
)

// TestInFlightGets409WithRetryAfter: while a charge is being processed (the
// simulated card-processor call), a same-key request is answered 409 with
// Retry-After and writes nothing; once the first finishes, the same request
// is a byte-for-byte replay.
func TestInFlightGets409WithRetryAfter(t *testing.T) {
	h := newHarness(t, Config{ProcessingDelay: 400 * time.Millisecond})
	first := make(chan reply, 1)
	go func() {
		r, err := doPost(h.client, h.url, DefaultAPIKey, "slow", demoBody)
		if err != nil {
			t.Error(err)
		}
		first <- r
	}()
	// Wait, by polling the database, until the first request holds the key.
	testinfra.WaitFor(t, 5*time.Second, func() error {
		if count(t, h.pool, `SELECT count(*) FROM idempotency_keys WHERE key = 'slow'`) == 0 {
			return errors.New("first request has not claimed its key")
		}
		return nil
	})
	second := h.post(t, DefaultAPIKey, "slow", demoBody)
	if second.status != 409 || second.header.Get("Retry-After") == "" || second.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("same key while in flight: %s (Retry-After %q), want 409 with Retry-After", second, second.header.Get("Retry-After"))
	}
	won := <-first
	if won.status != 200 || won.replayed() {
		t.Fatalf("first request: %s", won)
	}
	again := h.post(t, DefaultAPIKey, "slow", demoBody)
	if !again.replayed() || string(again.body) != string(won.body) {
		t.Fatalf("after completion: %s, want a replay of %s", again, won)
	}
	if _, charges, events := rows(t, h.pool); charges != 1 || events != 1 {
		t.Fatalf("charges=%d events=%d, want 1 and 1", charges, events)
	}
}
