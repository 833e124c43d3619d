package history

import (
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
