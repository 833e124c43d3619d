package rundir

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestWriteThenReadBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), HistoryFile)
	w, err := Create[Attempt](path)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := w.Write(Attempt{Op: i, Key: "k", Attempt: 1, Outcome: OutcomeNew, Status: 200, Start: start, End: start.Add(time.Millisecond)}); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	seen := map[int]bool{}
	err = ReadFile(path, func(a Attempt) error {
		if a.Status != 200 || !a.Start.Equal(start) {
			t.Errorf("record changed on the way: %+v", a)
		}
		seen[a.Op] = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 100 || w.Count() != 100 {
		t.Fatalf("read %d distinct ops, wrote %d; want 100", len(seen), w.Count())
	}
	if err := w.Write(Attempt{}); err == nil {
		t.Fatal("write after close must fail")
	}
}

func TestDecodeNamesTheBadLine(t *testing.T) {
	in := "{\"op\":1}\n\n{\"op\":2}\n{\"op\": oops}\n"
	n := 0
	err := Decode(strings.NewReader(in), func(Attempt) error { n++; return nil })
	if err == nil || !strings.Contains(err.Error(), "line 4") || n != 2 {
		t.Fatalf("err = %v after %d records; want an error naming line 4 after 2", err, n)
	}
}

// The answer fields a verifier compares: written only when set, and read
// back from lines written before they existed.
func TestAttemptAnswerFields(t *testing.T) {
	digest := strings.Repeat("ab", 32)
	cases := []struct {
		name    string
		in      Attempt
		line    string // a substring the line must hold
		without string // a key the line must not hold
	}{
		{"complete 2xx", Attempt{Op: 1, Status: 200, Outcome: OutcomeNew, ChargeID: "ch_1", BodySHA256: digest},
			`"charge_id":"ch_1","body_sha256":"` + digest + `"`, ""},
		{"cut-off 2xx", Attempt{Op: 2, Status: 200, Outcome: OutcomeNetwork, Error: "unexpected EOF"},
			`"status":200,"outcome":"network"`, "body_sha256"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			w := json.NewEncoder(&b)
			if err := w.Encode(tc.in); err != nil {
				t.Fatal(err)
			}
			line := b.String()
			if !strings.Contains(line, tc.line) || (tc.without != "" && strings.Contains(line, tc.without)) {
				t.Fatalf("line %s: want %s, without %q", line, tc.line, tc.without)
			}
			var got []Attempt
			if err := Decode(strings.NewReader(line), func(a Attempt) error { got = append(got, a); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].BodySHA256 != tc.in.BodySHA256 || got[0].ChargeID != tc.in.ChargeID || got[0].Status != tc.in.Status {
				t.Fatalf("read back %+v", got)
			}
		})
	}
	old := `{"op":3,"key":"k","attempt":1,"status":201,"outcome":"replay","replayed":true,"charge_id":"ch_3"}`
	var got Attempt
	if err := Decode(strings.NewReader(old), func(a Attempt) error { got = a; return nil }); err != nil || got.BodySHA256 != "" || got.ChargeID != "ch_3" {
		t.Fatalf("a line without body_sha256: %+v, %v", got, err)
	}
}

func FuzzDecodeAttempts(f *testing.F) {
	f.Add([]byte(`{"op":1,"key":"k","attempt":2,"delay_ms":12.5,"status":409,"outcome":"conflict","start":"2026-11-28T12:00:00Z"}` + "\n"))
	f.Add([]byte("\n\n"))
	f.Add([]byte(`{"op":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		// Whatever the input, Decode must not panic, and every record it
		// accepts must survive a write and a read unchanged.
		var got []Attempt
		if err := Decode(strings.NewReader(string(b)), func(a Attempt) error { got = append(got, a); return nil }); err != nil {
			return
		}
		path := filepath.Join(t.TempDir(), HistoryFile)
		w, err := Create[Attempt](path)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range got {
			if err := w.Write(a); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		i := 0
		if err := ReadFile(path, func(a Attempt) error {
			if a.Op != got[i].Op || a.Key != got[i].Key || a.Outcome != got[i].Outcome || !a.Start.Equal(got[i].Start) {
				t.Fatalf("record %d changed in a round trip: %+v != %+v", i, a, got[i])
			}
			i++
			return nil
		}); err != nil {
			t.Fatalf("reading back what was written: %v", err)
		}
		if i != len(got) {
			t.Fatalf("read back %d of %d records", i, len(got))
		}
	})
}

func TestRunRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), RunFile)
	in := Run{Seed: 42, Profile: "default", Ops: 1000, Concurrency: 32, Started: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC),
		Config: map[string]any{"ops": 1000}}
	if err := WriteRun(path, in); err != nil {
		t.Fatal(err)
	}
	out, err := ReadRun(path)
	if err != nil {
		t.Fatal(err)
	}
	if out.Seed != 42 || out.Profile != "default" || !out.Started.Equal(in.Started) || out.Config["ops"] != 1000 {
		t.Fatalf("round trip changed run.yaml: %+v", out)
	}
}

func TestCompleteLength(t *testing.T) {
	long := strings.Repeat("x", 150<<10)
	tests := []struct {
		in   string
		want int64
	}{
		{"", 0},
		{"a\n", 2},
		{"a\nb", 2},
		{"abc", 0},
		{"a\n" + long, 2},
		{long + "\n" + long, int64(len(long)) + 1},
		{long + "\n", int64(len(long)) + 1},
	}
	for _, tc := range tests {
		got, err := completeLength(strings.NewReader(tc.in), int64(len(tc.in)))
		if err != nil || got != tc.want {
			t.Errorf("completeLength(%d bytes) = %d, %v; want %d", len(tc.in), got, err, tc.want)
		}
	}
}
