package rundir

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// encodeMatchesJSON writes a's line with the fast path and with
// encoding/json: where the fast path takes it, both lines are the same
// bytes, and where encoding/json fails the fast path must not take it.
func encodeMatchesJSON(t *testing.T, a Attempt) (taken bool) {
	t.Helper()
	got, taken := a.appendLine(nil)
	var want bytes.Buffer
	err := json.NewEncoder(&want).Encode(a)
	switch {
	case taken && err != nil:
		t.Errorf("%+v: the fast path wrote %s where encoding/json fails: %v", a, got, err)
	case taken && !bytes.Equal(got, want.Bytes()):
		t.Errorf("%+v:\n fast %s json %s", a, got, want.Bytes())
	}
	return taken
}

func TestAppendLineMatchesJSON(t *testing.T) {
	start := time.Date(2026, 11, 28, 12, 0, 0, 123456789, time.UTC)
	typical := Attempt{Op: 7, Kind: KindCharge, Sender: 1, CallSite: "charge", Merchant: "demo", Key: "6f1c2d3e-0000-4000-8000-000000000001",
		Attempt: 2, DelayMS: 12.5, DelayReason: ReasonBackoff, CapMS: 100, RetryAfterMS: 0.25, Status: 200, Outcome: OutcomeReplay,
		Replayed: true, ChargeID: "ch_1", BodySHA256: "ab01", Intended: start.Add(-time.Second), Start: start, End: start.Add(time.Millisecond)}
	with := func(f func(*Attempt)) Attempt { a := typical; f(&a); return a }
	for _, tc := range []struct {
		name  string
		a     Attempt
		taken bool
	}{
		{"every field", typical, true},
		{"zero values omitted", Attempt{Op: 1, Start: start, End: start}, true},
		{"an error with quotes and a URL", with(func(a *Attempt) {
			a.Error = `Post "http://127.0.0.1:8080/charge?a=1&b=<2>": read tcp: connection reset` + "\n\t\r\b\f\x00\x1f\\"
		}), true},
		{"a local zone", with(func(a *Attempt) { a.Start = start.In(time.FixedZone("x", -(9*3600 + 30*60))) }), true},
		{"an offset with seconds", with(func(a *Attempt) { a.Start = start.In(time.FixedZone("x", 3600+7)) }), true},
		{"whole seconds", with(func(a *Attempt) { a.End = start.Truncate(time.Second) }), true},
		{"small float", with(func(a *Attempt) { a.DelayMS = 1e-7 }), true},
		{"smallest 'f' float", with(func(a *Attempt) { a.DelayMS = 1e-6 }), true},
		{"large float", with(func(a *Attempt) { a.CapMS = 1e21 }), true},
		{"large exponent", with(func(a *Attempt) { a.CapMS = -1.5e-300 }), true},
		{"negative zero", with(func(a *Attempt) { a.DelayMS = math.Copysign(0, -1) }), true},
		{"negative numbers", with(func(a *Attempt) { a.Op, a.Status, a.RetryAfterMS = -3, -1, -2.75 }), true},
		{"non-ASCII is encoding/json's", with(func(a *Attempt) { a.Error = "café \u2028" }), false},
		{"NaN is encoding/json's error", with(func(a *Attempt) { a.DelayMS = math.NaN() }), false},
		{"infinity", with(func(a *Attempt) { a.CapMS = math.Inf(-1) }), false},
		{"a five-digit year", with(func(a *Attempt) { a.End = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }), false},
		{"a negative year", with(func(a *Attempt) { a.Start = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) }), false},
		{"a zone offset of 24 hours", with(func(a *Attempt) { a.Intended = start.In(time.FixedZone("x", 24*3600)) }), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if taken := encodeMatchesJSON(t, tc.a); taken != tc.taken {
				t.Errorf("fast path took it: %v, want %v", taken, tc.taken)
			}
		})
	}
}

// FuzzAppendLine: whatever attempt the fast path takes, its line is
// encoding/json's, byte for byte.
func FuzzAppendLine(f *testing.F) {
	f.Add(7, "charge", `Post "http://x/?a=<b>&c": EOF`, 12.5, 1e-7, true, int64(1764331200), int64(123456789), 3600)
	f.Add(-1, "", "\x00\x7f\u00e9", math.Copysign(0, -1), 1e21, false, int64(-62135596800), int64(0), -86399)
	f.Fuzz(func(t *testing.T, op int, s1, s2 string, f1, f2 float64, replayed bool, sec, nsec int64, off int) {
		tm := time.Unix(sec, nsec).In(time.FixedZone("z", off%(48*3600)))
		encodeMatchesJSON(t, Attempt{Op: op, Kind: s1, CallSite: s2, Merchant: s1, Key: s2, Attempt: op, DelayMS: f1, DelayReason: s1,
			CapMS: f2, RetryAfterMS: f1, Status: op, Outcome: s2, Replayed: replayed, ChargeID: s1, BodySHA256: s2, Error: s1 + s2,
			Intended: tm, Start: tm, End: tm.UTC()})
	})
}

// TestWriterFastAndSlowLines: a file written through the fast path and
// the fallback is what encoding/json's Encoder writes, and reads back.
func TestWriterFastAndSlowLines(t *testing.T) {
	start := time.Date(2026, 11, 28, 12, 0, 0, 5, time.UTC)
	recs := []Attempt{
		{Op: 1, Kind: KindCharge, Key: "k1", Status: 200, Outcome: OutcomeNew, Start: start, End: start},
		{Op: 2, Kind: KindCharge, Key: "k2", Error: "réseau coupé", Start: start, End: start}, // non-ASCII: encoding/json
		{Op: 3, Kind: KindCharge, Key: "k3", Error: `"quoted" <tag>`, Start: start, End: start},
	}
	path := filepath.Join(t.TempDir(), HistoryFile)
	w, err := Create[Attempt](path)
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	enc := json.NewEncoder(&want)
	for _, r := range recs {
		if err := w.Write(r); err != nil {
			t.Fatal(err)
		}
		if err := enc.Encode(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("file:\n%s\nencoding/json:\n%s", got, want.Bytes())
	}
	var back []Attempt
	if err := ReadFile(path, func(a Attempt) error { back = append(back, a); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(back) != len(recs) || back[1].Error != recs[1].Error || back[2].Error != recs[2].Error || !back[0].Start.Equal(start) {
		t.Fatalf("read back %+v", back)
	}
}

// BenchmarkWriteAttempt is the history line's cost per attempt.
func BenchmarkWriteAttempt(b *testing.B) {
	start := time.Now()
	a := Attempt{Op: 7, Kind: KindCharge, CallSite: "charge", Merchant: "demo", Key: "6f1c2d3e-0000-4000-8000-000000000001",
		Attempt: 1, DelayReason: ReasonFirst, Status: 200, Outcome: OutcomeNew, ChargeID: "ch_123", BodySHA256: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		Intended: start, Start: start, End: start.Add(time.Millisecond)}
	w, err := Create[Attempt](filepath.Join(b.TempDir(), HistoryFile))
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Write(a); err != nil {
			b.Fatal(err)
		}
	}
}
