package verify

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/paytest/paytest/internal/rundir"
)

// CheckNoRetryStorm is the check that the client's retries did not
// multiply the load on the charge service while its downstream was out:
// in each outage window, the attempts sent are at most the run's
// max-retry-amplification times the first attempts (the outage profile:
// 1.2). A run without the bound shows the figure, not judged: how far a
// budget keeps retries down depends on its size against the load.
const CheckNoRetryStorm = "no-retry-storm"

// settingMaxRetryAmplification is the run.yaml setting (attack's flag)
// that bounds no-retry-storm.
const settingMaxRetryAmplification = "max-retry-amplification"

// MetricRetryBudgetExhausted counts the retries the client's retry budget
// refused, by call site (metrics/client.prom).
const MetricRetryBudgetExhausted = "paytest_retry_budget_exhausted_total"

// OutageFigures is report.json's "outage": how many attempts the client
// sent while the charge service's downstream was out, against the first
// attempts in the same windows. It is read from faults.jsonl's outage
// start and stop records and history.jsonl; the totals add up every
// window, and Windows has each one.
//
// A window runs from the outage's start record (the cut began) to its
// stop record (the database back). Its attempts are counted from the
// first failed answer in it (503, 5xx, timeout or network error: the cut
// takes effect as toxiproxy drops the connections, and requests answered
// before that were not sent into the outage): an attempt counts when it
// was in flight at any time from then to the window's end. Retries the
// budget refused were not sent: they count in BudgetRefused, not in
// Attempts.
type OutageFigures struct {
	// WindowSeconds is how long the outages lasted.
	WindowSeconds float64 `json:"window_seconds"`
	// FirstAttempts counts the attempts that were a request's first;
	// Retries the others (re-drives by reconciliation included); Attempts
	// both.
	FirstAttempts int `json:"first_attempts"`
	Retries       int `json:"retries"`
	Attempts      int `json:"attempts"`
	// Amplification is Attempts / FirstAttempts (Attempts itself when no
	// first attempt fell in the windows: all the traffic was retries).
	Amplification float64 `json:"amplification"`
	// BudgetRefused counts the retries the retry budget refused during the
	// windows (history outcome "budget").
	BudgetRefused int `json:"budget_refused"`
	// BudgetExhausted is the client's paytest_retry_budget_exhausted_total
	// over the whole run, when metrics/ has it.
	BudgetExhausted *float64 `json:"budget_exhausted,omitempty"`
	// NoBudget is true when the run's client had no retry budget
	// (run.yaml's no-budget).
	NoBudget bool `json:"no_budget,omitempty"`
	// MaxAmplification is the bound no-retry-storm judged each window by;
	// 0 when the run set none (not judged).
	MaxAmplification float64 `json:"max_amplification"`
	// Windows has the figures of each outage window, in time order.
	Windows []OutageWindow `json:"windows"`
}

// OutageWindow is one outage: from its start record to its stop record.
type OutageWindow struct {
	// Target is the proxy the outage disabled ("postgres").
	Target string    `json:"target,omitempty"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	// Open is true when faults.jsonl has no stop record for it: the window
	// is taken to last until the end of the run.
	Open    bool    `json:"open,omitempty"`
	Seconds float64 `json:"seconds"`
	// FirstFailure is when the first failed answer in the window ended:
	// the attempts are counted from then (unset: from Start).
	FirstFailure time.Time `json:"first_failure,omitzero"`
	// FirstAttempts, Retries, Attempts, Amplification and BudgetRefused
	// are as in OutageFigures, for this window.
	FirstAttempts int     `json:"first_attempts"`
	Retries       int     `json:"retries"`
	Attempts      int     `json:"attempts"`
	Amplification float64 `json:"amplification"`
	BudgetRefused int     `json:"budget_refused"`
	// Requests counts the senders (op, sender) that sent during the window.
	Requests int `json:"requests"`
	// BusiestOp and BusiestAttempts name the sender that sent the most
	// attempts during the window.
	BusiestOp       int `json:"busiest_op"`
	BusiestSender   int `json:"busiest_sender,omitempty"`
	BusiestAttempts int `json:"busiest_attempts"`
}

// amplification is attempts per first attempt; attempts itself without
// a first attempt (every attempt a retry); 0 with no attempt at all.
func amplification(attempts, first int) float64 {
	if first == 0 {
		return float64(attempts)
	}
	return round3(float64(attempts) / float64(first))
}

// Summary is the figures in one line.
func (o *OutageFigures) Summary() string {
	budget := fmt.Sprintf("%d retries refused by the retry budget", o.BudgetRefused)
	if o.NoBudget {
		budget = "no retry budget"
	}
	bound := "not judged"
	if o.MaxAmplification > 0 {
		bound = fmt.Sprintf("max %gx", o.MaxAmplification)
	}
	return fmt.Sprintf("%d window(s), %.1f s: %d attempts for %d first attempts (%d retries): %.2fx amplification (%s); %s",
		len(o.Windows), o.WindowSeconds, o.Attempts, o.FirstAttempts, o.Retries, o.Amplification, bound, budget)
}

// outageTally keeps, while the history streams, the attempts in flight
// during each outage window (compactly: only those, and only their
// times), to be counted once the window's first failure is known.
type outageTally struct {
	windows []OutageWindow
	seen    [][]windowAttempt
	// firstFail is, per window, the end of the earliest failed answer
	// (unix nanos; 0: none yet).
	firstFail []int64
}

// windowAttempt is one attempt in flight during a window.
type windowAttempt struct {
	start, end int64
	op, sender int
	first      bool
	refused    bool // not sent: the budget refused it
}

// newOutageTally pairs each outage start record with the next stop
// record of the same target; nil when the run had no outage.
func newOutageTally(faults []rundir.Fault) *outageTally {
	t := &outageTally{}
	for _, w := range faultWindows(faults, rundir.FaultOutage) {
		t.windows = append(t.windows, OutageWindow{Target: w.Target, Start: w.Start, End: w.End, Open: w.Open})
	}
	if len(t.windows) == 0 {
		return nil
	}
	t.seen = make([][]windowAttempt, len(t.windows))
	t.firstFail = make([]int64, len(t.windows))
	return t
}

// outageFailure is true for an answer the outage explains: the service
// unavailable or erring, or no answer at all.
func outageFailure(outcome string) bool {
	switch outcome {
	case rundir.OutcomeUnavailable, rundir.OutcomeServerError, rundir.OutcomeTimeout, rundir.OutcomeNetwork:
		return true
	}
	return false
}

// add keeps one attempt for every window it was in flight during.
func (t *outageTally) add(at *rundir.Attempt, outcome string) {
	if t == nil || at.Start.IsZero() {
		return
	}
	start := at.Start.UnixNano()
	end := start
	if !at.End.IsZero() && at.End.After(at.Start) {
		end = at.End.UnixNano()
	}
	for i := range t.windows {
		w := &t.windows[i]
		if end < w.Start.UnixNano() || (!w.Open && start >= w.End.UnixNano()) {
			continue
		}
		refused := outcome == rundir.OutcomeBudget || outcome == rundir.OutcomeDropped
		if !refused && outageFailure(outcome) && (t.firstFail[i] == 0 || end < t.firstFail[i]) {
			t.firstFail[i] = end
		}
		t.seen[i] = append(t.seen[i], windowAttempt{
			start: start, end: end, op: at.Op, sender: at.Sender, refused: refused,
			first: at.Attempt <= 1 && at.DelayReason != rundir.ReasonReconcile,
		})
	}
}

// figures closes the windows (an open one ends at runEnd), counts each
// from its first failure on and adds them up. maxAmp is the bound from
// Options (0: run.yaml's, if any).
func (t *outageTally) figures(runEnd time.Time, ev *evidence, maxAmp float64) *OutageFigures {
	if t == nil {
		return nil
	}
	o := &OutageFigures{MaxAmplification: maxAmp, Windows: make([]OutageWindow, 0, len(t.windows))}
	for i, w := range t.windows {
		if w.Open {
			w.End = runEnd
		}
		if w.End.After(w.Start) {
			w.Seconds = round3(w.End.Sub(w.Start).Seconds())
		}
		from := w.Start.UnixNano()
		if f := t.firstFail[i]; f > from {
			from = f
			w.FirstFailure = time.Unix(0, f).UTC()
		}
		senders := map[senderKey]int{}
		for _, a := range t.seen[i] {
			switch {
			case a.refused:
				// Refused at its start, so counted when that is in the window.
				if a.start >= from {
					w.BudgetRefused++
				}
				continue
			case a.end < from:
				// Answered before the outage showed: not sent into it.
				continue
			}
			w.Attempts++
			if a.first {
				w.FirstAttempts++
			} else {
				w.Retries++
			}
			senders[senderKey{a.op, a.sender}]++
		}
		w.Amplification = amplification(w.Attempts, w.FirstAttempts)
		w.Requests = len(senders)
		for k, n := range senders {
			better := n > w.BusiestAttempts ||
				(n == w.BusiestAttempts && (k.op < w.BusiestOp || (k.op == w.BusiestOp && k.sender < w.BusiestSender)))
			if better {
				w.BusiestOp, w.BusiestSender, w.BusiestAttempts = k.op, k.sender, n
			}
		}
		o.WindowSeconds += w.Seconds
		o.FirstAttempts += w.FirstAttempts
		o.Retries += w.Retries
		o.Attempts += w.Attempts
		o.BudgetRefused += w.BudgetRefused
		o.Windows = append(o.Windows, w)
	}
	o.WindowSeconds = round3(o.WindowSeconds)
	o.Amplification = amplification(o.Attempts, o.FirstAttempts)
	if v, _, ok := ev.metricSum(MetricRetryBudgetExhausted, ""); ok {
		o.BudgetExhausted = &v
	}
	if ev.hasRun {
		if nb, ok := ev.run.Config["no-budget"].(bool); ok {
			o.NoBudget = nb
		}
		if o.MaxAmplification <= 0 {
			o.MaxAmplification = number(ev.run.Config[settingMaxRetryAmplification])
		}
	}
	o.MaxAmplification = max(0, o.MaxAmplification)
	return o
}

// number reads a numeric run.yaml setting; 0 when absent or not a number.
func number(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		if err == nil {
			return f
		}
	}
	return 0
}

// checkOutage judges every outage window: attempts sent during it at most
// MaxAmplification times its first attempts.
func checkOutage(o *OutageFigures) Check {
	const name = CheckNoRetryStorm
	if o == nil || len(o.Windows) == 0 {
		return nothing(name, "0 outages", "no outage window in this run")
	}
	if o.Attempts == 0 {
		return nothing(name, fmt.Sprintf("0 attempts in %d outage window(s)", len(o.Windows)), "no attempt was sent during the outage")
	}
	if o.MaxAmplification <= 0 {
		return nothing(name, fmt.Sprintf("%.2fx over %d outage window(s), not judged", o.Amplification, len(o.Windows)),
			"the run set no "+settingMaxRetryAmplification+" (the outage profile sets 1.2): the amplification is shown, not judged")
	}
	var parts []string
	cx := cxList{max: len(o.Windows)}
	for i, w := range o.Windows {
		fig := fmt.Sprintf("%.2fx (%d attempts for %d first attempts in %.1f s", w.Amplification, w.Attempts, w.FirstAttempts, w.Seconds)
		if w.BudgetRefused > 0 {
			fig += fmt.Sprintf(", %d retries refused by the budget", w.BudgetRefused)
		}
		parts = append(parts, fig+")")
		if w.Attempts > 0 && w.Amplification > o.MaxAmplification+1e-9 {
			why := fmt.Sprintf("outage %d (%s, %.1f s): %d attempts for %d first attempts, %.2fx > %.2gx; op %d sender %d sent %d attempts in it",
				i+1, w.Start.Format("15:04:05.000"), w.Seconds, w.Attempts, w.FirstAttempts, w.Amplification, o.MaxAmplification,
				w.BusiestOp, w.BusiestSender, w.BusiestAttempts)
			cx.add(Counterexample{Op: -1, Why: why})
		}
	}
	figure := strings.Join(parts, "; ")
	budget := "with the retry budget"
	if o.NoBudget {
		budget = "without a retry budget"
	}
	if cx.total > 0 {
		return failed(name, figure, fmt.Sprintf("%d of %d outage windows amplified the load above %.2gx (%s): a retry storm against a service that was down",
			cx.total, len(o.Windows), o.MaxAmplification, budget), cx)
	}
	return held(name, figure, fmt.Sprintf("every outage window within %.2gx (%s)", o.MaxAmplification, budget))
}

// runEnd is when the run ended, for an outage window without a stop
// record: run.yaml's end, else the history's last attempt.
func (a *analysis) runEnd(ev *evidence) time.Time {
	if ev.hasRun && !ev.run.Ended.IsZero() {
		return ev.run.Ended
	}
	return a.histEnd
}
