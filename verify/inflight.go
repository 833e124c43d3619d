package verify

import (
	"fmt"
	"strings"
	"time"

	"github.com/paytest/paytest/internal/rundir"
)

// checkStuck: no key was still answered "in progress" (409) when the run
// ended. An op that never got a definite answer and whose last answer was a
// 409, after attack re-drove it up to its reconcile deadline, has a key the
// endpoint will not let go of: its customer can never pay. The counter-
// examples say how long each key was seen stuck, from its first 409 to its
// last.
func (a *analysis) checkStuck(opts Options) Check {
	const name = CheckNoKeyStuck
	cx := cxList{max: opts.MaxCounterexamples}
	answered409 := 0
	seen := map[string]bool{}
	var longest time.Duration
	for i := range a.ops {
		o := &a.ops[i]
		if o.kind != kindCharge || o.conflicts == 0 {
			continue
		}
		answered409++
		k := mkey(o.merchant, o.key)
		if !o.stuck() || seen[k] {
			continue
		}
		seen[k] = true
		first, last := o.conflictTimes()
		stuck := time.Duration(last - first)
		longest = max(longest, stuck)
		cx.add(Counterexample{Op: o.op, Key: o.key, Merchant: o.merchant, Attempts: int(o.attempts),
			Why: fmt.Sprintf("still in progress at the end of the run: answered 409 for %s (from %s to %s; %s), never a definite answer",
				stuck.Round(time.Millisecond), time.Unix(0, first).UTC().Format("15:04:05.000"),
				time.Unix(0, last).UTC().Format("15:04:05.000"), o.describe())})
	}
	if answered409 == 0 {
		c := nothing(name, "0 keys answered 409", "no key was answered in progress (409)")
		c.Evidence = evHistory
		return c
	}
	figure := fmt.Sprintf("%d of %d keys answered 409 stayed in flight", cx.total, answered409)
	var c Check
	switch {
	case cx.total > 0:
		c = failed(name, figure, fmt.Sprintf("%d keys were still answered 409 when the run ended (the longest for %s): the endpoint never released them, so their charges can never be made", cx.total, longest.Round(time.Millisecond)), cx)
	case a.cutInConflict > 0:
		c = inconclusive(name, fmt.Sprintf("%s, %d unknown", figure, a.cutInConflict),
			fmt.Sprintf("%d keys were last answered 409 by a shard that did not finish: whether they got a definite answer is not known", a.cutInConflict))
	default:
		c = held(name, figure, "every key answered 409 later got a definite answer")
	}
	c.Evidence = evHistory
	return c
}

// stuck is true for an op that never got a definite answer and whose last
// answer was a 409: its key was still in flight when the run ended.
func (o *opState) stuck() bool {
	return o.conflicts > 0 && o.ok() == 0 && o.mismatches == 0 && o.rejected == 0 && o.endedInConflict
}

// stuckOps counts the charge ops whose key stayed in flight.
func (a *analysis) stuckOps() int {
	n := 0
	for i := range a.ops {
		if o := &a.ops[i]; o.kind == kindCharge && o.stuck() {
			n++
		}
	}
	return n
}

// checkFaultsFired: every fault of the run fired. A fault that failed while
// running (faults.jsonl action "error": a kill whose command failed, a
// restart that did not come back, latency on an unknown proxy), or a crash
// point armed that the component never reached ("arm" without a later
// "inject"), leaves the run short of what its profile promised, so the
// verdict is withheld (inconclusive) rather than read "held" for a scenario
// that did not run.
func checkFaultsFired(ev *evidence, opts Options) Check {
	const name = CheckFaultsFired
	fired, failedN := 0, 0
	cx := cxList{max: opts.MaxCounterexamples}
	armed := map[string]rundir.Fault{} // fault+target -> its arm record not yet fired
	for _, f := range ev.faults {
		what := strings.TrimSpace(f.Fault + " " + f.Target)
		switch {
		case f.Action == rundir.ActionError:
			failedN++
			cx.add(Counterexample{Op: -1, Why: fmt.Sprintf("%s failed at %s: %s", what, clock(f.Time), f.Detail)})
		case f.Action == rundir.ActionArm:
			armed[what] = f
		case f.Injected() || f.Action == rundir.ActionStart:
			fired++
			delete(armed, what)
		}
	}
	for _, what := range sortedKeys(armed) {
		failedN++
		cx.add(Counterexample{Op: -1, Why: fmt.Sprintf("%s armed at %s (%s) but never fired", what, clock(armed[what].Time), armed[what].Detail)})
	}
	if fired == 0 && failedN == 0 {
		c := nothing(name, "0 faults", "no fault in "+evFaults)
		c.Evidence = evFaults
		return c
	}
	figure := fmt.Sprintf("%d fired, %d failed or never fired", fired, failedN)
	c := held(name, figure, "")
	if failedN > 0 {
		whys := make([]string, len(cx.list))
		for i, x := range cx.list {
			whys[i] = x.Why
		}
		c = inconclusive(name, figure, "the run did not do what its profile said: "+strings.Join(whys, "; "))
		c.Counterexamples, c.CounterexamplesTotal = cx.list, cx.total
	}
	c.Evidence = evFaults
	return c
}

func clock(t time.Time) string { return t.UTC().Format("15:04:05.000") }
