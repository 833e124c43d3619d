package verify

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/paytest/paytest/internal/rundir"
)

// Op kinds, compactly.
const (
	kindUnplanned uint8 = iota // seen in the history only
	kindCharge
	kindReuse
	kindOther
	// kindUnsent is a planned op no given shard sent: its shard's run
	// directory is missing, or the shard stopped before sending it. It is
	// not judged (its effects, if any, are the missing shard's to explain).
	kindUnsent
)

// opState is everything verify keeps per operation: the history is
// streamed through these counters, never held.
type opState struct {
	merchant, key string
	op            int
	amount        int64
	reuseOf       int32
	senders       int32
	kind          uint8
	race          bool
	// shard is the shard that owned the op, in a sharded plan.
	shard    uint16
	attempts int32
	// The client's view, by attempt: 2xx (new or replay) and the rest.
	news, replays, conflicts, mismatches, rejected, budget, indeterminate int32
	firstOK                                                               int64 // unix nanos of the first 2xx's end
	// ids are the identities its 2xx answers carried (nil without any):
	// apart, so that a million ops answered without ids cost nothing.
	ids *opIDs
	// anonNews counts unmarked 2xx answers with no identity.
	anonNews int32
	// otherStatus is a reuse's first definite answer that is neither 2xx
	// nor a declared reuse status (400 where 422 was expected...).
	otherStatus int32
	// conflict is when 409s were seen (nil without any); lastEnd the end
	// of the op's last answer, and endedInConflict whether it was a 409.
	conflict        *conflictSpan
	lastEnd         int64
	endedInConflict bool
}

// opIDs are the charges an op's 2xx answers describe. charge: the
// identities (resource id, else body digest) of the unmarked ones and the
// resource ids of the marked replays (whose bodies may differ from the
// original's). ok adds the marked replays' body digests: what a reuse's
// answer may match.
type opIDs struct{ charge, ok []string }

// conflictSpan is the first and last 409 an op got (unix nanos of their
// ends).
type conflictSpan struct{ first, last int64 }

// chargeIDs are the distinct charges the op's 2xx answers describe.
func (o *opState) chargeIDs() []string {
	if o.ids == nil {
		return nil
	}
	return o.ids.charge
}

// okIDs are chargeIDs and the marked replays' body digests.
func (o *opState) okIDs() []string {
	if o.ids == nil {
		return nil
	}
	return o.ids.ok
}

// addIDs records identities of the op's 2xx answers: charge ("" none) and ok.
func (o *opState) addIDs(charge, ok string) {
	if o.ids == nil {
		o.ids = &opIDs{}
	}
	if charge != "" {
		o.ids.charge = addID(o.ids.charge, charge)
	}
	if ok != "" {
		o.ids.ok = addID(o.ids.ok, ok)
	}
}

// conflictTimes are the first and last 409 (0, 0 without one).
func (o *opState) conflictTimes() (first, last int64) {
	if o.conflict == nil {
		return 0, 0
	}
	return o.conflict.first, o.conflict.last
}

func (o *opState) ok() int32 { return o.news + o.replays }

// charges is how many distinct charges the client saw created for the op:
// unmarked 2xx answers that carry the same resource id (or, without one,
// the same body) are one charge replayed, not several.
func (o *opState) charges() int { return len(o.chargeIDs()) + int(o.anonNews) }

// resourceIDs counts the distinct resource ids among the charges the
// client saw: without a ledger, only these tell charges apart (bodies may
// differ between a charge and its replay: a fresh request id, a timestamp).
func (o *opState) resourceIDs() int {
	n := 0
	for _, id := range o.chargeIDs() {
		if !strings.HasPrefix(id, bodyPrefix) {
			n++
		}
	}
	return n
}

// untold says whether the op got several 2xx answers the client cannot
// tell apart: bodies that differ, or no identity at all, with at most one
// resource id among them. One charge replayed or several: a hint, not
// evidence.
func (o *opState) untold() bool { return o.charges() > 1 && o.resourceIDs() <= 1 }

// identity names the charge a complete 2xx answer describes: its resource
// id, else "body <digest>"; "" when the client recorded neither.
func identity(at *rundir.Attempt) string {
	switch {
	case at.ChargeID != "":
		return at.ChargeID
	case at.BodySHA256 != "":
		return bodyPrefix + at.BodySHA256
	}
	return ""
}

const bodyPrefix = "body "

// showID renders an identity for a counterexample.
func showID(id string) string {
	if strings.HasPrefix(id, bodyPrefix) {
		return id
	}
	return "id " + id
}

func addID(ids []string, id string) []string {
	for _, x := range ids {
		if x == id {
			return ids
		}
	}
	return append(ids, id)
}

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
	ops []opState
	// byID holds 1 + the position in ops of op id, 0 for none; index the
	// ids past it (see setIndex).
	byID    []int32
	index   map[int]int32
	planned bool
	latency *latencyAcc
	// plotErrors are the plots report.html could not draw.
	plotErrors []string

	nCharge, nReuse, nRace int
	reuseStatuses          []int
	// reuses maps an op to the reuse ops of its key.
	reuses             map[int][]int32
	attempts           int
	outcomes           map[string]int
	histStart, histEnd time.Time

	pending    map[senderKey]pendingRA
	raChecked  int
	raEarly    cxList
	jitter     map[jitterKey]*jitterSamples
	delays     []delayPoint
	outOfRange int
	outage     *outageTally // nil without an outage window
	// partial names a partial last line of history.jsonl that was skipped.
	partial string
	// cutInConflict counts the charges of shards that did not finish
	// whose last recorded answer was a 409 (see setAside).
	cutInConflict int
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

func analyse(ctx context.Context, in inputs, ev *evidence, opts Options) (*analysis, error) {
	// run.yaml's ops size the per-op state up front: growing a slice of a
	// million ops by doubling holds both copies at once, the peak of the
	// whole verification.
	hint := 0
	if ev.hasRun && ev.run.Ops > 0 && ev.run.Ops <= 1<<24 {
		hint = ev.run.Ops + ev.run.Ops/16 + 16
	}
	a := &analysis{
		ops:      make([]opState, 0, hint),
		byID:     make([]int32, 0, hint+1),
		index:    map[int]int32{},
		outcomes: map[string]int{},
		pending:  map[senderKey]pendingRA{},
		jitter:   map[jitterKey]*jitterSamples{},
		raEarly:  cxList{max: opts.MaxCounterexamples},
		outage:   newOutageTally(ev.faults),
		latency:  newLatencyAcc(hint),
		reuses:   map[int][]int32{},
	}
	a.reuseStatuses = opts.ReuseStatuses
	if len(a.reuseStatuses) == 0 && ev.hasRun {
		a.reuseStatuses = ev.run.ReuseStatuses
	}
	if len(a.reuseStatuses) == 0 {
		a.reuseStatuses = []int{422}
	}
	part := in.shards.partition()
	err := rundir.ReadFile(in.plan, func(op rundir.Op) error {
		if _, dup := a.lookup(op.Op); dup {
			return fmt.Errorf("op %d planned twice", op.Op)
		}
		s := opState{merchant: op.Merchant, key: op.Key, op: op.Op, amount: op.Amount, reuseOf: int32(op.ReuseOf), senders: int32(op.Senders), race: op.Race}
		if part != nil {
			s.shard = uint16(part.Next(op))
		}
		switch op.Kind {
		case rundir.KindCharge:
			s.kind = kindCharge
			a.nCharge++
			if op.Race {
				a.nRace++
			}
		case rundir.KindReuse:
			s.kind = kindReuse
			a.nReuse++
			a.reuses[op.ReuseOf] = append(a.reuses[op.ReuseOf], int32(len(a.ops)))
		default:
			s.kind = kindOther
		}
		a.setIndex(op.Op, int32(len(a.ops)))
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
	merchants := map[string]bool{}
	for i := range a.ops {
		merchants[a.ops[i].merchant] = true
	}
	ev.matchMerchants(merchants)
	if err := a.readHistories(ctx, in); err != nil {
		return nil, err
	}
	a.setAside(in.shards)
	return a, nil
}

// readHistories streams every shard's history.jsonl through add, counting
// each shard's attempts.
func (a *analysis) readHistories(ctx context.Context, in inputs) error {
	n := 0
	var partial []string
	for _, h := range in.histories {
		before := a.attempts
		note, err := rundir.ReadJournal(h.path, func(at rundir.Attempt) error {
			if n++; n%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			a.add(&at)
			return nil
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if note != "" {
			partial = append(partial, in.shards.label(h.shard)+note)
		}
		if in.shards != nil {
			in.shards.attempts[h.shard] += a.attempts - before
		}
	}
	a.partial = strings.Join(partial, "; ")
	return nil
}

// add folds one attempt into the op's counters, the Retry-After check and
// the jitter samples.
func (a *analysis) add(at *rundir.Attempt) {
	a.attempts++
	o := a.opOf(at)
	o.attempts++
	outcome := internOutcome(at)
	if o.kind == kindReuse {
		outcome = a.reuseOutcome(at, outcome)
	}
	a.outcomes[outcome]++
	a.outage.add(at, outcome)
	a.latency.add(at, outcome, confirms(o.kind, outcome))
	o.count(at, outcome)
	a.trackConflict(o, at, outcome)
	a.widenSpan(o, at, outcome)
	prev, hadRA := a.followRetryAfter(at, outcome)
	a.addDelay(at, outcome, prev, hadRA)
}

// confirms says whether an attempt's outcome confirms an op of kind: a
// complete 2xx for a charge, the declared refusal for a reuse.
func confirms(kind uint8, outcome string) bool {
	if kind == kindReuse {
		return outcome == rundir.OutcomeMismatch
	}
	return outcome == rundir.OutcomeNew || outcome == rundir.OutcomeReplay
}

// opOf is the state of the attempt's op, added as unplanned when the plan
// does not have it.
func (a *analysis) opOf(at *rundir.Attempt) *opState {
	i, ok := a.lookup(at.Op)
	if !ok {
		i = int32(len(a.ops))
		a.setIndex(at.Op, i)
		a.ops = append(a.ops, opState{merchant: at.Merchant, key: at.Key, op: at.Op, kind: kindUnplanned})
	}
	return &a.ops[i]
}

// count adds the attempt's outcome to the op's counters and the charges
// its 2xx answers describe.
func (o *opState) count(at *rundir.Attempt, outcome string) {
	switch outcome {
	case rundir.OutcomeNew:
		o.news++
		if id := identity(at); id != "" {
			o.addIDs(id, id)
		} else {
			o.anonNews++
		}
	case rundir.OutcomeReplay:
		o.replays++
		if id := identity(at); at.ChargeID != "" || id != "" {
			o.addIDs(at.ChargeID, id)
		}
	case rundir.OutcomeConflict:
		o.conflicts++
	case rundir.OutcomeMismatch:
		o.mismatches++
	case rundir.OutcomeRejected:
		o.rejected++
	case rundir.OutcomeBudget, rundir.OutcomeDropped:
		o.budget++
	default:
		o.indeterminate++
	}
	if o.kind == kindReuse && o.otherStatus == 0 && (outcome == rundir.OutcomeConflict || outcome == rundir.OutcomeRejected) {
		o.otherStatus = int32(at.Status)
	}
}

// widenSpan moves the op's first 2xx and the history's start and end to
// take in the attempt.
func (a *analysis) widenSpan(o *opState, at *rundir.Attempt, outcome string) {
	if (outcome == rundir.OutcomeNew || outcome == rundir.OutcomeReplay) && !at.End.IsZero() {
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
}

// followRetryAfter checks the attempt against the Retry-After its sender's
// previous attempt carried, if any (returned as prev, hadRA), and keeps the
// one the attempt carries for the sender's next.
func (a *analysis) followRetryAfter(at *rundir.Attempt, outcome string) (prev pendingRA, hadRA bool) {
	sk := senderKey{at.Op, at.Sender}
	prev, hadRA = a.pending[sk]
	if hadRA {
		delete(a.pending, sk)
		if outcome != rundir.OutcomeBudget {
			a.checkWait(at, prev)
		}
	}
	if at.RetryAfterMS > 0 {
		p := pendingRA{ra: at.RetryAfterMS, attempt: at.Attempt}
		if !at.End.IsZero() {
			p.end = at.End.UnixNano()
		}
		a.pending[sk] = p
	}
	return prev, hadRA
}

// checkWait counts an attempt that followed a Retry-After, and records it
// as early when its recorded delay is short of the Retry-After and the
// clock does not show the wait either (a reconcile after the chaos window
// may record a small delay after a long gap).
func (a *analysis) checkWait(at *rundir.Attempt, prev pendingRA) {
	a.raChecked++
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

// addDelay keeps a retry's delay for the scatter plot and its jitter
// sample: backoff retries per attempt number, Retry-After retries (spread
// above the Retry-After prev, when hadRA) together.
func (a *analysis) addDelay(at *rundir.Attempt, outcome string, prev pendingRA, hadRA bool) {
	if at.Attempt < 2 || outcome == rundir.OutcomeBudget {
		return
	}
	attempt := uint16(min(at.Attempt, 65535))
	switch at.DelayReason {
	case rundir.ReasonBackoff:
		a.delays = append(a.delays, delayPoint{attempt: attempt, reason: 0, delay: float32(at.DelayMS)})
		if at.CapMS > 0 {
			a.sample(jitterKey{rundir.ReasonBackoff, at.Attempt}, at.DelayMS/at.CapMS, at.CapMS)
		}
	case rundir.ReasonRetryAfter:
		a.delays = append(a.delays, delayPoint{attempt: attempt, reason: 1, delay: float32(at.DelayMS)})
		if at.CapMS > 0 && hadRA {
			a.sample(jitterKey{rundir.ReasonRetryAfter, 0}, (at.DelayMS-prev.ra)/at.CapMS, at.CapMS)
		}
	default:
		a.delays = append(a.delays, delayPoint{attempt: attempt, reason: 2, delay: float32(at.DelayMS)})
	}
}

// reuseOutcome reads a reuse's answer against the run's declared reuse
// statuses: a declared status is the correct rejection (mismatch), another
// 4xx is not, whatever label the client gave it.
func (a *analysis) reuseOutcome(at *rundir.Attempt, outcome string) string {
	if at.Status < 400 || at.Status >= 500 {
		return outcome
	}
	for _, s := range a.reuseStatuses {
		if at.Status == s {
			return rundir.OutcomeMismatch
		}
	}
	switch {
	case at.Status == 409:
		return rundir.OutcomeConflict
	case at.Status == 429:
		return rundir.OutcomeUnavailable
	}
	return rundir.OutcomeRejected
}

// trackConflict follows an op's 409s in time, for no-key-stuck-in-flight:
// whether the last answer the endpoint gave (an attempt with a status: not
// one refused, timed out or never sent) was a 409.
func (a *analysis) trackConflict(o *opState, at *rundir.Attempt, outcome string) {
	if outcome == rundir.OutcomeBudget || at.Status == 0 {
		return
	}
	end := at.End
	if end.IsZero() {
		end = at.Start
	}
	if end.IsZero() {
		return
	}
	e := end.UnixNano()
	if outcome == rundir.OutcomeConflict {
		if o.conflict == nil {
			o.conflict = &conflictSpan{first: e, last: e}
		}
		o.conflict.first, o.conflict.last = min(o.conflict.first, e), max(o.conflict.last, e)
	}
	if e >= o.lastEnd {
		o.lastEnd = e
		o.endedInConflict = outcome == rundir.OutcomeConflict
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
// label for 2xx answers, except one whose body was cut off (the client
// labels it timeout or network): that answer is indeterminate.
func internOutcome(at *rundir.Attempt) string {
	if at.Status >= 200 && at.Status < 300 {
		if at.Outcome == rundir.OutcomeTimeout || at.Outcome == rundir.OutcomeNetwork {
			return at.Outcome
		}
		if at.Replayed || at.Outcome == rundir.OutcomeReplay {
			return rundir.OutcomeReplay
		}
		return rundir.OutcomeNew
	}
	switch at.Outcome {
	case rundir.OutcomeNew:
		return rundir.OutcomeNew
	case rundir.OutcomeReplay:
		return rundir.OutcomeReplay
	case rundir.OutcomeConflict:
		return rundir.OutcomeConflict
	case rundir.OutcomeMismatch:
		return rundir.OutcomeMismatch
	case rundir.OutcomeUnavailable:
		return rundir.OutcomeUnavailable
	case rundir.OutcomeRejected:
		return rundir.OutcomeRejected
	case rundir.OutcomeServerError:
		return rundir.OutcomeServerError
	case rundir.OutcomeTimeout:
		return rundir.OutcomeTimeout
	case rundir.OutcomeNetwork:
		return rundir.OutcomeNetwork
	case rundir.OutcomeBudget:
		return rundir.OutcomeBudget
	case rundir.OutcomeDropped:
		return rundir.OutcomeDropped
	}
	switch {
	case at.Status == 409:
		return rundir.OutcomeConflict
	case at.Status == 422:
		return rundir.OutcomeMismatch
	case at.Status == 429 || at.Status == 503:
		return rundir.OutcomeUnavailable
	case at.Status >= 400 && at.Status < 500:
		return rundir.OutcomeRejected
	case at.Status >= 500:
		return rundir.OutcomeServerError
	}
	return rundir.OutcomeNetwork
}

// op returns the state of a planned op id, or nil.
func (a *analysis) op(id int) *opState {
	if i, ok := a.lookup(id); ok {
		return &a.ops[i]
	}
	return nil
}

// lookup is the position in ops of op id.
func (a *analysis) lookup(id int) (int32, bool) {
	if id >= 0 && id < len(a.byID) && a.byID[id] > 0 {
		return a.byID[id] - 1, true
	}
	i, ok := a.index[id]
	return i, ok
}

// setIndex files op id at position i of ops: a plan numbers its ops from
// 0 or 1 on, so their positions are kept in a slice by id (a map of a
// million entries is ten times its size); ids far past it go to the map.
func (a *analysis) setIndex(id int, i int32) {
	if id < 0 || id >= 1<<26 || id > 2*len(a.byID)+1024 {
		a.index[id] = i
		return
	}
	for len(a.byID) <= id {
		a.byID = append(a.byID, 0)
	}
	a.byID[id] = i + 1
}

// sortedJitterKeys orders backoff groups by attempt, then retry-after.
func (a *analysis) sortedJitterKeys() []jitterKey {
	keys := make([]jitterKey, 0, len(a.jitter))
	for k := range a.jitter {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].reason != keys[j].reason {
			return keys[i].reason == rundir.ReasonBackoff
		}
		return keys[i].attempt < keys[j].attempt
	})
	return keys
}
