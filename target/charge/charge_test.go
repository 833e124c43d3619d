package charge

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/paytest/paytest/target/outbox"
)

// TestRaceSameKey: 200 trials of two same-key, same-body requests released
// together. Each trial gives exactly one new charge and one 409 or replay,
// and the database holds exactly one charge and one outbox row per key.
func TestRaceSameKey(t *testing.T) {
	h := newHarness(t, Config{})
	const trials = 200
	var conflicts, replays int
	for i := range trials {
		key := fmt.Sprintf("race-%d", i)
		start := make(chan struct{})
		var wg sync.WaitGroup
		var got [2]reply
		var errs [2]error
		for j := range 2 {
			wg.Go(func() {
				<-start
				got[j], errs[j] = doPost(h.client, h.url, DefaultAPIKey, key, demoBody)
			})
		}
		close(start)
		wg.Wait()
		var fresh int
		for j, r := range got {
			if errs[j] != nil {
				t.Fatalf("trial %d: %v", i, errs[j])
			}
			switch {
			case r.status == 200 && !r.replayed():
				fresh++
			case r.status == 200:
				replays++
			case r.status == 409 && r.header.Get("Retry-After") != "":
				conflicts++
			default:
				t.Fatalf("trial %d: unexpected answer %s", i, r)
			}
		}
		if fresh != 1 {
			t.Fatalf("trial %d: %d new charges, want exactly 1: %s / %s", i, fresh, got[0], got[1])
		}
	}
	t.Logf("%d trials: every one gave one new charge; the other request got 409 %d times, a replay %d times", trials, conflicts, replays)
	_, charges, events := rows(t, h.pool)
	if charges != trials || events != trials {
		t.Fatalf("%d charges and %d outbox rows, want %d of each", charges, events, trials)
	}
	if n := count(t, h.pool, `SELECT count(*) FROM (SELECT 1 FROM charges GROUP BY merchant, idempotency_key HAVING count(*) <> 1) d`); n != 0 {
		t.Fatalf("%d keys without exactly one charge", n)
	}
	if n := count(t, h.pool, `SELECT count(*) FROM (SELECT 1 FROM outbox
		GROUP BY convert_from(payload, 'UTF8')::jsonb ->> 'idempotency_key' HAVING count(*) <> 1) d`); n != 0 {
		t.Fatalf("%d keys without exactly one outbox row", n)
	}
	// Every outbox row is a charge.created event the relay and consumer can
	// read, for the charge it sits next to.
	rs, err := h.pool.Query(context.Background(), `SELECT o.event_type, o.aggregate_id, o.payload, c.idempotency_key
		FROM outbox o LEFT JOIN charges c ON c.id = o.aggregate_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	for rs.Next() {
		var typ, agg string
		var key *string
		var payload []byte
		if err := rs.Scan(&typ, &agg, &payload, &key); err != nil {
			t.Fatal(err)
		}
		ev, err := outbox.Decode(payload)
		if err != nil || typ != outbox.EventType || key == nil || ev.ChargeID != agg || ev.IdempotencyKey != *key ||
			ev.Merchant != DefaultMerchant || ev.Amount != 1299 || ev.Currency != "EUR" || ev.SKU != "sku-1" || ev.Quantity != 1 {
			t.Fatalf("outbox row %s %s for charge key %v: %+v %v", typ, agg, key, ev, err)
		}
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestMismatchAndReplay: a changed body gets 422 and writes nothing; the
// same body (in any key order) replays the original byte for byte.
func TestMismatchAndReplay(t *testing.T) {
	h := newHarness(t, Config{})
	first := h.post(t, DefaultAPIKey, "k1", demoBody)
	if first.status != 200 || first.replayed() {
		t.Fatalf("first: %s", first)
	}
	var ch Charge
	if err := json.Unmarshal(first.body, &ch); err != nil || ch.ID == "" || ch.Amount != 1299 || ch.Merchant != DefaultMerchant {
		t.Fatalf("first body %s: %+v %v", first.body, ch, err)
	}
	updated := keyUpdatedAt(t, h, "k1")

	changed := h.post(t, DefaultAPIKey, "k1", strings.Replace(demoBody, "1299", "1300", 1))
	if changed.status != 422 || changed.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("changed body: %s", changed)
	}
	var p Problem
	if err := json.Unmarshal(changed.body, &p); err != nil || p.Type != ProblemTypePrefix+"mismatch" || p.Status != 422 {
		t.Fatalf("422 problem %s: %v", changed.body, err)
	}
	keys, charges, events := rows(t, h.pool)
	updated2 := keyUpdatedAt(t, h, "k1")
	if keys != 1 || charges != 1 || events != 1 || !updated.Equal(updated2) {
		t.Fatalf("after 422: keys=%d charges=%d events=%d key touched=%v: a 422 must write nothing", keys, charges, events, !updated.Equal(updated2))
	}

	reordered := `{ "quantity":1, "sku":"sku-1",
		"customer":"cus_1", "currency":"EUR", "amount":1299 }`
	for i, body := range []string{demoBody, reordered} {
		again := h.post(t, DefaultAPIKey, "k1", body)
		if again.status != first.status || string(again.body) != string(first.body) ||
			again.header.Get("Content-Type") != first.header.Get("Content-Type") || !again.replayed() {
			t.Fatalf("replay %d: %s (Content-Type %q), want %s (Content-Type %q) with %s: true",
				i, again, again.header.Get("Content-Type"), first, first.header.Get("Content-Type"), ReplayedHeader)
		}
	}
	if _, charges, _ := rows(t, h.pool); charges != 1 {
		t.Fatalf("%d charges after replays, want 1", charges)
	}
}

// keyUpdatedAt reads when the demo merchant's key was last written.
func keyUpdatedAt(t *testing.T, h *harness, key string) time.Time {
	t.Helper()
	var at time.Time
	if err := h.pool.QueryRow(context.Background(), `SELECT updated_at FROM idempotency_keys WHERE merchant = $1 AND key = $2`,
		DefaultMerchant, key).Scan(&at); err != nil {
		t.Fatalf("updated_at of key %q: %v", key, err)
	}
	return at
}

// TestMerchantsScoped: the same key from two merchants is two operations
// with two distinct bodies; neither sees the other's replay.
func TestMerchantsScoped(t *testing.T) {
	h := newHarness(t, Config{APIKeys: map[string]string{"sk_a": "acme", "sk_g": "globex"}})
	a := h.post(t, "sk_a", "shared", demoBody)
	g := h.post(t, "sk_g", "shared", demoBody)
	if a.status != 200 || g.status != 200 || a.replayed() || g.replayed() {
		t.Fatalf("acme %s, globex %s: want two new charges", a, g)
	}
	if string(a.body) == string(g.body) {
		t.Fatal("two merchants got the same body")
	}
	for _, tc := range []struct {
		secret, merchant string
		want             reply
	}{{"sk_a", "acme", a}, {"sk_g", "globex", g}} {
		r := h.post(t, tc.secret, "shared", demoBody)
		var ch Charge
		if err := json.Unmarshal(r.body, &ch); err != nil {
			t.Fatalf("%s replay body %s: %v", tc.merchant, r.body, err)
		}
		if !r.replayed() || string(r.body) != string(tc.want.body) || ch.Merchant != tc.merchant {
			t.Fatalf("%s replay: %s, want its own %s", tc.merchant, r, tc.want)
		}
	}
	if n := count(t, h.pool, `SELECT count(DISTINCT merchant) FROM charges WHERE idempotency_key = 'shared'`); n != 2 {
		t.Fatalf("%d merchants charged, want 2", n)
	}
	if _, charges, events := rows(t, h.pool); charges != 2 || events != 2 {
		t.Fatalf("charges=%d events=%d, want 2 and 2", charges, events)
	}
}

// TestLeaseTakeover: a started key whose lease is still running answers 409
// with Retry-After; once the lease has run out a retry takes it over and
// completes it exactly once. (The lease running out in real time, in a
// real process, is TestCrashInFlight's; here the clock is moved by SQL.)
func TestLeaseTakeover(t *testing.T) {
	h := newHarness(t, Config{})
	ctx := context.Background()
	req, _ := DecodeCharge([]byte(demoBody))
	fp := req.Fingerprint()
	// What a process that died right after claiming leaves behind.
	if _, err := h.pool.Exec(ctx, claimSQL, DefaultMerchant, "orphan", fp[:], req.Canonical(), uuid.New(), time.Hour.Milliseconds()); err != nil {
		t.Fatal(err)
	}
	r := h.post(t, DefaultAPIKey, "orphan", demoBody)
	if r.status != 409 || r.header.Get("Retry-After") != "1" {
		t.Fatalf("in flight: %s Retry-After=%q, want 409 with Retry-After: 1", r, r.header.Get("Retry-After"))
	}
	if _, charges, _ := rows(t, h.pool); charges != 0 {
		t.Fatalf("a 409 charged")
	}
	if _, err := h.pool.Exec(ctx, `UPDATE idempotency_keys SET locked_until = now() - interval '1 millisecond'`); err != nil {
		t.Fatal(err)
	}
	r = h.post(t, DefaultAPIKey, "orphan", demoBody)
	if r.status != 200 || r.replayed() {
		t.Fatalf("after the lease: %s, want a new 200", r)
	}
	if again := h.post(t, DefaultAPIKey, "orphan", demoBody); !again.replayed() || string(again.body) != string(r.body) {
		t.Fatalf("after the takeover: %s, want a replay", again)
	}
	if _, charges, events := rows(t, h.pool); charges != 1 || events != 1 {
		t.Fatalf("charges=%d events=%d after takeover, want 1 and 1", charges, events)
	}
	if n := count(t, h.pool, `SELECT attempts FROM idempotency_keys WHERE key = 'orphan'`); n != 2 {
		t.Fatalf("attempts=%d, want 2 (the claim and the takeover)", n)
	}
}

// TestLostLeaseRollsBack: a request whose lease was taken over by another
// cannot finish the key: its whole transaction rolls back.
func TestLostLeaseRollsBack(t *testing.T) {
	h := newHarness(t, Config{Lease: time.Minute})
	ctx := context.Background()
	req, _ := DecodeCharge([]byte(demoBody))
	fp := req.Fingerprint()
	stale, fresh := newLockToken(), newLockToken()
	var id int64
	if err := h.pool.QueryRow(ctx, claimSQL, DefaultMerchant, "k", fp[:], req.Canonical(), stale, -1).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if err := h.pool.QueryRow(ctx, takeoverSQL, id, fresh, 60000).Scan(new(int)); err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.execute(ctx, id, stale, DefaultMerchant, "k", req); err == nil {
		t.Fatal("the stale holder finished the key")
	}
	if _, charges, events := rows(t, h.pool); charges != 0 || events != 0 {
		t.Fatalf("stale holder left charges=%d events=%d, want none", charges, events)
	}
	if _, err := h.svc.execute(ctx, id, fresh, DefaultMerchant, "k", req); err != nil {
		t.Fatalf("the holder: %v", err)
	}
	if _, charges, events := rows(t, h.pool); charges != 1 || events != 1 {
		t.Fatalf("charges=%d events=%d, want 1 and 1", charges, events)
	}
}

// TestReaper: keys older than the retention are deleted; a key reused after
// that is a new operation.
func TestReaper(t *testing.T) {
	h := newHarness(t, Config{Retention: time.Hour})
	h.post(t, DefaultAPIKey, "old", demoBody)
	h.post(t, DefaultAPIKey, "young", demoBody)
	if _, err := h.pool.Exec(context.Background(), `UPDATE idempotency_keys SET created_at = now() - interval '2 hours' WHERE key = 'old'`); err != nil {
		t.Fatal(err)
	}
	n, err := h.svc.Reap(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("Reap = %d, %v; want 1", n, err)
	}
	if k := count(t, h.pool, `SELECT count(*) FROM idempotency_keys WHERE key = 'young'`); k != 1 {
		t.Fatal("the young key was reaped")
	}
	if r := h.post(t, DefaultAPIKey, "old", demoBody); r.status != 200 || r.replayed() {
		t.Fatalf("reused reaped key: %s, want a new charge", r)
	}
}

// TestMetricsAndHealth: outcomes are counted and the outbox backlog shows.
func TestMetricsAndHealth(t *testing.T) {
	h := newHarness(t, Config{})
	h.post(t, DefaultAPIKey, "m1", demoBody)
	h.post(t, DefaultAPIKey, "m1", demoBody)
	h.post(t, DefaultAPIKey, "m1", strings.Replace(demoBody, "EUR", "USD", 1))
	h.post(t, "nope", "m2", demoBody)
	h.post(t, DefaultAPIKey, "m3", `{}`)
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := h.client.Get(h.url + path)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", path, resp, err)
		}
		resp.Body.Close()
	}
	resp, err := h.client.Get(h.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for _, want := range []string{
		`paytest_charge_requests_total{outcome="new"} 1`,
		`paytest_charge_requests_total{outcome="replay"} 1`,
		`paytest_charge_requests_total{outcome="mismatch"} 1`,
		`paytest_charge_requests_total{outcome="unauthorized"} 1`,
		`paytest_charge_requests_total{outcome="invalid"} 1`,
		`paytest_charge_requests_total{outcome="conflict"} 0`,
		`paytest_charges_created_total 1`,
		`paytest_outbox_pending 1`,
		`paytest_charge_request_duration_seconds_count 5`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
}
