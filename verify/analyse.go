package verify

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sort"
	"time"

	"github.com/paytest/paytest/attack/history"
)

// Op kinds, compactly.
const (
	kindUnplanned uint8 = iota // seen in the history only
	kindCharge
	kindReuse
	kindOther
)

// opState is everything verify keeps per operation: the history is
// streamed through these counters, never held.
type opState struct {
	merchant, key string
	op            int
	reuseOf       int32
	senders       int32
	kind          uint8
	race          bool
	attempts      int32
	// The client's view, by attempt: 2xx (new or replay) and the rest.
	news, replays, conflicts, mismatches, rejected, budget, indeterminate int32
	firstOK                                                               int64 // unix nanos of the first 2xx's end
}

func (o *opState) ok() int32 { return o.news + o.replays }

// definite is true when every attempt was definitely not applied (or no
// attempt was sent at all).
func (o *opState) definite() bool { return o.ok() == 0 && o.indeterminate == 0 }

type senderKey struct{ op, sender int }

type pendingRA struct {
	ra      float64
	attempt int
	end     int64 // unix nanos the attempt that carried it ended; 0 unknown
}

type jitterKey struct {
	reason  string
	attempt int
}

type jitterSamples struct {
	u      []float64
	capSum float64
}

// delayPoint is one retry's delay, for the scatter plot.
type delayPoint struct {
	attempt uint16
	reason  uint8 // 0 backoff, 1 retry-after, 2 other
	delay   float32
}

// analysis is the streamed state of plan and history.
type analysis struct {
	ops     []opState
	index   map[int]int32
	planned bool

	nCharge, nReuse, nRace int
	attempts               int
	outcomes               map[string]int
	histStart, histEnd     time.Time

	pending    map[senderKey]pendingRA
	raChecked  int
	raEarly    cxList
	jitter     map[jitterKey]*jitterSamples
	delays     []delayPoint
	outOfRange int
	outage     *outageTally // nil without an outage window
}

// cxList collects counterexamples up to a cap and counts them all.
type cxList struct {
	max   int
	total int
	list  []Counterexample
}

func (l *cxList) add(c Counterexample) {
	l.total++
	if len(l.list) < l.max {
		l.list = append(l.list, c)
	}
}

func analyse(ctx context.Context, runDir string, ev *evidence, opts Options) (*analysis, error) {
	a := &analysis{
		index:    map[int]int32{},
		outcomes: map[string]int{},
		pending:  map[senderKey]pendingRA{},
		jitter:   map[jitterKey]*jitterSamples{},
		raEarly:  cxList{max: opts.MaxCounterexamples},
		outage:   newOutageTally(ev.faults),
	}
	err := history.ReadFile(filepath.Join(runDir, history.PlanFile), func(op history.Op) error {
		if _, dup := a.index[op.Op]; dup {
			return fmt.Errorf("op %d planned twice", op.Op)
		}
		s := opState{merchant: op.Merchant, key: op.Key, op: op.Op, reuseOf: int32(op.ReuseOf), senders: int32(op.Senders), race: op.Race}
		switch op.Kind {
		case history.KindCharge:
			s.kind = kindCharge
			a.nCharge++
			if op.Race {
				a.nRace++
			}
		case history.KindReuse:
			s.kind = kindReuse
			a.nReuse++
		default:
			s.kind = kindOther
		}
		a.index[op.Op] = int32(len(a.ops))
		a.ops = append(a.ops, s)
		return nil
	})
	switch {
	case err == nil:
		a.planned = true
	case errors.Is(err, fs.ErrNotExist):
	default:
		return nil, err
	}
	n := 0
	err = history.ReadFile(filepath.Join(runDir, history.HistoryFile), func(at history.Attempt) error {
		if n++; n%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		a.add(&at)
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return a, nil
}

// add folds one attempt into the op's counters, the Retry-After check and
// the jitter samples.
func (a *analysis) add(at *history.Attempt) {
	a.attempts++
	i, ok := a.index[at.Op]
	if !ok {
		i = int32(len(a.ops))
		a.index[at.Op] = i
		a.ops = append(a.ops, opState{merchant: at.Merchant, key: at.Key, op: at.Op, kind: kindUnplanned})
	}
	o := &a.ops[i]
	o.attempts++
	outcome := internOutcome(at)
	a.outcomes[outcome]++
	a.outage.add(at, outcome)
	switch outcome {
	case history.OutcomeNew:
		o.news++
	case history.OutcomeReplay:
		o.replays++
	case history.OutcomeConflict:
		o.conflicts++
	case history.OutcomeMismatch:
		o.mismatches++
	case history.OutcomeRejected:
		o.rejected++
	case history.OutcomeBudget:
		o.budget++
	default:
		o.indeterminate++
	}
	if (outcome == history.OutcomeNew || outcome == history.OutcomeReplay) && !at.End.IsZero() {
		if e := at.End.UnixNano(); o.firstOK == 0 || e < o.firstOK {
			o.firstOK = e
		}
	}
	if !at.Start.IsZero() && (a.histStart.IsZero() || at.Start.Before(a.histStart)) {
		a.histStart = at.Start
	}
	if at.End.After(a.histEnd) {
		a.histEnd = at.End
	}

	// Retry-After: the sender's previous attempt may have carried one.
	sk := senderKey{at.Op, at.Sender}
	prev, hadRA := a.pending[sk]
	if hadRA {
		delete(a.pending, sk)
		if outcome != history.OutcomeBudget {
			a.raChecked++
			// Early when the recorded delay is short of the Retry-After and
			// the clock does not show the wait either (a reconcile after the
			// chaos window may record a small delay after a long gap).
			gapMS := -1.0
			if prev.end != 0 && !at.Start.IsZero() {
				gapMS = float64(at.Start.UnixNano()-prev.end) / 1e6
			}
			if at.DelayMS+1e-6 < prev.ra && gapMS < prev.ra {
				a.raEarly.add(Counterexample{
					Op: at.Op, Key: at.Key, Merchant: at.Merchant, Sender: at.Sender, Attempt: at.Attempt,
					Why: fmt.Sprintf("attempt %d came %s ms after attempt %d was told Retry-After %s ms",
						at.Attempt, fmtMS(at.DelayMS), prev.attempt, fmtMS(prev.ra)),
				})
			}
		}
	}
	if at.RetryAfterMS > 0 {
		p := pendingRA{ra: at.RetryAfterMS, attempt: at.Attempt}
		if !at.End.IsZero() {
			p.end = at.End.UnixNano()
		}
		a.pending[sk] = p
	}

	// Jitter samples: backoff retries per attempt number, Retry-After
	// retries (spread above the Retry-After) together.
	if at.Attempt < 2 || outcome == history.OutcomeBudget {
		return
	}
	switch at.DelayReason {
	case history.ReasonBackoff:
		a.delays = append(a.delays, delayPoint{attempt: uint16(min(at.Attempt, 65535)), reason: 0, delay: float32(at.DelayMS)})
		if at.CapMS > 0 {
			a.sample(jitterKey{history.ReasonBackoff, at.Attempt}, at.DelayMS/at.CapMS, at.CapMS)
		}
	case history.ReasonRetryAfter:
		a.delays = append(a.delays, delayPoint{attempt: uint16(min(at.Attempt, 65535)), reason: 1, delay: float32(at.DelayMS)})
		if at.CapMS > 0 && hadRA {
			a.sample(jitterKey{history.ReasonRetryAfter, 0}, (at.DelayMS-prev.ra)/at.CapMS, at.CapMS)
		}
	default:
		a.delays = append(a.delays, delayPoint{attempt: uint16(min(at.Attempt, 65535)), reason: 2, delay: float32(at.DelayMS)})
	}
}

func (a *analysis) sample(k jitterKey, u, capMS float64) {
	if u < 0 || u > 1+1e-9 {
		a.outOfRange++
	}
	u = max(0, min(1, u))
	s := a.jitter[k]
	if s == nil {
		s = &jitterSamples{}
		a.jitter[k] = s
	}
	s.u = append(s.u, u)
	s.capSum += capMS
}

// internOutcome names the attempt's outcome with one of history's
// constants (so per-op state shares them), trusting the status over the
// label for 2xx answers.
func internOutcome(at *history.Attempt) string {
	if at.Status >= 200 && at.Status < 300 {
		if at.Replayed || at.Outcome == history.OutcomeReplay {
			return history.OutcomeReplay
		}
		return history.OutcomeNew
	}
	switch at.Outcome {
	case history.OutcomeNew:
		return history.OutcomeNew
	case history.OutcomeReplay:
		return history.OutcomeReplay
	case history.OutcomeConflict:
		return history.OutcomeConflict
	case history.OutcomeMismatch:
		return history.OutcomeMismatch
	case history.OutcomeUnavailable:
		return history.OutcomeUnavailable
	case history.OutcomeRejected:
		return history.OutcomeRejected
	case history.OutcomeServerError:
		return history.OutcomeServerError
	case history.OutcomeTimeout:
		return history.OutcomeTimeout
	case history.OutcomeNetwork:
		return history.OutcomeNetwork
	case history.OutcomeBudget:
		return history.OutcomeBudget
	}
	switch {
	case at.Status == 409:
		return history.OutcomeConflict
	case at.Status == 422:
		return history.OutcomeMismatch
	case at.Status == 429 || at.Status == 503:
		return history.OutcomeUnavailable
	case at.Status >= 400 && at.Status < 500:
		return history.OutcomeRejected
	case at.Status >= 500:
		return history.OutcomeServerError
	}
	return history.OutcomeNetwork
}

// op returns the state of a planned op id, or nil.
func (a *analysis) op(id int) *opState {
	if i, ok := a.index[id]; ok {
		return &a.ops[i]
	}
	return nil
}

// sortedJitterKeys orders backoff groups by attempt, then retry-after.
func (a *analysis) sortedJitterKeys() []jitterKey {
	keys := make([]jitterKey, 0, len(a.jitter))
	for k := range a.jitter {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].reason != keys[j].reason {
			return keys[i].reason == history.ReasonBackoff
		}
		return keys[i].attempt < keys[j].attempt
	})
	return keys
}
