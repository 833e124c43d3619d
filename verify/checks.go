package verify

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/paytest/paytest/internal/rundir"
)

// report computes every check from the streamed state and the evidence.
func (a *analysis) report(ev *evidence, opts Options) *Report {
	r := &Report{
		Faults:        map[string]int{},
		Outcomes:      a.outcomes,
		AttemptsPerOp: map[int]int{},
		Attempts:      a.attempts,
		Races:         a.nRace,
		Reuses:        a.nReuse,
		LedgerKeys:    len(ev.ledger),
		Checks:        []Check{},
		Jitter:        []JitterGroup{},
	}
	a.describeRun(r, ev)
	a.describeEvidence(r, ev)
	a.systemFigures(r, ev, opts)
	r.Checks = append(r.Checks, a.checks(ev, opts, r)...)
	return r
}

// describeRun sets what the run was: its seed, profile, target, duration,
// faults and attempts per op.
func (a *analysis) describeRun(r *Report, ev *evidence) {
	if ev.hasRun {
		r.Seed, r.Profile, r.Target, r.Unsafe, r.NoJitter = ev.run.Seed, ev.run.Profile, ev.run.Target, ev.run.Unsafe, ev.run.NoJitter
		if !ev.run.Started.IsZero() && ev.run.Ended.After(ev.run.Started) {
			r.DurationSeconds = round3(ev.run.Ended.Sub(ev.run.Started).Seconds())
		}
	}
	if r.DurationSeconds == 0 && a.histEnd.After(a.histStart) {
		r.DurationSeconds = round3(a.histEnd.Sub(a.histStart).Seconds())
	}
	r.Faults = faultCounts(ev.faults)
	for i := range a.ops {
		if o := &a.ops[i]; o.kind == kindCharge || o.kind == kindReuse {
			r.AttemptsPerOp[int(o.attempts)]++
		}
	}
}

// describeEvidence sets what the evidence was: its errors, the ledger and
// events it holds, where the counters were read and the declared reuse
// statuses.
func (a *analysis) describeEvidence(r *Report, ev *evidence) {
	if ev.sources != nil {
		r.EvidenceErrors = append(r.EvidenceErrors, ev.sources.Errors...)
	}
	for _, p := range []string{a.partial, ev.partialFaults} {
		if p != "" {
			r.EvidenceErrors = append(r.EvidenceErrors, p)
		}
	}
	if ev.hasLedger {
		r.LedgerSource = rundir.LedgerFile
		r.LedgerEffects = ev.ledgerTotal
		r.LedgerMatch = ev.ledgerMatch
	}
	if ev.hasEvents {
		n := len(ev.eventRepeats)
		r.EventRepeats = &n
	}
	r.CountersFrom, r.CounterResets = ev.countersFrom, ev.resets
	r.ReuseStatuses = a.reuseStatuses
}

// systemFigures sets the figures the system's metrics show: inbox
// duplicates, DLQ, idempotency cache, backlog drains, outage and outbox.
func (a *analysis) systemFigures(r *Report, ev *evidence, opts Options) {
	if v, _, ok := ev.metricSum(MetricInboxDuplicates, promInboxDuplicates); ok {
		r.InboxDuplicates = &v
	}
	if v, _, ok := ev.metricSum(MetricDLQMessages, promDLQ); ok {
		r.DLQMessages = &v
	}
	r.IdempotencyCache = ev.cache
	r.Backlog = ev.backlogFigures()
	r.Outage = a.outage.figures(a.runEnd(ev), ev, opts.MaxRetryAmplification)
	if v, _, ok := ev.metricMax(MetricOutboxPending, "relay", promOutboxPending); ok {
		r.OutboxPending = &v
	}
	if v, _, ok := ev.metricMax(MetricOutboxLag, "relay", promOutboxLag); ok {
		r.OutboxLagSeconds = &v
	}
}

// checks runs every check, in the report's order, on the figures r already
// holds (checkEffects adds the ops and side effects to it, checkJitter the
// jitter groups), and names the evidence of those that do not name their
// own.
func (a *analysis) checks(ev *evidence, opts Options, r *Report) []Check {
	checks := []Check{
		a.checkEffects(ev, opts, r),
		a.checkExactlyOnce(ev, opts),
		a.checkRaces(ev, opts),
		a.checkReuse(ev, opts),
		a.checkRetryAfter(),
		a.checkJitter(opts, r),
		checkRelayCrash(ev, opts),
		checkOutbox(ev),
		checkDLQ(ev),
		checkBacklog(r),
		checkOutage(r.Outage),
		a.checkStuck(opts),
		checkFaultsFired(ev, opts),
	}
	for i := range checks {
		if c := &checks[i]; c.Evidence == "" {
			c.Evidence = defaultEvidence[c.Name]
		}
	}
	return checks
}

// defaultEvidence names what the checks that do not set Check.Evidence
// themselves are judged from.
var defaultEvidence = map[string]string{
	CheckExactlyOncePerOp:   evPlanHistory,
	CheckRaceSingleWinner:   evPlanHistory,
	CheckKeyReuse422:        evPlanHistory,
	CheckRetryAfterHonoured: evHistory,
	CheckFullJitter:         evHistory,
	CheckRelayCrashDeduped:  evFaults,
	CheckOutboxDrained:      evMetrics,
	CheckDLQExact:           evMetrics + ", " + evFaults,
	CheckBacklogPaced:       "metrics timeline, " + evFaults,
	CheckNoRetryStorm:       evHistory + ", " + evFaults,
}

// faultCounts counts each fault: the Counts of its "inject" records when it
// has any (a response eaten, a component killed, poison published), else
// its windows ("start" records: a broker cut, added latency).
func faultCounts(faults []rundir.Fault) map[string]int {
	injects, starts := map[string]int{}, map[string]int{}
	for _, f := range faults {
		switch {
		case f.Injected():
			injects[f.Fault] += max(1, f.Count)
		case f.Action == rundir.ActionStart:
			starts[f.Fault]++
		}
	}
	for k, v := range starts {
		if _, ok := injects[k]; !ok {
			injects[k] = v
		}
	}
	return injects
}

func held(name, figure, detail string) Check {
	return Check{Name: name, Held: true, Status: StatusHeld, Figure: figure, Detail: detail}
}

func nothing(name, figure, detail string) Check {
	return Check{Name: name, Held: true, Status: StatusNothing, Figure: figure, Detail: "nothing to check: " + detail}
}

func inconclusive(name, figure, detail string) Check {
	return Check{Name: name, Status: StatusInconclusive, Figure: figure, Detail: detail}
}

func failed(name, figure, detail string, cx cxList) Check {
	return Check{Name: name, Status: StatusFailed, Figure: figure, Detail: detail, Counterexamples: cx.list, CounterexamplesTotal: cx.total}
}

// checkEffects: side effects from metrics == logical charges == ledger effects.
func (a *analysis) checkEffects(ev *evidence, opts Options, r *Report) Check {
	const name = CheckEffectsEqualOps
	ops := a.logicalOps(ev, opts, r)
	side, src, sideOK := ev.metricSum(ev.sideMetric, promSideEffects)
	sideN := int(math.Round(side))
	if sideOK {
		r.SideEffects, r.SideEffectsSource = sideN, src
	}
	cx := a.unplannedLedger(ev, opts, r)
	figure, missing := ev.effectsFigure(sideN, sideOK, ops)
	if r.OpsSource == "" {
		return inconclusive(name, figure, "no plan.jsonl and no ledger: the number of logical operations is unknown")
	}
	if !sideOK && !ev.hasLedger {
		missing = append(missing, "no evidence of effects at all (neither metrics nor ledger)")
		return inconclusive(name, figure, strings.Join(dedup(missing), "; "))
	}
	f := findings{missing: missing}
	if sideOK {
		status, note, fig := ev.judgeMetrics(sideN, ops, src)
		f.add(status, note)
		figure += fig
	}
	f.bad = append(f.bad, ledgerFaults(ev, ops, r)...)
	if stuck := a.stuckOps(); stuck > 0 && len(f.bad) > 0 {
		f.bad = append(f.bad, fmt.Sprintf("%d charges were never made because their keys stayed in flight (see %s)", stuck, CheckNoKeyStuck))
	}
	var c Check
	switch {
	case len(f.bad) > 0:
		c = failed(name, figure, strings.Join(append(f.bad, f.notes...), "; ")+"; see "+CheckExactlyOncePerOp+" for the operations", cx)
	case len(f.missing) > 0:
		c = inconclusive(name, figure, strings.Join(f.missing, "; "))
	default:
		if r.OpsSource != "plan" {
			f.notes = append(f.notes, "logical operations from "+r.OpsSource+" (no plan.jsonl): a lost charge cannot be seen")
		}
		c = held(name, figure, strings.Join(f.notes, "; "))
	}
	c.Evidence = effectsEvidence(sideOK, ev.hasLedger)
	return c
}

// logicalOps is the number of logical charges the effects are held to,
// from the plan, else --expect-ops, else the ledger's keys; it records the
// number and its source in r (no source: unknown).
func (a *analysis) logicalOps(ev *evidence, opts Options, r *Report) int {
	ops := a.nCharge
	r.OpsSource = "plan"
	switch {
	case a.planned:
	case opts.ExpectedOps > 0:
		ops, r.OpsSource = opts.ExpectedOps, "expected"
	case ev.hasLedger:
		ops, r.OpsSource = len(ev.ledger), "ledger keys"
	default:
		r.OpsSource = ""
	}
	r.Ops = ops
	return ops
}

// effectsFigure is effects-equal-ops's figure ("180 of 200 (ledger 200 of
// 200)") and the evidence the run should have and does not.
func (ev *evidence) effectsFigure(sideN int, sideOK bool, ops int) (figure string, missing []string) {
	var parts []string
	if sideOK {
		parts = append(parts, fmt.Sprintf("%d of %d", sideN, ops))
	} else if ev.expectsMetrics() {
		missing = append(missing, fmt.Sprintf("side effects: no metrics page in %s/ has %s and there is no Prometheus answer for it", rundir.MetricsDir, ev.sideMetric))
	}
	if ev.hasLedger {
		parts = append(parts, fmt.Sprintf("ledger %d of %d", ev.ledgerTotal, ops))
	} else if ev.expectsLedger() {
		missing = append(missing, "ledger: no "+rundir.LedgerFile+" (no --database-url or the query failed)")
	}
	figure = strings.Join(parts, ", ")
	if len(parts) == 2 {
		figure = fmt.Sprintf("%d of %d (ledger %d of %d)", sideN, ops, ev.ledgerTotal, ops)
	}
	if figure == "" {
		figure = fmt.Sprintf("? of %d", ops)
	}
	return figure, missing
}

// findings gathers what fails a check (bad), what leaves it open (missing)
// and what a held one notes.
type findings struct{ bad, missing, notes []string }

// add files a note under the status it was judged with.
func (f *findings) add(status, note string) {
	switch {
	case status == StatusHeld && note != "":
		f.notes = append(f.notes, note)
	case status == StatusHeld:
	case status == StatusInconclusive:
		f.missing = append(f.missing, note)
	default:
		f.bad = append(f.bad, note)
	}
}

// ledgerFaults is what the ledger shows wrong: a total other than ops, or
// effects under keys no operation used.
func ledgerFaults(ev *evidence, ops int, r *Report) []string {
	var bad []string
	if ev.hasLedger && ev.ledgerTotal != ops {
		bad = append(bad, fmt.Sprintf("the ledger holds %d effects for %d logical charges (%s)", ev.ledgerTotal, ops, diffWord(ev.ledgerTotal-ops)))
	}
	if r.UnplannedLedgerEffects > 0 {
		bad = append(bad, fmt.Sprintf("%d ledger effects under keys no operation used", r.UnplannedLedgerEffects))
	}
	return bad
}

// effectsEvidence names what effects-equal-ops was judged from.
func effectsEvidence(sideOK, hasLedger bool) string {
	var evidence []string
	if sideOK {
		evidence = append(evidence, evMetrics)
	}
	if hasLedger {
		evidence = append(evidence, evLedger)
	}
	return strings.Join(evidence, ", ")
}

// unplannedLedger finds the ledger effects under keys no op of the plan
// used (counted in r.UnplannedLedgerEffects).
func (a *analysis) unplannedLedger(ev *evidence, opts Options, r *Report) cxList {
	cx := cxList{max: opts.MaxCounterexamples}
	if !a.planned || !ev.hasLedger {
		return cx
	}
	planned := a.plannedKeys(ev)
	keys := make([]string, 0)
	for k := range ev.ledger {
		if m, key, _ := strings.Cut(k, "\x00"); !planned.has(m, key) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		e := ev.ledger[k]
		r.UnplannedLedgerEffects += e
		m, key, _ := strings.Cut(k, "\x00")
		cx.add(Counterexample{Op: -1, Merchant: m, Key: key, LedgerEffects: &e, Why: "ledger effects under a key no operation of the plan used"})
	}
	return cx
}

// keySet is the plan's keys, for telling a ledger key no op used: each
// planned op's (merchant, key) hash beside the op, sorted by hash, a
// fraction of a map of a million keys; a hash found is confirmed against
// the op's own key.
type keySet struct {
	refs      []keyRef
	ops       []opState
	merchants bool
}

type keyRef struct {
	h uint64
	i int32
}

// plannedKeys is the keys of the plan's ops (charges, reuses and those set
// aside as never sent), matched as the ledger is: by merchant and key, or
// by key alone.
func (a *analysis) plannedKeys(ev *evidence) keySet {
	ks := keySet{ops: a.ops, merchants: ev.ledgerMerchants, refs: make([]keyRef, 0, len(a.ops))}
	for i := range a.ops {
		if o := &a.ops[i]; o.kind == kindCharge || o.kind == kindReuse || o.kind == kindUnsent {
			ks.refs = append(ks.refs, keyRef{h: ks.hash(o.merchant, o.key), i: int32(i)})
		}
	}
	slices.SortFunc(ks.refs, func(x, y keyRef) int { return cmp.Compare(x.h, y.h) })
	return ks
}

// hash is FNV-1a over merchant (when the ledger names merchants), a NUL
// and key.
func (ks keySet) hash(merchant, key string) uint64 {
	h := uint64(14695981039346656037)
	if ks.merchants {
		for i := 0; i < len(merchant); i++ {
			h = (h ^ uint64(merchant[i])) * 1099511628211
		}
	}
	h *= 1099511628211 // the NUL between them: h ^ 0 is h
	for i := 0; i < len(key); i++ {
		h = (h ^ uint64(key[i])) * 1099511628211
	}
	return h
}

// has says whether an op of the plan used (merchant, key).
func (ks keySet) has(merchant, key string) bool {
	h := ks.hash(merchant, key)
	j, _ := slices.BinarySearchFunc(ks.refs, h, func(r keyRef, h uint64) int { return cmp.Compare(r.h, h) })
	for ; j < len(ks.refs) && ks.refs[j].h == h; j++ {
		o := &ks.ops[ks.refs[j].i]
		if o.key == key && (!ks.merchants || o.merchant == merchant) {
			return true
		}
	}
	return false
}

// judgeMetrics judges the side-effect count read from src against the
// logical charges: the status it allows (held: nothing wrong, with a note
// when a reset was summed or excused), the note, and what to add to the
// figure.
func (ev *evidence) judgeMetrics(sideN, ops int, src string) (status, note, figure string) {
	resets := ev.resetsOf(ev.sideMetric)
	if sideN == ops {
		if resets > 0 {
			note = fmt.Sprintf("%s summed across %s", ev.sideMetric, plural(resets, "counter reset"))
		}
		return StatusHeld, note, ""
	}
	status, note = ev.judgeShortfall(sideN, ops)
	switch status {
	case StatusHeld:
		return status, note, fmt.Sprintf("; %d never scraped before %s", ev.ledgerTotal-sideN, ev.restarts())
	case StatusInconclusive:
		return status, note, ""
	}
	return status, fmt.Sprintf("metrics (%s) count %d side effects for %d logical charges (%s)%s", src, sideN, ops, diffWord(sideN-ops), note), ""
}

// restarts names what makes the side-effect count a lower bound: the
// counter resets seen, else the kills of its processes ("" for neither).
func (ev *evidence) restarts() string {
	if n := ev.resetsOf(ev.sideMetric); n > 0 {
		return plural(n, "counter reset")
	}
	if n, page := ev.sideKills(); n > 0 {
		return plural(n, "kill") + " of " + page
	}
	return ""
}

// judgeShortfall judges a side-effect count that differs from the logical
// charges. More effects than charges is a failure. Fewer, after the
// counter was reset or its process killed (whether or not a snapshot saw
// the restart), may be the increments the process made after its last
// scrape, which died with it (a process that crashes soon after a scrape
// can take many): excused (held) when the ledger shows no charge lost (its
// own excess is judged on its own line), inconclusive without a ledger
// (the count is a lower bound). Without a timeline a reset cannot be seen
// at all, and the note says so.
func (ev *evidence) judgeShortfall(sideN, ops int) (status, note string) {
	restarts := ev.restarts()
	short := ops - sideN
	if short <= 0 || restarts == "" {
		if short > 0 && ev.countersFrom == "last page" {
			return StatusFailed, " (counters read from the last page only, without a metrics timeline: a restart's counter reset cannot be seen)"
		}
		return StatusFailed, ""
	}
	across := fmt.Sprintf("metrics count %d of %d side effects summed across %s", sideN, ops, restarts)
	switch {
	case ev.hasLedger && ev.ledgerTotal >= ops:
		return StatusHeld, across + fmt.Sprintf(": the %d short are increments a process made after its last scrape before restarting, which died with it; the ledger holds %d", ev.ledgerTotal-sideN, ev.ledgerTotal)
	case !ev.hasLedger:
		return StatusInconclusive, across + fmt.Sprintf(": after a restart the count is a lower bound (what a process counted after its last scrape died with it), so without a ledger the %d short cannot be told from lost effects", short)
	}
	return StatusFailed, ", summed across " + restarts
}

// plural is "1 thing" or "n things".
func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func diffWord(d int) string {
	switch {
	case d > 0:
		return fmt.Sprintf("%d extra", d)
	case d < 0:
		return fmt.Sprintf("%d lost", -d)
	}
	return "equal"
}

// checkRetryAfter: no sender's attempt came sooner than the Retry-After its
// previous attempt was told (delay_ms >= retry_after_ms).
func (a *analysis) checkRetryAfter() Check {
	const name = CheckRetryAfterHonoured
	if a.raChecked == 0 {
		return nothing(name, "0 retries after a Retry-After", "no response carried Retry-After (or no retry followed one)")
	}
	figure := fmt.Sprintf("%d of %d retries after a Retry-After came early", a.raEarly.total, a.raChecked)
	if a.raEarly.total > 0 {
		return failed(name, figure, "a retry came sooner than the Retry-After it followed", a.raEarly)
	}
	return held(name, figure, "")
}

// checkJitter: per group, the KS statistic of delay/cap against Uniform(0,1)
// and the fullest 10 ms slot against chance. A group fails when KS exceeds
// max(critical value at alpha, ksTolerance), or when its fullest slot holds
// more retries than chance reaches with probability alpha.
func (a *analysis) checkJitter(opts Options, r *Report) Check {
	const name = CheckFullJitter
	var figures []string
	judged, failedGroups, total := 0, 0, 0
	var insufficient []string
	for _, k := range a.sortedJitterKeys() {
		s := a.jitter[k]
		g := JitterGroup{Reason: k.reason, Attempt: k.attempt, N: len(s.u), Hist: make([]int, 10), Alpha: opts.KSAlpha}
		total += g.N
		g.CapMS = round3(s.capSum / float64(len(s.u)))
		label := groupLabel(k)
		for _, u := range s.u {
			g.Hist[min(9, int(u*10))]++
		}
		if g.N < opts.MinJitterSamples {
			g.Insufficient, g.Held = true, true
			insufficient = append(insufficient, fmt.Sprintf("%s: %d", label, g.N))
			r.Jitter = append(r.Jitter, g)
			continue
		}
		judged++
		g.KS = round4(ksUniform(s.u))
		g.KSCritical = round4(ksCritical(g.N, opts.KSAlpha))
		threshold := math.Max(g.KSCritical, ksTolerance)
		g.KSThreshold = threshold
		g.Held = g.KS <= threshold
		slots := int(math.Round(g.CapMS / opts.SlotMS))
		slotFig := fmt.Sprintf("window under 2 slots of %s ms", fmtMS(opts.SlotMS))
		if slots >= 2 {
			g.Slots = slots
			counts := make([]int, slots)
			for _, u := range s.u {
				counts[min(slots-1, int(u*float64(slots)))]++
			}
			for _, c := range counts {
				g.MaxSlot = max(g.MaxSlot, c)
			}
			g.MaxSlotExpected, g.MaxSlotCritical = maxSlotBounds(g.N, slots, opts.KSAlpha)
			if g.MaxSlot >= g.MaxSlotCritical {
				g.Held = false
			}
			slotFig = fmt.Sprintf("fullest %s ms slot %d vs ~%d by chance (p<%g at %d)", fmtMS(opts.SlotMS), g.MaxSlot, g.MaxSlotExpected, opts.KSAlpha, g.MaxSlotCritical)
		}
		if !g.Held {
			failedGroups++
		}
		figures = append(figures, fmt.Sprintf("%s: n=%d KS %.3f (crit %.3f), %s", label, g.N, g.KS, threshold, slotFig))
		r.Jitter = append(r.Jitter, g)
	}
	if len(insufficient) > 0 {
		figures = append(figures, "insufficient samples: "+strings.Join(insufficient, ", "))
	}
	figure := strings.Join(figures, "; ")
	if judged == 0 {
		if total == 0 {
			return nothing(name, "0 retries", "no retry waited a backoff or a Retry-After with a recorded window")
		}
		c := held(name, figure, fmt.Sprintf("insufficient samples: %d retries, fewer than %d in every group", total, opts.MinJitterSamples))
		c.Status = StatusNothing
		return c
	}
	if failedGroups > 0 {
		cx := cxList{max: opts.MaxCounterexamples}
		for _, g := range r.Jitter {
			if !g.Held {
				cx.add(Counterexample{Op: -1, Attempt: g.Attempt, Why: fmt.Sprintf("%s: %d retries synchronised, not spread over [0, %s ms]: KS %.3f, fullest slot %d", groupLabel(jitterKey{g.Reason, g.Attempt}), g.N, fmtMS(g.CapMS), g.KS, g.MaxSlot)})
			}
		}
		return failed(name, figure, fmt.Sprintf("%d of %d groups of retries are not full jitter", failedGroups, judged), cx)
	}
	detail := ""
	if a.outOfRange > 0 {
		detail = fmt.Sprintf("%d delays outside their recorded window (clamped)", a.outOfRange)
	}
	return held(name, figure, detail)
}

func groupLabel(k jitterKey) string {
	if k.reason == rundir.ReasonBackoff {
		return fmt.Sprintf("attempt %d", k.attempt)
	}
	return "after Retry-After"
}

// relayKill reports whether f is the injection of a relay kill.
func relayKill(f rundir.Fault) bool {
	return f.Fault == rundir.FaultKill && strings.Contains(f.Target, "relay") && f.Injected()
}

// checkRelayCrash judges the relay and the consumer alone after relay
// kills: no event was applied twice. Three cases: (a) no repeat reached the
// consumer (the broker's publish dedup absorbed the republish, or the kill
// hit no batch in flight): held, saying which the evidence suggests; (b)
// repeats reached it and its inbox deduped them: held; (c) an event was
// applied more than once (events.jsonl): failed, naming the events. A
// double charge made by the charge service is not this check's: distinct
// events are not repeats.
func checkRelayCrash(ev *evidence, opts Options) Check {
	const name = CheckRelayCrashDeduped
	kills := 0
	for _, f := range ev.faults {
		if relayKill(f) {
			kills += max(1, f.Count)
		}
	}
	if kills == 0 {
		return nothing(name, "0 relay kills", "no relay was killed in this run")
	}
	dup, src, dupOK := ev.metricSum(MetricInboxDuplicates, promInboxDuplicates)
	dupText := "?"
	if dupOK {
		dupText = fmtNum(dup)
	}
	var c Check
	switch {
	case ev.hasEvents && len(ev.eventRepeats) > 0:
		cx := cxList{max: opts.MaxCounterexamples}
		for _, r := range ev.eventRepeats {
			cx.add(Counterexample{Op: -1, Key: r.Key, Merchant: r.Merchant, Why: fmt.Sprintf("event %s applied %d times", r.Event, r.Applied)})
		}
		figure := fmt.Sprintf("%d events applied more than once, %s repeats deduped, for %d relay kills", len(ev.eventRepeats), dupText, kills)
		c = failed(name, figure, "the consumer applied a repeated event again: its inbox did not dedup it", cx)
	case !ev.hasEvents && !dupOK:
		c = inconclusive(name, fmt.Sprintf("? duplicates for %d relay kills", kills), "no "+MetricInboxDuplicates+" in the metrics evidence and no "+rundir.EventsFile)
	case dupOK && dup > 0:
		figure := fmt.Sprintf("%s duplicates deduped for %d relay kills", dupText, kills)
		detail := fmt.Sprintf("repeats reached the consumer and its inbox deduped them (%s)", src)
		if !ev.hasEvents {
			detail += "; no " + rundir.EventsFile + ": an event applied twice despite the inbox would show only in " + CheckExactlyOncePerOp
		} else {
			figure += ", no event applied twice"
		}
		c = held(name, figure, detail)
	case !ev.hasEvents:
		c = inconclusive(name, fmt.Sprintf("0 duplicates deduped for %d relay kills", kills),
			"no repeat reached the inbox, and without "+rundir.EventsFile+" an event applied twice (an inbox that let it through) cannot be ruled out")
	default:
		figure := fmt.Sprintf("no repeat reached the consumer for %d relay kills, no event applied twice", kills)
		c = held(name, figure, noRepeatReason(ev))
	}
	c.Evidence = evEvents
	if !ev.hasEvents {
		c.Evidence = evMetrics
	}
	return c
}

// noRepeatReason says why no repeat reached the consumer after a relay
// kill: the relay's published counter (which counts a republish again)
// against the charges created tells a republish the broker absorbed from a
// kill that hit no batch in flight.
func noRepeatReason(ev *evidence) string {
	pub, _, pok := ev.metricSum(MetricRelayPublished, promRelayPublished)
	created, _, cok := ev.metricSum(MetricChargesCreated, promChargesCreated)
	const either = "no repeat reached the consumer (no inbox duplicate, no event applied twice): the broker's publish dedup absorbed a republish, or the kill hit no batch in flight"
	switch {
	case pok && cok && pub > created:
		return fmt.Sprintf("the relay published %s events for %s charges (at least %s republished), and the broker's publish dedup absorbed them: no repeat reached the consumer", fmtNum(pub), fmtNum(created), fmtNum(pub-created))
	case pok && cok:
		return fmt.Sprintf("%s; the relay's published counter (%s for %s charges) cannot tell which, since a killed relay's last increments are never scraped", either, fmtNum(pub), fmtNum(created))
	}
	return either
}

// checkOutbox: the relay's outbox is empty: pending rows 0 and lag 0.
func checkOutbox(ev *evidence) Check {
	const name = CheckOutboxDrained
	pending, psrc, pok := ev.metricMax(MetricOutboxPending, "relay", promOutboxPending)
	lag, lsrc, lok := ev.metricMax(MetricOutboxLag, "relay", promOutboxLag)
	if !pok && !lok {
		if ev.expectsPage("relay") {
			return inconclusive(name, "?", "the relay page has neither "+MetricOutboxPending+" nor "+MetricOutboxLag)
		}
		return nothing(name, "no outbox", "no page has outbox metrics (a --target run, or no relay)")
	}
	var parts []string
	bad := false
	if pok {
		parts = append(parts, fmt.Sprintf("pending %s", fmtNum(pending)))
		bad = bad || pending != 0
	}
	if lok {
		parts = append(parts, fmt.Sprintf("lag %s s", fmtNum(lag)))
		bad = bad || lag != 0
	}
	figure := strings.Join(parts, ", ")
	srcs := strings.Join(dedup([]string{psrc, lsrc}), ", ")
	if bad {
		return failed(name, figure, "the outbox did not drain ("+srcs+")", cxList{})
	}
	return held(name, figure, "from "+srcs)
}

// checkDLQ: the dead-letter queue holds exactly the poison injected.
func checkDLQ(ev *evidence) Check {
	const name = CheckDLQExact
	poison := 0
	for _, f := range ev.faults {
		if f.Fault == rundir.FaultPoison && f.Injected() {
			poison += max(1, f.Count)
		}
	}
	dlq, src, ok := ev.metricSum(MetricDLQMessages, promDLQ)
	if !ok {
		if poison > 0 {
			return inconclusive(name, fmt.Sprintf("? of %d poison messages", poison), "no "+MetricDLQMessages+" in the metrics evidence")
		}
		return nothing(name, "no DLQ", "no poison injected and no page has "+MetricDLQMessages)
	}
	figure := fmt.Sprintf("%s in the DLQ for %d poison injected", fmtNum(dlq), poison)
	if int(math.Round(dlq)) != poison {
		return failed(name, figure, fmt.Sprintf("%s (%s) differs from the poison injected", MetricDLQMessages, src), cxList{})
	}
	return held(name, figure, "")
}

func dedup(xs []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, x := range xs {
		if x != "" && !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

func fmtNum(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

func fmtMS(v float64) string { return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64) }

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

func round4(v float64) float64 { return math.Round(v*10000) / 10000 }
