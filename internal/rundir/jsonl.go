package rundir

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// flushEvery bounds what a process killed outright (SIGKILL, an evicted
// pod) loses of a file it is still writing: a record reaches the file at
// most this long after its Write, even if no other Write follows (a run
// waiting out a Retry-After). With the 256 KiB buffer alone, a shard
// killed mid-run would leave a history.jsonl empty of its first thousand
// or so attempts, and verify would name ops it had sent (and charged) as
// never sent.
const flushEvery = 200 * time.Millisecond

// Writer appends JSON lines to a file. It is safe for concurrent use.
type Writer[T any] struct {
	mu  sync.Mutex
	f   *os.File
	bw  *bufio.Writer
	enc *json.Encoder
	// line is the buffer a lineEncoder record appends its line to.
	line []byte
	n    int
	err  error
	// flush is the pending flush of records written since the last one;
	// nil when there are none.
	flush *time.Timer
}

// Create creates (or truncates) path and returns a Writer to it.
func Create[T any](path string) (*Writer[T], error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	return &Writer[T]{f: f, bw: bw, enc: json.NewEncoder(bw)}, nil
}

// Write appends one record; it reaches the file within flushEvery.
func (w *Writer[T]) Write(rec T) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if w.f == nil {
		return errors.New("rundir: write after close")
	}
	w.err = w.encode(&rec)
	w.n++
	if w.flush == nil && w.err == nil {
		w.flush = time.AfterFunc(flushEvery, w.flushPending)
	}
	return w.err
}

// encode writes rec's line, through its own lineEncoder when it has one.
func (w *Writer[T]) encode(rec *T) error {
	if le, ok := any(rec).(lineEncoder); ok {
		if line, ok := le.appendLine(w.line[:0]); ok {
			w.line = line
			_, err := w.bw.Write(line)
			return err
		}
	}
	return w.enc.Encode(rec)
}

// flushPending is the timed flush Write schedules.
func (w *Writer[T]) flushPending() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.flush = nil
	if w.f != nil && w.err == nil {
		w.err = w.bw.Flush()
	}
}

// Count returns how many records were written.
func (w *Writer[T]) Count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// Flush writes buffered records to the file.
func (w *Writer[T]) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return w.err
	}
	if err := w.bw.Flush(); err != nil && w.err == nil {
		w.err = err
	}
	return w.err
}

// Close flushes and closes the file. It is safe to call more than once.
func (w *Writer[T]) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return w.err
	}
	if w.flush != nil {
		w.flush.Stop()
		w.flush = nil
	}
	if err := w.bw.Flush(); err != nil && w.err == nil {
		w.err = err
	}
	if err := w.f.Close(); err != nil && w.err == nil {
		w.err = err
	}
	w.f = nil
	return w.err
}

// Decode streams JSON-line records from r to fn, in order. A malformed line
// is an error naming its line number; blank lines are skipped.
func Decode[T any](r io.Reader, fn func(T) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	line := 0
	// One record, reset per line, so a million lines are not a million
	// allocations; fn gets a copy.
	rec := new(T)
	d, fast := any(rec).(lineDecoder)
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(trimSpace(b)) == 0 {
			continue
		}
		var zero T
		*rec = zero
		if !fast || !d.decodeLine(b) {
			*rec = zero
			if err := json.Unmarshal(b, rec); err != nil {
				return fmt.Errorf("line %d: %w", line, err)
			}
		}
		if err := fn(*rec); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %w", line+1, err)
	}
	return nil
}

// ReadFile streams the records of the JSON-lines file at path to fn.
func ReadFile[T any](path string, fn func(T) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := Decode(f, fn); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// ReadJournal streams the records of a JSON-lines file attack appends to
// while it runs (history.jsonl, faults.jsonl) to fn. A paytest killed
// mid-write leaves a last line without its newline: that partial record is
// skipped and named in the returned note (the evidence is then incomplete),
// so a run that stopped hard can still be judged. Any other malformed line
// is an error.
func ReadJournal[T any](path string, fn func(T) error) (note string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	complete, err := completeLength(f, st.Size())
	if err != nil {
		return "", err
	}
	if err := Decode(io.NewSectionReader(f, 0, complete), fn); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if complete < st.Size() {
		note = fmt.Sprintf("%s ends in a partial line of %d bytes (the run stopped while writing it): ignored", filepath.Base(path), st.Size()-complete)
	}
	return note, nil
}

// completeLength is the length of f up to and including its last newline
// (all of it when it ends in one or is empty).
func completeLength(f io.ReaderAt, size int64) (int64, error) {
	const chunk = 64 << 10
	end := size
	buf := make([]byte, chunk)
	for end > 0 {
		start := max(0, end-chunk)
		n, err := f.ReadAt(buf[:end-start], start)
		if err != nil && err != io.EOF {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}
