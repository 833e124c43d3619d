package verify

import (
	"strings"
	"testing"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/rundir"
)

func TestParseThreshold(t *testing.T) {
	tests := []struct {
		in      string
		want    Threshold
		errPart string // for a malformed one: what the message must say
	}{
		{in: "op_p99 < 800ms", want: Threshold{Expr: "op_p99 < 800ms", Metric: "op_p99", Op: "<", Value: 800}},
		{in: "op_p99<800ms", want: Threshold{Expr: "op_p99 < 800ms", Metric: "op_p99", Op: "<", Value: 800}},
		{in: "attempt_p99.9 <= 1.5s", want: Threshold{Expr: "attempt_p99.9 <= 1.5s", Metric: "attempt_p99.9", Op: "<=", Value: 1500}},
		{in: "attempt_max < 250us", want: Threshold{Expr: "attempt_max < 250us", Metric: "attempt_max", Op: "<", Value: 0.25}},
		{in: "attempt_error_rate < 0.05", want: Threshold{Expr: "attempt_error_rate < 0.05", Metric: "attempt_error_rate", Op: "<", Value: 0.05}},
		{in: "attempt_error_rate < 5%", want: Threshold{Expr: "attempt_error_rate < 5%", Metric: "attempt_error_rate", Op: "<", Value: 0.05}},
		{in: "confirmed_rate > 990", want: Threshold{Expr: "confirmed_rate > 990", Metric: "confirmed_rate", Op: ">", Value: 990}},
		{in: "attempt_rate >= 1000/s", want: Threshold{Expr: "attempt_rate >= 1000/s", Metric: "attempt_rate", Op: ">=", Value: 1000}},
		{in: "dropped_arrivals <= 0", want: Threshold{Expr: "dropped_arrivals <= 0", Metric: "dropped_arrivals", Op: "<=", Value: 0}},

		{in: "op_p99 800ms", errPart: "no comparison"},
		{in: "< 800ms", errPart: "no metric"},
		{in: "op_p99 <", errPart: "no value"},
		{in: "op_p98 < 800ms", errPart: `unknown latency statistic "p98"`},
		{in: "op_p99 < 800", errPart: "not a duration with a unit"},
		{in: "op_p99 < -1s", errPart: "not a duration"},
		{in: "attempt_error_rate < 1.5", errPart: "not a fraction"},
		{in: "attempt_error_rate < 150%", errPart: "not a fraction"},
		{in: "confirmed_rate > fast", errPart: "not a non-negative number"},
		{in: "latency < 1s", errPart: `unknown metric "latency"`},
		{in: "", errPart: "no comparison"},
	}
	for _, tc := range tests {
		got, err := ParseThreshold(tc.in)
		if tc.errPart != "" {
			if err == nil || apperr.Code(err) != apperr.EUSAGE || !strings.Contains(err.Error(), tc.errPart) || !strings.Contains(err.Error(), "op_p99 < 800ms") {
				t.Errorf("ParseThreshold(%q) = %v, %v; want a usage error saying %q and showing the form", tc.in, got, err, tc.errPart)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseThreshold(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestThresholdChecks(t *testing.T) {
	r := &Report{
		Latency:    &Latency{Ops: LatencyStats{Count: 10, P99MS: 512, MaxMS: 900}, Attempts: LatencyStats{Count: 12, P99MS: 300}},
		Throughput: &Throughput{ConfirmedOpsPerSecond: 995.5, AttemptsPerSecond: 1200, DroppedArrivals: 3},
		Outcomes:   map[string]int{rundir.OutcomeNew: 90, rundir.OutcomeReplay: 4, rundir.OutcomeMismatch: 1, rundir.OutcomeTimeout: 5, rundir.OutcomeBudget: 50},
	}
	tests := []struct {
		expr   string
		status string
		figure string
	}{
		{"op_p99 < 800ms", StatusHeld, "op_p99 = 512ms"},
		{"op_max < 800ms", StatusFailed, "op_max = 900ms"},
		{"attempt_p99 <= 300ms", StatusHeld, "attempt_p99 = 300ms"},
		// 5 timeouts of 100 sent (the budget's 50 refusals were not sent).
		{"attempt_error_rate < 0.05", StatusFailed, "attempt_error_rate = 5.00%"},
		{"attempt_error_rate <= 5%", StatusHeld, "attempt_error_rate = 5.00%"},
		{"confirmed_rate > 990", StatusHeld, "confirmed_rate = 995.5/s"},
		{"attempt_rate >= 1500", StatusFailed, "attempt_rate = 1200.0/s"},
		{"dropped_arrivals <= 0", StatusFailed, "dropped_arrivals = 3"},
	}
	for _, tc := range tests {
		th, err := ParseThreshold(tc.expr)
		if err != nil {
			t.Fatal(err)
		}
		c := checkThreshold(th, r)
		if c.Status != tc.status || c.Figure != tc.figure || c.Name != "threshold: "+tc.expr {
			t.Errorf("%s: %s %q %q; want %s %q", tc.expr, c.Status, c.Name, c.Figure, tc.status, tc.figure)
		}
		if c.Status == StatusFailed && !strings.Contains(c.Detail, tc.expr[strings.IndexAny(tc.expr, "<>"):]) {
			t.Errorf("%s: detail %q does not say what the threshold wants", tc.expr, c.Detail)
		}
	}
	th, _ := ParseThreshold("op_p99 < 1s")
	if c := checkThreshold(th, &Report{}); c.Status != StatusInconclusive {
		t.Errorf("no latency: %s, want inconclusive", c.Status)
	}
}
