package verify

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/paytest/paytest/attack/history"
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
	if ev.sources != nil {
		r.EvidenceErrors = ev.sources.Errors
	}
	if ev.hasLedger {
		r.LedgerSource = LedgerFile
		r.LedgerEffects = ev.ledgerTotal
	}
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

	effects := a.checkEffects(ev, opts, r)
	r.Checks = append(r.Checks,
		effects,
		a.checkExactlyOnce(ev, opts),
		a.checkRaces(opts),
		a.checkReuse(ev, opts),
		a.checkRetryAfter(),
		a.checkJitter(opts, r),
		checkRelayCrash(ev, effects),
		checkOutbox(ev),
		checkDLQ(ev),
		checkBacklog(r),
		checkOutage(r.Outage),
	)
	return r
}

// injected is true for a fault record that says the fault happened: an
// "inject" (or a record without an action), not its "arm", "start",
// "stop" or "error".
func injected(f history.Fault) bool { return f.Action == "inject" || f.Action == "" }

// faultCounts counts each fault: the Counts of its "inject" records when it
// has any (a response eaten, a component killed, poison published), else
// its windows ("start" records: a broker cut, added latency).
func faultCounts(faults []history.Fault) map[string]int {
	injects, starts := map[string]int{}, map[string]int{}
	for _, f := range faults {
		switch {
		case injected(f):
			injects[f.Fault] += max(1, f.Count)
		case f.Action == "start":
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
	side, src, sideOK := ev.metricSum(ev.sideMetric, promSideEffects)
	sideN := int(math.Round(side))
	if sideOK {
		r.SideEffects, r.SideEffectsSource = sideN, src
	}

	cx := cxList{max: opts.MaxCounterexamples}
	if a.planned && ev.hasLedger {
		planned := make(map[string]bool, len(a.ops))
		for i := range a.ops {
			if o := &a.ops[i]; o.kind == kindCharge || o.kind == kindReuse {
				m := o.merchant
				if !ev.ledgerMerchants {
					m = ""
				}
				planned[mkey(m, o.key)] = true
			}
		}
		keys := make([]string, 0)
		for k := range ev.ledger {
			if !planned[k] {
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
	}

	var parts, missing []string
	if sideOK {
		parts = append(parts, fmt.Sprintf("%d of %d", sideN, ops))
	} else if ev.expectsMetrics() {
		missing = append(missing, fmt.Sprintf("side effects: no metrics page in %s/ has %s and there is no Prometheus answer for it", MetricsDir, ev.sideMetric))
	}
	if ev.hasLedger {
		parts = append(parts, fmt.Sprintf("ledger %d of %d", ev.ledgerTotal, ops))
	} else if ev.expectsLedger() {
		missing = append(missing, "ledger: no "+LedgerFile+" (no --database-url or the query failed)")
	}
	figure := strings.Join(parts, ", ")
	if len(parts) == 2 {
		figure = fmt.Sprintf("%d of %d (ledger %d of %d)", sideN, ops, ev.ledgerTotal, ops)
	}
	if figure == "" {
		figure = fmt.Sprintf("? of %d", ops)
	}
	if r.OpsSource == "" {
		return inconclusive(name, figure, "no plan.jsonl and no ledger: the number of logical operations is unknown")
	}
	if !sideOK && !ev.hasLedger {
		missing = append(missing, "no evidence of effects at all (neither metrics nor ledger)")
		return inconclusive(name, figure, strings.Join(dedup(missing), "; "))
	}
	var bad []string
	if sideOK && sideN != ops {
		bad = append(bad, fmt.Sprintf("metrics (%s) count %d side effects for %d logical charges (%s)", src, sideN, ops, diffWord(sideN-ops)))
	}
	if ev.hasLedger && ev.ledgerTotal != ops {
		bad = append(bad, fmt.Sprintf("the ledger holds %d effects for %d logical charges (%s)", ev.ledgerTotal, ops, diffWord(ev.ledgerTotal-ops)))
	}
	if r.UnplannedLedgerEffects > 0 {
		bad = append(bad, fmt.Sprintf("%d ledger effects under keys no operation used", r.UnplannedLedgerEffects))
	}
	if len(bad) > 0 {
		return failed(name, figure, strings.Join(bad, "; ")+"; see "+CheckExactlyOncePerOp+" for the operations", cx)
	}
	if len(missing) > 0 {
		return inconclusive(name, figure, strings.Join(missing, "; "))
	}
	detail := ""
	if r.OpsSource != "plan" {
		detail = "logical operations from " + r.OpsSource + " (no plan.jsonl): a lost charge cannot be seen"
	}
	return held(name, figure, detail)
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

// checkExactlyOnce is Jepsen's model per operation: a 2xx the client saw
// means applied exactly once; only definite rejections (409, 422, other
// 4xx, never sent) mean applied zero times; anything else (timeouts,
// network errors, 5xx, 429/503) is indeterminate: at most once. Nothing
// twice. The ledger is counted per (merchant, key).
func (a *analysis) checkExactlyOnce(ev *evidence, opts Options) Check {
	const name = CheckExactlyOncePerOp
	cx := cxList{max: opts.MaxCounterexamples}
	var nOK, nFail, nIndet, twice, lost int
	for i := range a.ops {
		o := &a.ops[i]
		if o.kind != kindCharge {
			continue
		}
		var effects *int
		e := 0
		if ev.hasLedger {
			e = ev.ledgerEffects(o.merchant, o.key)
			effects = &e
		}
		var why string
		switch {
		case o.ok() > 0:
			nOK++
		case o.definite():
			nFail++
		default:
			nIndet++
		}
		switch {
		case o.news > 1 && ev.hasLedger:
			twice++
			why = fmt.Sprintf("applied %d times (ledger); the client got %d `new` answers", e, o.news)
		case o.news > 1:
			twice++
			why = fmt.Sprintf("the client got %d `new` answers: applied at least %d times", o.news, o.news)
		case !ev.hasLedger:
		case o.ok() > 0 && e == 0:
			lost++
			why = "acknowledged (2xx) but not in the ledger: lost"
		case o.ok() > 0 && e > 1:
			twice++
			why = fmt.Sprintf("acknowledged (2xx) and applied %d times", e)
		case o.definite() && e > 0:
			twice += b2i(e > 1)
			why = fmt.Sprintf("definitely failed (%s) but applied %d times", o.describe(), e)
		case o.ok() == 0 && !o.definite() && e > 1:
			twice++
			why = fmt.Sprintf("indeterminate (%s) and applied %d times", o.describe(), e)
		}
		if why != "" {
			cx.add(Counterexample{Op: o.op, Key: o.key, Merchant: o.merchant, Attempts: int(o.attempts), LedgerEffects: effects, Why: why})
		}
	}
	if !a.planned && ev.hasLedger {
		keys := make([]string, 0)
		for k, e := range ev.ledger {
			if e > 1 {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			e := ev.ledger[k]
			twice++
			m, key, _ := strings.Cut(k, "\x00")
			cx.add(Counterexample{Op: -1, Merchant: m, Key: key, LedgerEffects: &e, Why: fmt.Sprintf("applied %d times", e)})
		}
		figure := fmt.Sprintf("%d of %d keys applied more than once", twice, len(ev.ledger))
		if cx.total > 0 {
			return failed(name, figure, "no plan.jsonl: judged from the ledger alone", cx)
		}
		return held(name, figure, "no plan.jsonl: judged from the ledger alone (each key at most once)")
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
	figure := fmt.Sprintf("%d of %d ops wrong (%d acknowledged: exactly once; %d failed: zero times; %d indeterminate: at most once)", cx.total, total, nOK, nFail, nIndet)
	if cx.total > 0 {
		return failed(name, figure, fmt.Sprintf("%d applied more than once, %d acknowledged but lost", twice, lost)+note, cx)
	}
	if !a.planned {
		return inconclusive(name, "0 ops", "no plan.jsonl and no ledger: nothing to judge operations by")
	}
	if !ev.hasLedger {
		figure = fmt.Sprintf("%d ops: %d acknowledged, %d failed, %d indeterminate; ledger effects unknown", total, nOK, nFail, nIndet)
		return inconclusive(name, figure, "no ledger evidence (no --database-url): per-operation effects cannot be counted; only the client's view was judged (no op got two `new` answers)")
	}
	if total == 0 {
		return nothing(name, "0 ops", "the plan has no charge operations"+note)
	}
	return held(name, figure, strings.TrimPrefix(note, "; "))
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
	add(o.mismatches, "422")
	add(o.rejected, "rejected")
	add(o.budget, "budget")
	add(o.indeterminate, "indeterminate")
	return strings.Join(parts, ", ")
}

// checkRaces: each race op got exactly one `new` across its senders; the
// other answers were 409 or replays (or were lost and retried). No `new`
// at all is fine only when an answer may have been lost (a replay or an
// indeterminate attempt proves or allows a winner).
func (a *analysis) checkRaces(opts Options) Check {
	const name = CheckRaceSingleWinner
	if a.nRace == 0 {
		return nothing(name, "0 races", "the plan has no same-key races")
	}
	cx := cxList{max: opts.MaxCounterexamples}
	var single, hidden int
	for i := range a.ops {
		o := &a.ops[i]
		if o.kind != kindCharge || !o.race {
			continue
		}
		var why string
		switch {
		case o.news > 1:
			why = fmt.Sprintf("%d senders got `new`: more than one winner", o.news)
		case o.mismatches+o.rejected > 0:
			why = fmt.Sprintf("senders got answers other than 409 or replay (%s)", o.describe())
		case o.news == 0 && o.replays == 0 && o.indeterminate == 0:
			why = fmt.Sprintf("no sender won (%s)", o.describe())
		case o.news == 0:
			hidden++
		default:
			single++
		}
		if why != "" {
			cx.add(Counterexample{Op: o.op, Key: o.key, Merchant: o.merchant, Attempts: int(o.attempts), Why: why})
		}
	}
	figure := fmt.Sprintf("%d of %d races with a single winner", a.nRace-cx.total, a.nRace)
	detail := fmt.Sprintf("%d with one `new` seen, %d whose winner's answer was lost (replays or timeouts only)", single, hidden)
	if cx.total > 0 {
		return failed(name, figure, detail, cx)
	}
	return held(name, figure, detail)
}

// checkReuse: every changed-body reuse got 422, never a 2xx, and its key's
// ledger effects stayed at the original op's (at most 1, and 0 when the
// original definitely failed).
func (a *analysis) checkReuse(ev *evidence, opts Options) Check {
	const name = CheckKeyReuse422
	if a.nReuse == 0 {
		return nothing(name, "0 reuses", "the plan reuses no key with a changed body")
	}
	cx := cxList{max: opts.MaxCounterexamples}
	var got422, unanswered []int
	for i := range a.ops {
		o := &a.ops[i]
		if o.kind != kindReuse {
			continue
		}
		var effects *int
		e := 0
		if ev.hasLedger {
			e = ev.ledgerEffects(o.merchant, o.key)
			effects = &e
		}
		orig := a.op(int(o.reuseOf))
		var why string
		switch {
		case o.ok() > 0:
			why = fmt.Sprintf("a changed body under a used key was answered 2xx (%s), not 422", o.describe())
		case o.rejected > 0 && o.mismatches == 0:
			why = fmt.Sprintf("answered with a rejection other than 422 (%s)", o.describe())
		case ev.hasLedger && e > 1 && o.mismatches > 0:
			why = fmt.Sprintf("the key's ledger effects are %d, not the original op's 1 (the reuse got 422: the original op %d may be the one applied twice, see %s)", e, o.reuseOf, CheckExactlyOncePerOp)
		case ev.hasLedger && e > 1:
			why = fmt.Sprintf("the key's ledger effects are %d, not the original op's 1", e)
		case ev.hasLedger && e == 1 && orig != nil && orig.kind == kindCharge && orig.definite():
			why = fmt.Sprintf("the original op %d definitely failed, yet the key has a ledger effect", orig.op)
		case o.mismatches > 0:
			got422 = append(got422, o.op)
		default:
			unanswered = append(unanswered, o.op)
		}
		if why != "" {
			cx.add(Counterexample{Op: o.op, Key: o.key, Merchant: o.merchant, Attempts: int(o.attempts), LedgerEffects: effects, Why: why})
		}
	}
	figure := fmt.Sprintf("%d of %d reuses got 422", len(got422), a.nReuse)
	if ev.hasLedger {
		figure += ", none charged"
		if cx.total > 0 {
			figure = fmt.Sprintf("%d of %d reuses got 422 without a charge", len(got422), a.nReuse)
		}
	}
	if cx.total > 0 {
		return failed(name, figure, fmt.Sprintf("%d reuses broke the rule", cx.total), cx)
	}
	if len(unanswered) > 0 {
		return inconclusive(name, figure, fmt.Sprintf("%d reuses never got a definite answer (ops %s)", len(unanswered), intList(unanswered, 10)))
	}
	if !ev.hasLedger {
		return inconclusive(name, figure, "no ledger evidence: whether a reuse charged cannot be seen")
	}
	return held(name, figure, "")
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
	if k.reason == history.ReasonBackoff {
		return fmt.Sprintf("attempt %d", k.attempt)
	}
	return "after Retry-After"
}

// relayKill reports whether f is the injection of a relay kill.
func relayKill(f history.Fault) bool {
	return f.Fault == "kill" && strings.Contains(f.Target, "relay") && injected(f)
}

// checkRelayCrash: each kill of the relay was followed by a republish that
// the consumer's inbox deduped: paytest_inbox_duplicates_total >= kills,
// and effects-equal-ops held.
func checkRelayCrash(ev *evidence, effects Check) Check {
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
	dup, src, ok := ev.metricSum(MetricInboxDuplicates, promInboxDuplicates)
	if !ok {
		return inconclusive(name, fmt.Sprintf("? duplicates for %d relay kills", kills), "no "+MetricInboxDuplicates+" in the metrics evidence")
	}
	figure := fmt.Sprintf("%s duplicates deduped for %d relay kills", fmtNum(dup), kills)
	switch {
	case dup < float64(kills):
		return failed(name, figure, fmt.Sprintf("%s (%s) counts fewer duplicates than relay kills: a republished event was not seen by the inbox", MetricInboxDuplicates, src), cxList{})
	case effects.Status == StatusFailed:
		return failed(name, figure, "the inbox saw the duplicates but effects-equal-ops failed", cxList{})
	case effects.Status == StatusInconclusive:
		return inconclusive(name, figure, "effects-equal-ops is inconclusive")
	}
	return held(name, figure, "")
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
		if f.Fault == "poison" && injected(f) {
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
