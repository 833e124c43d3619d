package rundir

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fastMatchesJSON decodes line with the fast path and with encoding/json:
// where the fast path takes the line, both must give the same record.
func fastMatchesJSON[T any](t *testing.T, line string) (taken bool) {
	t.Helper()
	var fast, slow T
	taken = any(&fast).(lineDecoder).decodeLine([]byte(line))
	err := json.Unmarshal([]byte(line), &slow)
	if taken && (err != nil || !reflect.DeepEqual(fast, slow)) {
		t.Errorf("%s:\n fast %+v\n json %+v (%v)", line, fast, slow, err)
	}
	return taken
}

func TestFastDecodeMatchesJSON(t *testing.T) {
	amount := int64(1299)
	start := time.Date(2026, 11, 28, 12, 0, 0, 123456789, time.UTC)
	records := []any{
		Attempt{Op: 7, Kind: KindCharge, Sender: 1, CallSite: "charge", Merchant: "demo", Key: "k-1", Attempt: 2, DelayMS: 12.5,
			DelayReason: ReasonBackoff, CapMS: 100, RetryAfterMS: 0.25, Status: 200, Outcome: OutcomeReplay, Replayed: true,
			ChargeID: "ch_1", BodySHA256: "ab", Error: "x", Intended: start.Add(-time.Second), Start: start, End: start.Add(time.Millisecond)},
		Attempt{Op: 1, Start: start.In(time.FixedZone("x", 3600))},
		Op{Op: 3, Kind: KindReuse, Merchant: "m", Key: "k", Amount: -5, BodySHA256: "cd", Senders: 3, Race: true, ReuseOf: 1},
		LedgerRow{Merchant: "m", Key: "k", Amount: &amount, Effects: 2},
		LedgerRow{Key: "k", Effects: 1},
	}
	for _, r := range records {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		var taken bool
		switch r.(type) {
		case Attempt:
			taken = fastMatchesJSON[Attempt](t, string(b))
		case Op:
			taken = fastMatchesJSON[Op](t, string(b))
		case LedgerRow:
			taken = fastMatchesJSON[LedgerRow](t, string(b))
		}
		if !taken {
			t.Errorf("the fast path refused a line its writer writes: %s", b)
		}
	}
	// Lines the fast path must leave to encoding/json (or decode the same).
	for _, line := range []string{
		`{"op":1,"key":"a\"b"}`, `{"op":01}`, `{"op":+1}`, `{"op":1.5}`, `{"op":1e2}`, `{"Op":3}`, `{"op":1,"extra":[1]}`,
		`{"op":1,"key":"é"}`, `{"op":null,"key":null}`, `{"op":1}x`, `{"op":1`, `{"op":1,}`, ` {"op" : 2 , "replayed" : true } `,
		`{"delay_ms":NaN}`, `{"delay_ms":1_0}`, `{"start":"2026-11-28T12:00:00Z","op":true}`, `[]`, `{"status":"200"}`,
	} {
		fastMatchesJSON[Attempt](t, line)
	}
	for _, line := range []string{`{"amount":null,"key":"k","effects":1}`, `{"amount":"1","key":"k"}`, `{"effects":1.0}`} {
		fastMatchesJSON[LedgerRow](t, line)
	}
	var a Attempt
	if err := Decode(strings.NewReader(`{"op":1,"key":"a\"b","status":200}`+"\n"), func(x Attempt) error { a = x; return nil }); err != nil || a.Key != `a"b` || a.Status != 200 {
		t.Errorf("an escaped key through Decode: %+v, %v", a, err)
	}
}

// FuzzFastDecode: whatever line the fast path takes, encoding/json reads
// the same record from.
func FuzzFastDecode(f *testing.F) {
	f.Add(`{"op":7,"kind":"charge","sender":1,"key":"k","delay_ms":1.5,"status":200,"replayed":true,"start":"2026-11-28T12:00:00.5Z"}`)
	f.Add(`{"op":-0,"delay_ms":-1.5e-3}`)
	f.Fuzz(func(t *testing.T, line string) {
		fastMatchesJSON[Attempt](t, line)
		fastMatchesJSON[LedgerRow](t, line)
		fastMatchesJSON[Op](t, line)
	})
}
