package verify

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Evidence names, for Check.Evidence.
const (
	evLedger      = "ledger"
	evIDs         = "client history: resource ids"
	evHistory     = "client history"
	evMetrics     = "metrics"
	evFaults      = "faults.jsonl"
	evEvents      = "ledger: events applied"
	evPlanHistory = "plan and client history"
)

// opEffects is the ledger's effects for one op: its key's, unless the
// ledger has amounts; then a reuse whose amount differs from its original's
// owns the effects at its amount, and the original op the key's others
// (so a double charge of the original is not blamed on its reuse, nor a
// charged reuse on its original). attributed says the figure is the op's
// own rather than its key's.
func (a *analysis) opEffects(ev *evidence, o *opState) (e int, attributed bool) {
	e = ev.ledgerEffects(o.merchant, o.key)
	if !ev.hasAmounts {
		return a.lessChargedReuses(o, e), false
	}
	switch o.kind {
	case kindReuse:
		orig := a.op(int(o.reuseOf))
		if orig == nil || orig.amount == o.amount {
			return e, false
		}
		return ev.ledgerAmount(o.merchant, o.key, o.amount), true
	case kindCharge:
		seen := map[int64]bool{o.amount: true}
		for _, ri := range a.reuses[o.op] {
			r := &a.ops[ri]
			if r.key != o.key || seen[r.amount] {
				continue
			}
			seen[r.amount] = true
			e -= ev.ledgerAmount(r.merchant, r.key, r.amount)
		}
		return e, true
	}
	return e, false
}

// lessChargedReuses takes from a per-key count the effects of the op's
// reuses that the client saw charged (a 2xx with a charge of their own),
// while more than one effect remains: those are the reuses' to answer for
// (key-reuse-422), not the original's.
func (a *analysis) lessChargedReuses(o *opState, e int) int {
	if o.kind != kindCharge {
		return e
	}
	for _, ri := range a.reuses[o.op] {
		r := &a.ops[ri]
		if charged, _ := a.reuseCharged(r); r.key == o.key && r.ok() > 0 && charged && e > 1 {
			e--
		}
	}
	return e
}

// unsureReuses lists the reuse ops of o's key whose effects a per-key
// ledger cannot tell from o's: those with attempts whose answers were lost
// (a reuse charged that way shows no charge to the client). A ledger with
// amounts tells them apart, so there are none.
func (a *analysis) unsureReuses(ev *evidence, o *opState) []int {
	if ev.hasAmounts || o.kind != kindCharge {
		return nil
	}
	var out []int
	for _, ri := range a.reuses[o.op] {
		if r := &a.ops[ri]; r.key == o.key && r.indeterminate > 0 {
			out = append(out, r.op)
		}
	}
	return out
}

// perAmountHint is what a per-key ledger lacks to attribute a key's effects
// to an op or its reuse.
const perAmountHint = "a two-column ledger counts per key; a ledger query returning merchant, key, amount, count attributes them per amount"

// appliedTimes says how often the ledger applied o: "applied e times", or,
// when a reuse of its key may own some of the key's effects, that the key
// holds them for o or that reuse.
func (a *analysis) appliedTimes(ev *evidence, o *opState, e int) string {
	unsure := a.unsureReuses(ev, o)
	if len(unsure) == 0 {
		return fmt.Sprintf("applied %d times", e)
	}
	return fmt.Sprintf("its key holds %s: op %d or its reuse op %s (%s)", plural(e, "effect"), o.op, intList(unsure, 3), perAmountHint)
}

// repeatNote says, for an op applied more than once, whether the consumer
// applied one event twice (its fault: repeat is true) or the events were
// distinct (the charge service made several charges), when events.jsonl
// can tell.
func repeatNote(ev *evidence, o *opState) (note string, repeat bool) {
	if !ev.hasEvents {
		return "", false
	}
	if reps := ev.repeats(o.merchant, o.key); len(reps) > 0 {
		return fmt.Sprintf("; event %s was applied %d times: the consumer applied a repeated event, not a second charge", reps[0].Event, reps[0].Applied), true
	}
	const second = "; no event of this key was applied twice: the charge service made more than one charge"
	if len(ev.eventRepeats) == 0 {
		return second, false
	}
	for _, r := range ev.eventRepeats {
		if r.Key != "" {
			return second, false
		}
	}
	return "", false // repeats without keys: which op they were cannot be told
}

// clientCharges describes the charges the client saw for an op.
func (o *opState) clientCharges() string {
	switch {
	case o.charges() == 0:
		return "the client saw no charge"
	case o.charges() == 1:
		return fmt.Sprintf("the client saw 1 charge in %d 2xx answers", o.ok())
	case len(o.chargeIDs()) > 1 && o.anonNews == 0:
		shown := make([]string, 0, 4)
		for _, id := range firstN(o.chargeIDs(), 3) {
			shown = append(shown, showID(id))
		}
		return fmt.Sprintf("the client got %d 2xx answers with %d distinct resource ids or bodies (%s)", o.ok(), len(o.chargeIDs()), strings.Join(shown, ", "))
	case o.anonNews > 0 && len(o.chargeIDs()) == 0:
		return fmt.Sprintf("the client got %d `new` answers (no resource id or body digest to tell them apart)", o.news)
	}
	return fmt.Sprintf("the client got %d `new` answers, %d of them distinct charges", o.news, o.charges())
}

func firstN(xs []string, n int) []string {
	return xs[:min(n, len(xs))]
}

// checkExactlyOnce is Jepsen's model per operation: a 2xx the client saw
// means applied exactly once; only definite rejections (409, 422, other
// 4xx, never sent) mean applied zero times; anything else (timeouts,
// network errors, 5xx, 429/503, a 2xx whose body was cut off) is
// indeterminate: at most once. Nothing twice. The ledger, where there is
// one, is the authority (per op where its amounts tell a reuse apart, else
// per key); without it, 2xx answers that carry the same resource id or body
// are one charge, and distinct ones fail the op.
func (a *analysis) checkExactlyOnce(ev *evidence, opts Options) Check {
	const name = CheckExactlyOncePerOp
	cx := cxList{max: opts.MaxCounterexamples}
	var nOK, nFail, nIndet, twice, lost, repeats, overruled, untold int
	for i := range a.ops {
		o := &a.ops[i]
		if o.kind != kindCharge {
			continue
		}
		switch {
		case o.ok() > 0:
			nOK++
		case o.definite():
			nFail++
		default:
			nIndet++
		}
		j := a.judgeOnce(ev, o)
		twice, lost, repeats = twice+b2i(j.twice), lost+b2i(j.lost), repeats+b2i(j.repeat)
		overruled += b2i(j.overruled)
		untold += b2i(j.untold)
		if j.why != "" {
			cx.add(Counterexample{Op: o.op, Key: o.key, Merchant: o.merchant, Attempts: int(o.attempts), LedgerEffects: j.effects, Why: j.why})
		}
	}
	if !a.planned && ev.hasLedger {
		return a.exactlyOnceLedgerOnly(ev, opts)
	}
	total := nOK + nFail + nIndet
	unplanned := 0
	for i := range a.ops {
		if a.ops[i].kind == kindUnplanned {
			unplanned++
		}
	}
	note := ""
	if a.planned && unplanned > 0 {
		note = fmt.Sprintf("; %d ops in history.jsonl are not in the plan (not judged)", unplanned)
	}
	if overruled > 0 {
		note += fmt.Sprintf("; %d ops got 2xx answers with distinct resource ids or bodies but hold one ledger effect each (the ledger decides)", overruled)
	}
	if untold > 0 {
		note += "; " + untoldNote(untold, "ops")
	}
	evidence := evIDs
	if ev.hasLedger {
		evidence = evLedger
	}
	figure := fmt.Sprintf("%d of %d ops wrong (%d acknowledged: exactly once; %d failed: zero times; %d indeterminate: at most once)", cx.total, total, nOK, nFail, nIndet)
	if cx.total > 0 {
		detail := fmt.Sprintf("%d applied more than once, %d acknowledged but lost", twice, lost)
		if repeats > 0 {
			detail += fmt.Sprintf("; %d of them by the consumer applying a repeated event (its inbox let a redelivery or a republish through)", repeats)
		}
		c := failed(name, figure, detail+note, cx)
		c.Evidence = evidence
		return c
	}
	if !a.planned {
		return inconclusive(name, "0 ops", "no plan.jsonl and no ledger: nothing to judge operations by")
	}
	if !ev.hasLedger {
		figure = fmt.Sprintf("%d ops: %d acknowledged, %d failed, %d indeterminate; ledger effects unknown", total, nOK, nFail, nIndet)
		c := inconclusive(name, figure, "no ledger evidence (no --database-url): per-operation effects cannot be counted; only the client's view was judged (no op got two distinct charges)"+note)
		c.Evidence = evidence
		return c
	}
	if total == 0 {
		return nothing(name, "0 ops", "the plan has no charge operations"+note)
	}
	c := held(name, figure, strings.TrimPrefix(note, "; "))
	c.Evidence = evidence
	return c
}

// onceJudgement is one op's judgement by exactly-once-per-op.
type onceJudgement struct {
	why                 string // empty when the op is right
	effects             *int   // the ledger's, nil without a ledger
	twice, lost, repeat bool
	// overruled: the client saw distinct charges the ledger holds once.
	overruled bool
	// untold: without a ledger, 2xx answers the client cannot tell apart.
	untold bool
}

// untoldNote says that n ops (or races) got 2xx answers the client cannot
// tell apart, and what would tell.
func untoldNote(n int, what string) string {
	return fmt.Sprintf("%d %s got 2xx answers that cannot be told apart: set --id-field or give a ledger", n, what)
}

// judgeOnce judges one charge op: by its ledger effects where there is a
// ledger, else by the distinct resource ids the client saw (answers it
// cannot tell apart are a hint: the op is not failed on them).
func (a *analysis) judgeOnce(ev *evidence, o *opState) onceJudgement {
	var j onceJudgement
	if !ev.hasLedger {
		switch {
		case o.resourceIDs() > 1:
			j.twice = true
			j.why = fmt.Sprintf("%s: applied at least %d times", o.clientCharges(), o.resourceIDs())
		case o.untold():
			j.untold = true
		}
		return j
	}
	e, _ := a.opEffects(ev, o)
	j.effects = &e
	j.overruled = e == 1 && o.charges() > 1
	switch {
	case o.ok() > 0 && e == 0:
		j.lost, j.why = true, "acknowledged (2xx) but not in the ledger: lost"
	case o.ok() > 0 && e > 1:
		j.twice, j.why = true, "acknowledged (2xx) and "+a.appliedTimes(ev, o, e)
	case o.definite() && e > 0:
		j.twice, j.why = e > 1, fmt.Sprintf("definitely failed (%s) but %s", o.describe(), a.appliedTimes(ev, o, e))
	case o.ok() == 0 && !o.definite() && e > 1:
		j.twice, j.why = true, fmt.Sprintf("indeterminate (%s) and %s", o.describe(), a.appliedTimes(ev, o, e))
	}
	if e > 1 && j.why != "" {
		note, repeat := repeatNote(ev, o)
		j.why += note
		j.repeat = repeat
	}
	return j
}

// exactlyOnceLedgerOnly judges a live system attack did not drive: each
// ledger key at most once.
func (a *analysis) exactlyOnceLedgerOnly(ev *evidence, opts Options) Check {
	const name = CheckExactlyOncePerOp
	cx := cxList{max: opts.MaxCounterexamples}
	keys := make([]string, 0)
	for k, e := range ev.ledger {
		if e > 1 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		e := ev.ledger[k]
		m, key, _ := strings.Cut(k, "\x00")
		cx.add(Counterexample{Op: -1, Merchant: m, Key: key, LedgerEffects: &e, Why: fmt.Sprintf("applied %d times", e)})
	}
	figure := fmt.Sprintf("%d of %d keys applied more than once", cx.total, len(ev.ledger))
	var c Check
	if cx.total > 0 {
		c = failed(name, figure, "no plan.jsonl: judged from the ledger alone", cx)
	} else {
		c = held(name, figure, "no plan.jsonl: judged from the ledger alone (each key at most once)")
	}
	c.Evidence = evLedger
	return c
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// describe summarises the client's view of an op for counterexamples.
func (o *opState) describe() string {
	if o.attempts == 0 {
		return "never sent"
	}
	var parts []string
	add := func(n int32, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(o.news, "new")
	add(o.replays, "replay")
	add(o.conflicts, "409")
	add(o.mismatches, "mismatch")
	add(o.rejected, "rejected")
	add(o.budget, "budget")
	add(o.indeterminate, "indeterminate")
	return strings.Join(parts, ", ")
}

// checkRaces: each race op has exactly one winner. With a ledger, the
// ledger's effects for the op are the winners; without one, the distinct
// charges (resource ids, else bodies) among the senders' 2xx answers. The
// other senders' answers are 409s, replays (marked or not) or lost. No
// winner at all is fine only when an answer may have been lost.
func (a *analysis) checkRaces(ev *evidence, opts Options) Check {
	const name = CheckRaceSingleWinner
	if a.nRace == 0 {
		return nothing(name, "0 races", "the plan has no same-key races")
	}
	cx := cxList{max: opts.MaxCounterexamples}
	var t raceTally
	for i := range a.ops {
		o := &a.ops[i]
		if o.kind != kindCharge || !o.race {
			continue
		}
		if why, effects := a.judgeRace(ev, o, &t); why != "" {
			cx.add(Counterexample{Op: o.op, Key: o.key, Merchant: o.merchant, Attempts: int(o.attempts), LedgerEffects: effects, Why: why})
		}
	}
	figure := fmt.Sprintf("%d of %d races with a single winner", a.nRace-cx.total-t.untold, a.nRace)
	if t.untold > 0 {
		figure += fmt.Sprintf(", %d that cannot be told", t.untold)
	}
	detail := t.detail(ev.hasLedger)
	var c Check
	switch {
	case cx.total > 0:
		c = failed(name, figure, detail, cx)
	case t.untold > 0:
		c = inconclusive(name, figure, detail)
	default:
		c = held(name, figure, detail)
	}
	c.Evidence = evIDs
	if ev.hasLedger {
		c.Evidence = evLedger
	}
	return c
}

// raceTally counts the races by what their winners were.
type raceTally struct {
	single, multi, hidden int
	// lost: acknowledged but not in the ledger; untold: answers the client
	// cannot tell apart; repeated: events of race keys applied again.
	lost, untold, repeated int
}

// judgeRace counts the race op o in t and says why it is a counterexample
// ("" when it is not), with the ledger's effects for it when there is a
// ledger.
func (a *analysis) judgeRace(ev *evidence, o *opState, t *raceTally) (why string, effects *int) {
	winners, effects, told := a.raceWinners(ev, o, t)
	if !told {
		t.untold++
		return "", nil
	}
	t.multi += b2i(winners > 1)
	switch {
	case winners > 1 && ev.hasLedger && len(a.unsureReuses(ev, o)) > 0:
		why = fmt.Sprintf("the ledger holds %d effects for the race's key: more than one winner, or its reuse op %s was charged (%s; %s)", winners, intList(a.unsureReuses(ev, o), 3), o.clientCharges(), perAmountHint)
	case winners > 1 && ev.hasLedger:
		why = fmt.Sprintf("the ledger holds %d effects for the race: more than one winner (%s)", winners, o.clientCharges())
	case winners > 1:
		why = fmt.Sprintf("%s: more than one winner", o.clientCharges())
	case o.mismatches+o.rejected > 0:
		why = fmt.Sprintf("senders got answers other than 409 or replay (%s)", o.describe())
	case winners == 1:
		t.single++
	case ev.hasLedger && o.ok() > 0:
		t.lost++ // acknowledged, not applied: exactly-once-per-op's to report
	case o.ok() == 0 && o.indeterminate == 0:
		why = fmt.Sprintf("no sender won (%s)", o.describe())
	default:
		t.hidden++
	}
	return why, effects
}

// raceWinners counts the race op's winners: its effects in the ledger, less
// the events the consumer applied again (exactly-once-per-op blames the
// consumer for those, not the race); else the distinct resource ids among
// the 2xx answers, else the distinct charges. told is false when the
// client's answers cannot tell its charges apart.
func (a *analysis) raceWinners(ev *evidence, o *opState, t *raceTally) (winners int, effects *int, told bool) {
	winners = o.charges()
	switch {
	case ev.hasLedger:
		e, _ := a.opEffects(ev, o)
		effects, winners = &e, e
		for _, r := range ev.repeats(o.merchant, o.key) {
			winners -= int(r.Applied) - 1
			t.repeated++
		}
	case o.resourceIDs() > 1:
		winners = o.resourceIDs()
	case o.untold():
		return 0, nil, false
	}
	return winners, effects, true
}

// detail is race-single-winner's detail: how the winners were counted and
// what each count was.
func (t raceTally) detail(hasLedger bool) string {
	if !hasLedger {
		detail := fmt.Sprintf("winners counted by distinct resource ids (else identical bodies) among the 2xx answers: %d with one, %d with more, %d whose winner's answer was lost (timeouts only)", t.single, t.multi, t.hidden)
		if t.untold > 0 {
			detail += "; " + untoldNote(t.untold, "races")
		}
		return detail
	}
	detail := fmt.Sprintf("winners counted in the ledger: %d with one effect, %d with more, %d with none whose answers were lost", t.single, t.multi, t.hidden)
	if t.lost > 0 {
		detail += fmt.Sprintf(", %d acknowledged but not in the ledger (see %s)", t.lost, CheckExactlyOncePerOp)
	}
	if t.repeated > 0 {
		detail += fmt.Sprintf("; %d events of race keys the consumer applied again are not counted as winners (see %s)", t.repeated, CheckExactlyOncePerOp)
	}
	return detail
}

// statusList renders the declared reuse statuses: "422", "400 or 422".
func statusList(xs []int) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.Itoa(x)
	}
	return strings.Join(parts, " or ")
}

// reuseCharged says whether a reuse's 2xx answers show a charge of their
// own: a resource id (or body) none of the original op's answers carried,
// or an answer the client cannot identify.
func (a *analysis) reuseCharged(o *opState) (charged bool, how string) {
	if o.anonNews > 0 {
		return true, "a 2xx the client cannot tell from a new charge (no resource id or body digest)"
	}
	orig := a.op(int(o.reuseOf))
	for _, id := range o.chargeIDs() {
		known := false
		if orig != nil {
			for _, x := range orig.okIDs() {
				known = known || x == id
			}
		}
		switch {
		case !known && strings.HasPrefix(id, bodyPrefix):
			return true, "a 2xx the client cannot tell from a new charge (its body differs from the original op's answers and has no resource id at --id-field)"
		case !known:
			return true, "a 2xx with a new charge (" + showID(id) + ")"
		}
	}
	return false, "a 2xx replaying the original op's charge (the changed body was ignored)"
}

// replayedCharge names, for a reuse answered with its original's charge
// replayed, that charge (" ch_x", " body <digest>"), or "" when the
// answer carried no identity.
func (a *analysis) replayedCharge(o *opState) string {
	ids := o.chargeIDs()
	if len(ids) == 0 {
		ids = o.okIDs()
	}
	if len(ids) == 0 {
		return ""
	}
	return " " + ids[0]
}

// How a reuse op was answered, for key-reuse-422.
type reuseVerdict int

const (
	reuseUnanswered        reuseVerdict = iota // no definite answer (or its key is stuck)
	reuseRejected                              // a declared rejection status
	reuseRejectedOrigExtra                     // rejected; its key's extra effects are the original's
	reuseBroken                                // charged, acknowledged or another status: why says which
)

// judgeReuse judges one reuse op against the declared statuses (want).
func (a *analysis) judgeReuse(ev *evidence, o *opState, want string) (why string, effects *int, v reuseVerdict) {
	e, attributed := 0, false
	if ev.hasLedger {
		e, attributed = a.opEffects(ev, o)
		effects = &e
	}
	orig := a.op(int(o.reuseOf))
	origMax := 1
	if orig != nil && orig.kind == kindCharge && orig.definite() {
		origMax = 0
	}
	charged, how := a.reuseCharged(o)
	switch {
	case o.ok() > 0 && charged:
		return fmt.Sprintf("answered %s, not %s: the changed body was charged", how, want), effects, reuseBroken
	case attributed && e > 0:
		return fmt.Sprintf("the ledger holds %d effects at the reuse's amount %d: the changed body was charged", e, o.amount), effects, reuseBroken
	case o.mismatches == 0 && o.otherStatus == 409 && orig != nil && orig.stuck():
		return "", effects, reuseUnanswered // the key is in flight: see no-key-stuck-in-flight
	case o.mismatches == 0 && o.otherStatus != 0:
		return fmt.Sprintf("got %d, not %s; declare it with --reuse-status %d if that is the endpoint's answer to a changed body", o.otherStatus, want, o.otherStatus), effects, reuseBroken
	case o.ok() > 0:
		return fmt.Sprintf("answered 2xx replaying the original op's charge%s: the changed body was acknowledged, not refused with %s (no second charge)", a.replayedCharge(o), want), effects, reuseBroken
	case ev.hasLedger && !attributed && e > origMax && o.mismatches > 0:
		return "", effects, reuseRejectedOrigExtra
	case o.mismatches > 0:
		return "", effects, reuseRejected
	}
	return "", effects, reuseUnanswered
}

// checkReuse: every changed-body reuse got a declared rejection status
// (422 by default), never a charge of its own. A reuse fails when it was
// charged (a 2xx with a new resource id or body, or ledger effects at its
// own amount), answered another status (the counterexample names it), or
// answered 2xx replaying the original's charge (the changed body was
// acknowledged: no second charge, but not refused).
// Effects of its key beyond the original op's are the original's to answer
// for (exactly-once-per-op) unless the ledger attributes them to the reuse.
func (a *analysis) checkReuse(ev *evidence, opts Options) Check {
	const name = CheckKeyReuse422
	want := statusList(a.reuseStatuses)
	if a.nReuse == 0 {
		return nothing(name, "0 reuses", "the plan reuses no key with a changed body")
	}
	cx := cxList{max: opts.MaxCounterexamples}
	var rejected, unanswered []int
	blamedOrig, unsureOrig := 0, 0
	for i := range a.ops {
		o := &a.ops[i]
		if o.kind != kindReuse {
			continue
		}
		why, effects, v := a.judgeReuse(ev, o, want)
		switch v {
		case reuseBroken:
			cx.add(Counterexample{Op: o.op, Key: o.key, Merchant: o.merchant, Attempts: int(o.attempts), LedgerEffects: effects, Why: why})
		case reuseRejected, reuseRejectedOrigExtra:
			rejected = append(rejected, o.op)
			unsure := v == reuseRejectedOrigExtra && o.indeterminate > 0
			blamedOrig += b2i(v == reuseRejectedOrigExtra && !unsure)
			unsureOrig += b2i(unsure)
		default:
			unanswered = append(unanswered, o.op)
		}
	}
	figure := fmt.Sprintf("%d of %d reuses got %s", len(rejected), a.nReuse, want)
	if ev.hasLedger {
		figure += ", none charged"
		if cx.total > 0 {
			figure = fmt.Sprintf("%d of %d reuses got %s without a charge", len(rejected), a.nReuse, want)
		}
	}
	var notes []string
	if blamedOrig > 0 {
		notes = append(notes, fmt.Sprintf("%d reuses were rejected while their key holds more effects than its original op may: that is the original's (see %s)", blamedOrig, CheckExactlyOncePerOp))
	}
	if unsureOrig > 0 {
		notes = append(notes, fmt.Sprintf("%d reuses were rejected after attempts whose answers were lost while their key holds more effects than its original op may: the original's or theirs (%s; see %s)", unsureOrig, perAmountHint, CheckExactlyOncePerOp))
	}
	evidence := evIDs
	if ev.hasLedger {
		evidence = evLedger
	}
	var c Check
	switch {
	case cx.total > 0:
		c = failed(name, figure, strings.Join(append([]string{fmt.Sprintf("%d reuses broke the rule", cx.total)}, notes...), "; "), cx)
	case len(unanswered) > 0:
		c = inconclusive(name, figure, strings.Join(append([]string{fmt.Sprintf("%d reuses never got a definite answer (ops %s)", len(unanswered), intList(unanswered, 10))}, notes...), "; "))
	case !ev.hasLedger:
		c = inconclusive(name, figure, strings.Join(append([]string{"no ledger evidence: whether a reuse charged cannot be seen"}, notes...), "; "))
	default:
		c = held(name, figure, strings.Join(notes, "; "))
	}
	c.Evidence = evidence
	return c
}

func intList(xs []int, limit int) string {
	var b strings.Builder
	for i, x := range xs {
		if i == limit {
			fmt.Fprintf(&b, ", ... (%d more)", len(xs)-limit)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(x))
	}
	return b.String()
}
