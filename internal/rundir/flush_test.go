package rundir

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/testinfra"
)

// TestWriterFlushesAsItWrites: records written one every 20 ms, far fewer
// than fill the buffer, reach the file within about flushEvery, as whole
// lines, before Close: what a process killed outright leaves behind.
func TestWriterFlushesAsItWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), HistoryFile)
	w, err := Create[Attempt](path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	began := time.Now()
	testinfra.WaitFor(t, 5*time.Second, func() error {
		if err := w.Write(Attempt{Op: w.Count(), Key: "k", Attempt: 1, Status: 200}); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil || len(b) == 0 {
			return fmt.Errorf("%d records written over %s, the file empty (%v)", w.Count(), time.Since(began).Round(time.Millisecond), err)
		}
		if !bytes.HasSuffix(b, []byte("\n")) {
			t.Fatalf("the file ends in a partial line: %q", b)
		}
		return nil
	})
	if took := time.Since(began); took < flushEvery {
		t.Errorf("flushed after %s, before flushEvery (%s)", took, flushEvery)
	}
}

// TestWriterFlushesWhenWritesStop: records written in a burst and then
// none (a run waiting out a Retry-After) still reach the file, whole,
// about flushEvery later, without a Flush or Close.
func TestWriterFlushesWhenWritesStop(t *testing.T) {
	path := filepath.Join(t.TempDir(), HistoryFile)
	w, err := Create[Attempt](path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	for i := range 3 {
		if err := w.Write(Attempt{Op: i + 1, Key: "k", Attempt: 1, Status: 200}); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := os.ReadFile(path); err != nil || len(b) != 0 {
		t.Fatalf("the file holds %d bytes at once (%v): the records were flushed per write", len(b), err)
	}
	testinfra.WaitFor(t, 5*time.Second, func() error {
		b, err := os.ReadFile(path)
		if n := bytes.Count(b, []byte("\n")); err != nil || n != 3 {
			return fmt.Errorf("%d of 3 lines in the file (%v)", n, err)
		}
		return nil
	})
}
