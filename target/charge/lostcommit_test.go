package charge

import (
	"bytes"
	"net/url"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/testinfra"
)

// chargeAnswer reports whether a chunk of Postgres's answer is the charge
// transaction's: an INSERT's completion and no row (the claim returns its
// key's id), or, in the first-time batch, the claim's COMMIT and then the
// charge's INSERT.
func chargeAnswer(batch bool) func([]byte) bool {
	return func(chunk []byte) bool {
		types, bodies, ok := testinfra.BackendMessages(chunk)
		if !ok {
			return false
		}
		var rows, commit, insert bool
		for i, typ := range types {
			switch {
			case typ == 'D':
				rows = true
			case typ == 'C' && bytes.HasPrefix(bodies[i], []byte("COMMIT")):
				commit = true
			case typ == 'C' && bytes.HasPrefix(bodies[i], []byte("INSERT 0 1")):
				insert = true
			}
		}
		if batch {
			return commit && insert
		}
		return insert && !rows
	}
}

// TestChargeWhoseCommitAnswerWasLost: the charge transaction commits and
// its answer never comes back (the connection dies in between). The
// service finds its charge committed and answers it, and counts it in
// paytest_charges_created_total: the side effect happened once, so the
// counter says once (it read one short before, which verify reads as a
// lost charge). A retry replays it; nothing is charged twice.
func TestChargeWhoseCommitAnswerWasLost(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delay time.Duration // 0: the claim and the charge in one batch
	}{
		{"claim and charge in one batch", 0},
		{"charge after the processing delay", 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := url.Parse(testinfra.Postgres(t))
			if err != nil {
				t.Fatal(err)
			}
			cutter := testinfra.StartCommitCutter(t, u.Host, chargeAnswer(tc.delay == 0))
			cutter.Release() // only the one connection dies
			u.Host = cutter.Addr()
			h := newServerHarness(t, Config{DatabaseURL: u.String(), ProcessingDelay: tc.delay}, ServerConfig{})

			cutter.Arm()
			first := h.post(t, DefaultAPIKey, "lost-commit", demoBody)
			select {
			case <-cutter.Cut():
			default:
				t.Fatalf("the charge's answer was not eaten (%s): the test proves nothing", first)
			}
			if first.status != 200 || first.replayed() {
				t.Fatalf("first attempt: %s, want the charge it committed, answered 200", first)
			}
			again := h.post(t, DefaultAPIKey, "lost-commit", demoBody)
			if again.status != 200 || !again.replayed() || string(again.body) != string(first.body) {
				t.Fatalf("retry: %s, want the first charge replayed (%s)", again, first)
			}
			if keys, charges, events := rows(t, h.pool); keys != 1 || charges != 1 || events != 1 {
				t.Fatalf("keys=%d charges=%d events=%d, want one of each", keys, charges, events)
			}
			if got, err := testinfra.Scrape(h.url+"/metrics", "paytest_charges_created_total"); err != nil || got != 1 {
				t.Fatalf("paytest_charges_created_total %v (%v), want 1: the committed charge was not counted", got, err)
			}
		})
	}
}
