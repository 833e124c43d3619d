package verify

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/paytest/paytest/attack/history"
)

// readJournal streams the records of a JSON-lines file attack appends to
// while it runs (history.jsonl, faults.jsonl) to fn. A paytest killed
// mid-write leaves a last line without its newline: that partial record is
// skipped and named in the returned note (the evidence is then incomplete,
// and the verdict withheld), so a run that stopped hard still gets a
// report. Any other malformed line is an error.
func readJournal[T any](path string, fn func(T) error) (note string, err error) {
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
	if err := history.Decode(io.NewSectionReader(f, 0, complete), fn); err != nil {
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
