package consumer

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeClassifiesPoison(t *testing.T) {
	good := `{"event_id":"6f1c2b1e-8a8e-4c1e-9d57-3f0d6a1b2c3d","charge_id":"ch_1","merchant":"demo",
		"idempotency_key":"k1","amount":1299,"currency":"EUR","customer":"cus_1","sku":"sku-1","quantity":1}`
	for _, tc := range []struct {
		name, payload, reason string
	}{
		{"good", good, ""},
		{"not json", `{"event_id":`, "undecodable"},
		{"unknown field", strings.Replace(good, `"sku"`, `"skew"`, 1), "undecodable"},
		{"no idempotency key", strings.Replace(good, `"k1"`, `""`, 1), "undecodable"},
		{"event id not a uuid", strings.Replace(good, `6f1c2b1e-8a8e-4c1e-9d57-3f0d6a1b2c3d`, `e1`, 1), "not a UUID"},
		{"zero quantity", strings.Replace(good, `"quantity":1`, `"quantity":0`, 1), "quantity"},
		{"zero amount", strings.Replace(good, `"amount":1299`, `"amount":0`, 1), "unbalanced posting"},
		{"negative amount", strings.Replace(good, `"amount":1299`, `"amount":-5`, 1), "unbalanced posting"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, legs, err := decode([]byte(tc.payload))
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				if len(legs) != 2 || legs[0].amount+legs[1].amount != 0 || legs[1].amount != ev.Amount ||
					legs[0].account != "customer:cus_1" || legs[1].account != "merchant:demo" {
					t.Fatalf("legs %+v", legs)
				}
				return
			}
			var pe *poisonError
			if !errors.As(err, &pe) || !strings.Contains(pe.reason, tc.reason) {
				t.Fatalf("err = %v, want poison mentioning %q", err, tc.reason)
			}
		})
	}
}
