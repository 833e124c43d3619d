// Package history is the run directory's record of what the client did and
// what was done to the system: the plan (plan.jsonl), one line per client
// attempt (history.jsonl) and one line per injected fault (faults.jsonl).
// attack writes these files; verify reads them and nothing else of attack's.
// Writers stream to disk and readers stream from it, so a 100,000-operation
// run never sits in memory as a whole.
package history

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// File names inside a run directory.
const (
	PlanFile    = "plan.jsonl"
	HistoryFile = "history.jsonl"
	FaultsFile  = "faults.jsonl"
)

// Op kinds in the plan.
const (
	// KindCharge is a logical charge: it must move money exactly once.
	KindCharge = "charge"
	// KindReuse reuses another op's key with a changed body: it must be
	// rejected (422 unless the run declares other statuses) and move no
	// money.
	KindReuse = "reuse"
)

// Op is one logical operation of the plan.
type Op struct {
	Op       int    `json:"op"`
	Kind     string `json:"kind"`
	Merchant string `json:"merchant,omitempty"`
	Key      string `json:"key"`
	// Amount is the charge's amount in minor units.
	Amount int64 `json:"amount"`
	// BodySHA256 is the hex digest of the body sent.
	BodySHA256 string `json:"body_sha256"`
	// Senders is how many independent senders send this op (1 + duplicates).
	Senders int `json:"senders"`
	// Race is true when the senders are released together by a barrier.
	Race bool `json:"race,omitempty"`
	// ReuseOf is, for KindReuse, the op whose key this one reuses.
	ReuseOf int `json:"reuse_of,omitempty"`
}

// Outcomes of an attempt, as the client saw it.
const (
	OutcomeNew         = "new"          // complete 2xx, not marked as a replay
	OutcomeReplay      = "replay"       // complete 2xx with the replay header (Idempotent-Replayed: true by default)
	OutcomeConflict    = "conflict"     // 409: the key is in flight
	OutcomeMismatch    = "mismatch"     // 422, or a reuse op's declared rejection status
	OutcomeUnavailable = "unavailable"  // 429 or 503
	OutcomeRejected    = "rejected"     // any other 4xx: a definite failure
	OutcomeServerError = "server-error" // other 5xx: indeterminate
	OutcomeTimeout     = "timeout"      // no complete answer within the attempt timeout
	OutcomeNetwork     = "network"      // connection refused, reset, closed, or the body cut off
	OutcomeBudget      = "budget"       // not sent: the retry budget was empty
)

// Delay reasons: why the client waited before an attempt.
const (
	ReasonFirst      = "first"       // the first attempt: no wait
	ReasonBackoff    = "backoff"     // full jitter over [0, cap]
	ReasonRetryAfter = "retry-after" // Retry-After, plus jitter above it
	ReasonReconcile  = "reconcile"   // re-driven after the chaos window
)

// Attempt is one request the client made (or, for OutcomeBudget, did not).
type Attempt struct {
	Op       int    `json:"op"`
	Kind     string `json:"kind"`
	Sender   int    `json:"sender"`
	CallSite string `json:"call_site"`
	Merchant string `json:"merchant,omitempty"`
	Key      string `json:"key"`
	// Attempt is 1 for the sender's first try, 2 for its first retry...
	Attempt int `json:"attempt"`
	// DelayMS is how long the client waited before this attempt.
	DelayMS     float64 `json:"delay_ms"`
	DelayReason string  `json:"delay_reason"`
	// CapMS is the full-jitter window the delay was drawn from: [0, cap]
	// for backoff, [retry_after, retry_after+cap] for retry-after.
	CapMS float64 `json:"cap_ms,omitempty"`
	// RetryAfterMS is the Retry-After this attempt's response carried.
	RetryAfterMS float64 `json:"retry_after_ms,omitempty"`
	// Status is the status line's code, kept when the body that followed
	// was cut off (then Outcome is timeout or network and Error says why).
	Status   int    `json:"status"`
	Outcome  string `json:"outcome"`
	Replayed bool   `json:"replayed,omitempty"`
	// ChargeID is the resource id read from a complete 2xx JSON body.
	ChargeID string `json:"charge_id,omitempty"`
	// BodySHA256 is the hex SHA-256 of a complete 2xx body: two answers
	// with the same digest are the same answer replayed.
	BodySHA256 string    `json:"body_sha256,omitempty"`
	Error      string    `json:"error,omitempty"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
}

// Fault is one fault injected into the system, or its end.
type Fault struct {
	Time time.Time `json:"time"`
	// Fault is one of the documented names: eat-response, broker-cut, kill,
	// redis-loss, outage, poison, latency.
	Fault string `json:"fault"`
	// Action is inject (a one-off), start or stop (a window), arm (a
	// crash point set to fire later) or error (the fault failed while
	// running: the run is then inconclusive).
	Action string `json:"action"`
	Target string `json:"target,omitempty"`
	Count  int    `json:"count,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Writer appends JSON lines to a file. It is safe for concurrent use.
type Writer[T any] struct {
	mu  sync.Mutex
	f   *os.File
	bw  *bufio.Writer
	enc *json.Encoder
	n   int
	err error
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

// Write appends one record.
func (w *Writer[T]) Write(rec T) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if w.f == nil {
		return errors.New("history: write after close")
	}
	w.err = w.enc.Encode(rec)
	w.n++
	return w.err
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
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(trimSpace(b)) == 0 {
			continue
		}
		var rec T
		if err := json.Unmarshal(b, &rec); err != nil {
			return fmt.Errorf("line %d: %w", line, err)
		}
		if err := fn(rec); err != nil {
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
