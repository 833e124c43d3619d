package verifytest

import (
	"testing"

	"github.com/paytest/paytest/verify"
)

// recorder is a testing.TB that notes an Errorf instead of failing.
type recorder struct {
	testing.TB
	errors int
}

func (r *recorder) Errorf(string, ...any) { r.errors++ }

func TestSameVerdict(t *testing.T) {
	report := func(verdict, figure, stuck string) *verify.Report {
		return &verify.Report{Verdict: verdict, Ops: 10, LedgerEffects: 10, Checks: []verify.Check{
			{Name: verify.CheckEffectsEqualOps, Status: verify.StatusHeld, Held: true, Figure: figure},
			{Name: verify.CheckNoKeyStuck, Status: stuck, Figure: "n"},
		}}
	}
	want := report(verify.VerdictHeld, "10 of 10", verify.StatusHeld)
	for _, tt := range []struct {
		name   string
		got    *verify.Report
		loose  []string
		errors int
	}{
		{"same", report(verify.VerdictHeld, "10 of 10", verify.StatusHeld), nil, 0},
		{"another figure", report(verify.VerdictHeld, "9 of 10", verify.StatusHeld), nil, 1},
		{"another verdict", report(verify.VerdictViolated, "10 of 10", verify.StatusHeld), nil, 1},
		{"loose check, another figure", report(verify.VerdictHeld, "10 of 10", verify.StatusNothing), []string{verify.CheckNoKeyStuck}, 0},
		{"loose check failed", report(verify.VerdictHeld, "10 of 10", verify.StatusFailed), []string{verify.CheckNoKeyStuck}, 1},
		{"strict check, another status", report(verify.VerdictHeld, "10 of 10", verify.StatusNothing), nil, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := &recorder{TB: t}
			SameVerdict(r, "got", want, tt.got, tt.loose...)
			if r.errors != tt.errors {
				t.Errorf("%d errors, want %d", r.errors, tt.errors)
			}
		})
	}
}
