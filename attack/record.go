package attack

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paytest/paytest/attack/fault"
	"github.com/paytest/paytest/internal/rundir"
)

// journal is the run's record of faults (faults.jsonl) and its human story
// (transcript.txt). Both are written as things happen.
type journal struct {
	mu     sync.Mutex
	start  time.Time
	faults *rundir.Writer[rundir.Fault]
	tf     *os.File
	tw     *bufio.Writer
	counts map[string]int
	// errs are the faults that failed to start, stop or restart.
	errs   []string
	closed bool
	echo   func(string)
	// eating is true while an eat-response window is open.
	eating atomic.Bool
}

var _ fault.Recorder = (*journal)(nil)

func openJournal(faultsPath, transcriptPath string, start time.Time) (*journal, error) {
	fw, err := rundir.Create[rundir.Fault](faultsPath)
	if err != nil {
		return nil, err
	}
	tf, err := os.Create(transcriptPath)
	if err != nil {
		_ = fw.Close()
		return nil, err
	}
	return &journal{start: start, faults: fw, tf: tf, tw: bufio.NewWriterSize(tf, 64<<10), counts: map[string]int{}}, nil
}

// Record writes a fault record. Injections, window starts and stops, and
// errors (a fault that failed: the run is inconclusive) go to faults.jsonl
// and the transcript; other actions (arm) are notes for the transcript
// only. An eat-response window is a note too: what faults.jsonl counts for
// it is each response actually eaten (see attempt).
func (j *journal) Record(f rundir.Fault) {
	if f.Time.IsZero() {
		f.Time = time.Now()
	}
	counted := f.Action == rundir.ActionInject || f.Action == rundir.ActionStart || f.Action == rundir.ActionStop
	if f.Fault == rundir.FaultEatResponse && (f.Action == rundir.ActionStart || f.Action == rundir.ActionStop) {
		j.eating.Store(f.Action == rundir.ActionStart)
		counted = false
	}
	if counted && f.Action != rundir.ActionStop {
		j.mu.Lock()
		j.counts[f.Fault] += max(1, f.Count)
		j.mu.Unlock()
	}
	if f.Action == rundir.ActionError {
		j.mu.Lock()
		j.errs = append(j.errs, fmt.Sprintf("%s %s: %s", f.Fault, f.Target, f.Detail))
		j.mu.Unlock()
	}
	if counted || f.Action == rundir.ActionError {
		_ = j.faults.Write(f)
		_ = j.faults.Flush()
	}
	line := fmt.Sprintf("FAULT %-12s %-7s %s %s", f.Fault, f.Action, f.Target, f.Detail)
	j.printf(f.Time, "%s", line)
	if j.echo != nil {
		j.echo(line)
	}
}

// printf appends a line to the transcript, stamped with the time since the
// run began.
func (j *journal) printf(at time.Time, format string, args ...any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return
	}
	fmt.Fprintf(j.tw, "%9.3fs  ", at.Sub(j.start).Seconds())
	fmt.Fprintf(j.tw, format, args...)
	j.tw.WriteByte('\n')
}

// attempt writes a retry to the transcript: which attempt, how long the
// client waited and why, and what came back.
func (j *journal) attempt(a rundir.Attempt) {
	if j.eating.Load() && (a.Outcome == rundir.OutcomeNetwork || a.Outcome == rundir.OutcomeTimeout) {
		// The request went through the proxy and the toxic closed the
		// connection at the response's first byte: a response eaten.
		j.Record(rundir.Fault{Time: a.End, Fault: rundir.FaultEatResponse, Action: rundir.ActionInject, Target: fault.ProxyCharge, Count: 1,
			Detail: fmt.Sprintf("op %d sender %d key %s attempt %d: response lost (%s)", a.Op, a.Sender, a.Key, a.Attempt, a.Outcome)})
	}
	if a.Attempt <= 1 && a.DelayReason != rundir.ReasonReconcile {
		return
	}
	extra := ""
	if a.RetryAfterMS > 0 {
		extra = fmt.Sprintf(" retry-after %.0fms", a.RetryAfterMS)
	}
	if a.Error != "" {
		extra += " (" + a.Error + ")"
	}
	j.printf(a.Start, "op %d sender %d key %s attempt %d after %.1fms %s (window %.0fms): %d %s%s",
		a.Op, a.Sender, a.Key, a.Attempt, a.DelayMS, a.DelayReason, a.CapMS, a.Status, a.Outcome, extra)
}

// Counts returns how many of each fault were injected.
func (j *journal) Counts() map[string]int {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make(map[string]int, len(j.counts))
	for k, v := range j.counts {
		out[k] = v
	}
	return out
}

// Errors lists the faults that failed, one line each.
func (j *journal) Errors() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.errs)
}

// Close flushes and closes both files; safe to call more than once.
func (j *journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	j.closed = true
	err1 := j.faults.Close()
	err2 := j.tw.Flush()
	err3 := j.tf.Close()
	for _, e := range []error{err1, err2, err3} {
		if e != nil {
			return e
		}
	}
	return nil
}
