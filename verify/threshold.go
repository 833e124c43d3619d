package verify

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/rundir"
)

// Threshold is a pass/fail bound on a load figure, written as k6 users
// write theirs: "op_p99 < 800ms", "attempt_error_rate < 0.05",
// "confirmed_rate > 990". Each becomes a check named "threshold: <it>"
// that holds or fails like every other check.
//
// Grammar: METRIC OP VALUE, spaces optional.
//
//	METRIC  op_STAT | attempt_STAT     latency of confirmed ops / of attempts sent
//	        STAT is p50, p90, p95, p99, p99.9, min, mean or max; VALUE a duration (800ms, 1.5s, 250us)
//	        attempt_error_rate             attempts sent not answered 2xx or the declared reuse refusal,
//	                                       as a fraction (0.05) or a percentage (5%)
//	        confirmed_rate | attempt_rate  per second over the run (a number)
//	        dropped_arrivals               the open model's arrivals dropped at the in-flight cap (a count)
//	OP      <  <=  >  >=
type Threshold struct {
	// Expr is the threshold as written, normalised ("op_p99 < 800ms").
	Expr   string `json:"expr"`
	Metric string `json:"metric"`
	Op     string `json:"op"`
	// Value is in the metric's unit: milliseconds for latencies, a
	// fraction for the error rate, per second for rates, a count.
	Value float64 `json:"value"`
}

// ThresholdMetrics lists the metrics a threshold may name.
var ThresholdMetrics = func() []string {
	var out []string
	for _, who := range []string{"op", "attempt"} {
		for _, s := range latencyStats {
			out = append(out, who+"_"+s)
		}
	}
	return append(out, "attempt_error_rate", "confirmed_rate", "attempt_rate", "dropped_arrivals")
}()

var latencyStats = []string{"p50", "p90", "p95", "p99", "p99.9", "min", "mean", "max"}

var thresholdOps = []string{"<=", ">=", "<", ">"} // two-character ones first

// ParseThreshold reads one threshold; a malformed one is a usage error
// that says what was expected.
func ParseThreshold(s string) (Threshold, error) {
	bad := func(why string, args ...any) (Threshold, error) {
		return Threshold{}, apperr.Errorf(apperr.EUSAGE, "threshold %q: %s (form: METRIC OP VALUE, e.g. 'op_p99 < 800ms'; metrics: %s)",
			s, fmt.Sprintf(why, args...), strings.Join(ThresholdMetrics, ", "))
	}
	var metric, op, value string
	for _, o := range thresholdOps {
		if i := strings.Index(s, o); i >= 0 {
			metric, op, value = strings.TrimSpace(s[:i]), o, strings.TrimSpace(s[i+len(o):])
			break
		}
	}
	switch {
	case op == "":
		return bad("no comparison (<, <=, >, >=)")
	case metric == "":
		return bad("no metric before %s", op)
	case value == "":
		return bad("no value after %s", op)
	}
	t := Threshold{Metric: metric, Op: op}
	switch {
	case strings.HasPrefix(metric, "op_") || strings.HasPrefix(metric, "attempt_") && metric != "attempt_error_rate" && metric != "attempt_rate":
		_, stat, _ := strings.Cut(metric, "_")
		if !slices.Contains(latencyStats, stat) {
			return bad("unknown latency statistic %q", stat)
		}
		d, err := time.ParseDuration(value)
		if err != nil || d < 0 {
			return bad("%q is not a duration with a unit (800ms, 1.5s, 250us)", value)
		}
		t.Value = float64(d) / float64(time.Millisecond)
	case metric == "attempt_error_rate":
		v, pct := strings.CutSuffix(value, "%")
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if pct {
			f /= 100
		}
		if err != nil || f < 0 || f > 1 || math.IsNaN(f) {
			return bad("%q is not a fraction 0..1 or a percentage", value)
		}
		t.Value = f
	case metric == "confirmed_rate" || metric == "attempt_rate" || metric == "dropped_arrivals":
		f, err := strconv.ParseFloat(strings.TrimSuffix(value, "/s"), 64)
		if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
			return bad("%q is not a non-negative number", value)
		}
		t.Value = f
	default:
		return bad("unknown metric %q", metric)
	}
	t.Expr = metric + " " + op + " " + value
	return t, nil
}

// ParseThresholds parses each of ss.
func ParseThresholds(ss []string) ([]Threshold, error) {
	out := make([]Threshold, 0, len(ss))
	for _, s := range ss {
		t, err := ParseThreshold(s)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// thresholdCheckPrefix names a threshold's check: "threshold: op_p99 < 800ms".
const thresholdCheckPrefix = "threshold: "

// checkThreshold judges t against the report's latency, throughput and
// outcomes.
func checkThreshold(t Threshold, r *Report) Check {
	name := thresholdCheckPrefix + t.Expr
	v, unit, ok := thresholdValue(t.Metric, r)
	if !ok {
		c := inconclusive(name, t.Metric+" = ?", "no "+t.Metric+" in this run: history.jsonl has no attempt to time")
		c.Evidence = evHistory
		return c
	}
	figure := t.Metric + " = " + fmtThreshold(v, unit)
	pass := map[string]bool{"<": v < t.Value, "<=": v <= t.Value, ">": v > t.Value, ">=": v >= t.Value}[t.Op]
	var c Check
	if pass {
		c = held(name, figure, "")
	} else {
		c = failed(name, figure, fmt.Sprintf("%s is %s, the threshold wants %s", t.Metric, fmtThreshold(v, unit), strings.TrimPrefix(t.Expr, t.Metric+" ")), cxList{})
	}
	c.Evidence = evHistory
	return c
}

// thresholdValue reads metric off the report, with its unit ("ms", "",
// "/s" or "%").
func thresholdValue(metric string, r *Report) (v float64, unit string, ok bool) {
	switch metric {
	case "attempt_error_rate":
		sent, good := 0, 0
		for o, n := range r.Outcomes {
			if o == rundir.OutcomeBudget || o == rundir.OutcomeDropped {
				continue
			}
			sent += n
			if o == rundir.OutcomeNew || o == rundir.OutcomeReplay || o == rundir.OutcomeMismatch {
				good += n
			}
		}
		if sent == 0 {
			return 0, "", false
		}
		return float64(sent-good) / float64(sent), "%", true
	case "confirmed_rate", "attempt_rate", "dropped_arrivals":
		if r.Throughput == nil {
			return 0, "", false
		}
		switch metric {
		case "confirmed_rate":
			return r.Throughput.ConfirmedOpsPerSecond, "/s", true
		case "attempt_rate":
			return r.Throughput.AttemptsPerSecond, "/s", true
		}
		return float64(r.Throughput.DroppedArrivals), "", true
	}
	if r.Latency == nil {
		return 0, "", false
	}
	who, stat, _ := strings.Cut(metric, "_")
	s := r.Latency.Ops
	if who == "attempt" {
		s = r.Latency.Attempts
	}
	if s.Count == 0 {
		return 0, "", false
	}
	return map[string]float64{"p50": s.P50MS, "p90": s.P90MS, "p95": s.P95MS, "p99": s.P99MS, "p99.9": s.P999MS,
		"min": s.MinMS, "mean": s.MeanMS, "max": s.MaxMS}[stat], "ms", true
}

func fmtThreshold(v float64, unit string) string {
	switch unit {
	case "ms":
		return fmtLatMS(v)
	case "%":
		return strconv.FormatFloat(v*100, 'f', 2, 64) + "%"
	case "/s":
		return strconv.FormatFloat(v, 'f', 1, 64) + "/s"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// thresholdChecks judges opts' thresholds, or run.yaml's when opts has
// none (a malformed one there is an inconclusive check: the run cannot be
// judged by it).
func thresholdChecks(ev *evidence, opts Options, r *Report) []Check {
	ths := opts.Thresholds
	var out []Check
	if ths == nil && ev.hasRun {
		for _, s := range ev.run.Thresholds {
			t, err := ParseThreshold(s)
			if err != nil {
				out = append(out, inconclusive(thresholdCheckPrefix+s, "?", err.Error()))
				continue
			}
			ths = append(ths, t)
		}
	}
	for _, t := range ths {
		out = append(out, checkThreshold(t, r))
	}
	return out
}
