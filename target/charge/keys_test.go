package charge

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/testinfra"
	"github.com/paytest/paytest/target/consumer"
	"github.com/paytest/paytest/target/consumer/consumertest"
)

// TestRequestFaultAfterClaimFreesKey: a request the database refuses that
// got past the checks (here handed to the state machine without them) is a
// 400 that leaves nothing behind: no charge, no event, and no claim, so a
// valid request under the same key is charged at once. A released claim
// would answer that valid request 422 (a different body) for as long as the
// key lives.
func TestRequestFaultAfterClaimFreesKey(t *testing.T) {
	valid, err := DecodeCharge([]byte(demoBody))
	if err != nil {
		t.Fatal(err)
	}
	overflow, nul := valid, valid
	overflow.Quantity = MaxQuantity + 1 // fits the claim's jsonb, not the charges' int
	nul.Customer = "cus\x00_1"          // refused by the claim itself
	redis := func(t *testing.T) Config {
		url, prefix := testinfra.Redis(t)
		return Config{RedisURL: url, RedisPrefix: prefix}
	}
	for _, tc := range []struct {
		name string
		cfg  func(*testing.T) Config
		req  Request
	}{
		{"quantity over int32, claim and charge in one round trip", func(*testing.T) Config { return Config{} }, overflow},
		{"quantity over int32, claim then charge", func(*testing.T) Config { return Config{ProcessingDelay: time.Millisecond} }, overflow},
		{"quantity over int32, behind the redis tier", redis, overflow},
		{"NUL in customer, one round trip", func(*testing.T) Config { return Config{} }, nul},
		{"NUL in customer, claim then charge", func(*testing.T) Config { return Config{ProcessingDelay: time.Millisecond} }, nul},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.cfg(t))
			_, err := h.svc.charge(context.Background(), DefaultMerchant, "k", tc.req)
			if apperr.Code(err) != apperr.EINVALID || !strings.Contains(apperr.Message(err), "refused the request's data") {
				t.Fatalf("charge = %v (%s), want an %s refusal", err, apperr.Code(err), apperr.EINVALID)
			}
			if keys, charges, events := rows(t, h.pool); keys+charges+events != 0 {
				t.Fatalf("the refused request left keys=%d charges=%d events=%d, want nothing", keys, charges, events)
			}
			if r := h.post(t, DefaultAPIKey, "k", demoBody); r.status != 200 || r.replayed() {
				t.Fatalf("a valid request under the same key: %s, want a new 200", r)
			}
			if keys, charges, events := rows(t, h.pool); keys != 1 || charges != 1 || events != 1 {
				t.Fatalf("keys=%d charges=%d events=%d, want 1 each", keys, charges, events)
			}
		})
	}
}

// TestCatalogIsTheConsumers: the charge service sells exactly the skus a
// real consumer seeds its inventory with, read back from that inventory:
// each one is charged, and the first past it is refused.
func TestCatalogIsTheConsumers(t *testing.T) {
	e := consumertest.New(t, "")
	ccfg := e.ConsumerConfig()
	c, err := consumer.New(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	consumertest.Serve(t, c)
	var skus []string
	testinfra.WaitFor(t, 30*time.Second, func() error {
		rs, err := e.Pool.Query(context.Background(), `SELECT sku FROM ledger_inventory ORDER BY sku`)
		if err != nil {
			return err
		}
		defer rs.Close()
		skus = skus[:0]
		for rs.Next() {
			var s string
			if err := rs.Scan(&s); err != nil {
				return err
			}
			skus = append(skus, s)
		}
		if err := rs.Err(); err != nil {
			return err
		}
		if len(skus) != ccfg.Catalog {
			return fmt.Errorf("the inventory holds %d skus, want %d", len(skus), ccfg.Catalog)
		}
		return nil
	})
	h := newHarness(t, Config{DatabaseURL: e.DatabaseURL, Catalog: ccfg.Catalog})
	for _, sku := range skus {
		body := strings.Replace(demoBody, `"sku-1"`, `"`+sku+`"`, 1)
		if r := h.post(t, DefaultAPIKey, "catalog-"+sku, body); r.status != 200 {
			t.Fatalf("%s, a sku the consumer stocks: %s", sku, r)
		}
	}
	past := consumer.CatalogSKU(ccfg.Catalog + 1)
	r := h.post(t, DefaultAPIKey, "catalog-past", strings.Replace(demoBody, `"sku-1"`, `"`+past+`"`, 1))
	if r.status != 400 || !strings.Contains(string(r.body), "unknown sku") {
		t.Fatalf("%s, one past the consumer's catalog: %s, want 400 unknown sku", past, r)
	}
}

// TestAPIKeyLookup: the digest table finds every configured merchant and
// nothing else, whatever the position of the key.
func TestAPIKeyLookup(t *testing.T) {
	h := newHarness(t, Config{APIKeys: map[string]string{"sk_a": "acme", "sk_g": "globex", "sk_i": "initech"}})
	for _, tc := range []struct {
		secret, merchant string
		ok               bool
	}{
		{"sk_a", "acme", true}, {"sk_g", "globex", true}, {"sk_i", "initech", true},
		{"", "", false}, {"sk_", "", false}, {"sk_ax", "", false}, {"SK_A", "", false}, {DefaultAPIKey, "", false},
	} {
		m, ok := h.svc.keys.lookup(tc.secret)
		if m != tc.merchant || ok != tc.ok {
			t.Errorf("lookup(%q) = %q, %v; want %q, %v", tc.secret, m, ok, tc.merchant, tc.ok)
		}
	}
	for _, k := range h.svc.keys {
		for _, secret := range []string{"sk_a", "sk_g", "sk_i"} {
			if strings.Contains(string(k.digest[:]), secret) {
				t.Fatalf("the key table holds a secret in clear")
			}
		}
	}
}
