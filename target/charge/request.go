package charge

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/paytest/paytest/internal/apperr"
)

// MaxBodyBytes is the largest request body POST /charge reads (64 KiB).
const MaxBodyBytes = 64 << 10

// MaxKeyLen is the longest Idempotency-Key accepted, as at Stripe.
const MaxKeyLen = 255

// maxFieldLen bounds customer and sku.
const maxFieldLen = 255

// MaxQuantity is the largest quantity accepted: the charges table stores it
// as a Postgres int (32 bits). Amounts are int64, as the bigint column, so
// the decoder refuses every amount that would not fit.
const MaxQuantity = math.MaxInt32

// Request is a decoded, validated POST /charge body.
type Request struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
	Customer string `json:"customer"`
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// wireRequest tells a missing field from a zero one.
type wireRequest struct {
	Amount   *int64  `json:"amount"`
	Currency *string `json:"currency"`
	Customer *string `json:"customer"`
	SKU      *string `json:"sku"`
	Quantity *int    `json:"quantity"`
}

// DecodeCharge parses and validates a POST /charge body. Every failure is an
// apperr EINVALID error whose message says what is wrong: unknown fields,
// trailing data, a non-positive amount or one over int64, a currency that is
// not three uppercase letters, a missing customer or sku, a text with a NUL
// (Postgres text cannot hold one), a quantity below 1 or over MaxQuantity.
// Whatever it accepts, the database can store.
func DecodeCharge(body []byte) (Request, error) {
	var w wireRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Request{}, apperr.Errorf(apperr.EINVALID, "request body is not a valid charge JSON object: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Request{}, apperr.Errorf(apperr.EINVALID, "request body has data after the JSON object")
	}
	var r Request
	switch {
	case w.Amount == nil:
		return r, apperr.Errorf(apperr.EINVALID, "amount is required (a positive integer in minor units)")
	case *w.Amount <= 0:
		return r, apperr.Errorf(apperr.EINVALID, "amount must be a positive integer in minor units, got %d", *w.Amount)
	case w.Currency == nil:
		return r, apperr.Errorf(apperr.EINVALID, "currency is required (ISO 4217, three uppercase letters)")
	case !validCurrency(*w.Currency):
		return r, apperr.Errorf(apperr.EINVALID, "currency must be three uppercase letters (ISO 4217), got %q", *w.Currency)
	case w.Customer == nil || *w.Customer == "":
		return r, apperr.Errorf(apperr.EINVALID, "customer is required")
	case w.SKU == nil || *w.SKU == "":
		return r, apperr.Errorf(apperr.EINVALID, "sku is required")
	case w.Quantity == nil:
		return r, apperr.Errorf(apperr.EINVALID, "quantity is required (an integer >= 1)")
	case *w.Quantity < 1:
		return r, apperr.Errorf(apperr.EINVALID, "quantity must be >= 1, got %d", *w.Quantity)
	case *w.Quantity > MaxQuantity:
		return r, apperr.Errorf(apperr.EINVALID, "quantity must be <= %d, got %d", MaxQuantity, *w.Quantity)
	}
	for _, f := range []struct{ name, v string }{{"customer", *w.Customer}, {"sku", *w.SKU}} {
		switch {
		case len(f.v) > maxFieldLen:
			return r, apperr.Errorf(apperr.EINVALID, "%s is longer than %d bytes", f.name, maxFieldLen)
		case !utf8.ValidString(f.v):
			return r, apperr.Errorf(apperr.EINVALID, "%s is not valid UTF-8", f.name)
		case strings.IndexByte(f.v, 0) >= 0:
			return r, apperr.Errorf(apperr.EINVALID, "%s contains a NUL character (\\u0000)", f.name)
		}
	}
	r = Request{Amount: *w.Amount, Currency: *w.Currency, Customer: *w.Customer, SKU: *w.SKU, Quantity: *w.Quantity}
	return r, nil
}

func validCurrency(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

// Canonical returns the request's canonical JSON: fixed field order, no
// insignificant whitespace. Two bodies that differ only in key order or
// whitespace have the same canonical form.
func (r Request) Canonical() []byte {
	b, err := json.Marshal(r)
	if err != nil {
		// A struct of ints and valid UTF-8 strings always marshals.
		panic(fmt.Sprintf("charge: canonical request: %v", err))
	}
	return b
}

// Fingerprint is the SHA-256 of the canonical request: what an idempotency
// key is bound to.
func (r Request) Fingerprint() [32]byte { return sha256.Sum256(r.Canonical()) }

// ValidateKey checks an Idempotency-Key: 1 to 255 printable ASCII characters.
func ValidateKey(key string) error {
	if key == "" {
		return apperr.Errorf(apperr.EINVALID, "Idempotency-Key header is required (1 to %d printable ASCII characters)", MaxKeyLen)
	}
	if len(key) > MaxKeyLen {
		return apperr.Errorf(apperr.EINVALID, "Idempotency-Key is %d characters long; the limit is %d", len(key), MaxKeyLen)
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return apperr.Errorf(apperr.EINVALID, "Idempotency-Key has a non-printable or non-ASCII byte 0x%02x at position %d", key[i], i)
		}
	}
	return nil
}
