package charge

import (
	"strings"
	"testing"

	"github.com/paytest/paytest/internal/apperr"
)

func TestDecodeChargeCanonical(t *testing.T) {
	a, err := DecodeCharge([]byte(demoBody))
	if err != nil {
		t.Fatal(err)
	}
	b, err := DecodeCharge([]byte("  {\n\"quantity\": 1, \"sku\":\"sku-1\",\t\"customer\":\"cus_1\", \"currency\":\"EUR\", \"amount\":1299}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Fingerprint() != b.Fingerprint() {
		t.Fatalf("key order and whitespace changed the fingerprint: %s vs %s", a.Canonical(), b.Canonical())
	}
	c, _ := DecodeCharge([]byte(strings.Replace(demoBody, "1299", "1300", 1)))
	if a.Fingerprint() == c.Fingerprint() {
		t.Fatal("a different amount has the same fingerprint")
	}
}

func TestValidateKey(t *testing.T) {
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"k", true},
		{strings.Repeat("a", 255), true},
		{"order 42/é"[:8], true},
		{"", false},
		{strings.Repeat("a", 256), false},
		{"a\x01b", false},
		{"a\x7fb", false},
		{"a\tb", false},
		{"café", false},
	} {
		err := ValidateKey(tc.key)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateKey(%q) = %v, want ok=%v", tc.key, err, tc.ok)
		}
		if err != nil && apperr.Code(err) != apperr.EINVALID {
			t.Errorf("ValidateKey(%q) code %s, want %s", tc.key, apperr.Code(err), apperr.EINVALID)
		}
	}
}

func TestParseUnsafe(t *testing.T) {
	u, err := ParseUnsafe(nil)
	if err != nil || u != (Unsafe{}) {
		t.Fatalf("no modes: %+v %v, want the safe zero value", u, err)
	}
	if _, err := ParseUnsafe([]string{"no-idempotency", "bogus"}); apperr.Code(err) != apperr.EUSAGE {
		t.Fatalf("unknown mode: %v, want a usage error", err)
	}
	if _, err := ParseUnsafe([]string{ModeNoIdempotency, ModeNonAtomicCreate}); apperr.Code(err) != apperr.EUSAGE {
		t.Fatalf("contradictory modes: %v, want a usage error", err)
	}
	u, err = ParseUnsafe([]string{ModeDualWrite, ModeNonAtomicCreate})
	if err != nil || !u.DualWrite || !u.NonAtomicCreate || u.NoIdempotency {
		t.Fatalf("two modes: %+v %v", u, err)
	}
}

// FuzzDecodeCharge: decoding never panics, every rejection is EINVALID, and
// every accepted request is valid and survives its canonical form unchanged.
func FuzzDecodeCharge(f *testing.F) {
	for _, s := range []string{
		demoBody,
		`{"amount":1,"currency":"USD","customer":"c","sku":"s","quantity":3}`,
		`{"amount":0,"currency":"EUR","customer":"c","sku":"s","quantity":1}`,
		`{"amount":1,"currency":"eur","customer":"c","sku":"s","quantity":1}`,
		`{"amount":1,"currency":"EUR","customer":"c","sku":"s","quantity":1,"x":1}`,
		`{"amount":1.5}`, `[]`, `null`, ``, `{}{}`, `{"amount":9223372036854775808}`,
		`{"amount":1,"currency":"EUR","customer":"c","sku":"s","quantity":2147483648}`,
		`{"amount":1,"currency":"EUR","customer":"c\u0000","sku":"s","quantity":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := DecodeCharge(body)
		if err != nil {
			if apperr.Code(err) != apperr.EINVALID {
				t.Fatalf("rejection with code %s: %v", apperr.Code(err), err)
			}
			return
		}
		if r.Amount <= 0 || !validCurrency(r.Currency) || r.Customer == "" || r.SKU == "" || r.Quantity < 1 || r.Quantity > MaxQuantity ||
			strings.ContainsRune(r.Customer+r.SKU, 0) {
			t.Fatalf("accepted an invalid request %+v from %q", r, body)
		}
		again, err := DecodeCharge(r.Canonical())
		if err != nil {
			t.Fatalf("canonical form %s rejected: %v", r.Canonical(), err)
		}
		if again != r || again.Fingerprint() != r.Fingerprint() {
			t.Fatalf("canonical round trip changed the request: %+v -> %+v", r, again)
		}
	})
}
