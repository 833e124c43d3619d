// Package verifytest holds test helpers over verify's reports, shared by
// the tests that run one plan two ways (one process, shards in-process or
// as processes) and want the same verdict from both.
package verifytest

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/paytest/paytest/verify"
)

// SameVerdict wants got to say what want said: the verdict, the figures
// it is judged from, and every check's status, figure and counterexample
// count. Checks named in loose, whose figures timing decides (two runs of
// one plan meet a key in flight a different number of times), must only
// have neither failed nor been inconclusive in either report. label names
// got in failures and in the figures it logs.
func SameVerdict(tb testing.TB, label string, want, got *verify.Report, loose ...string) {
	tb.Helper()
	if got.Verdict != want.Verdict || got.Ops != want.Ops || got.LedgerEffects != want.LedgerEffects ||
		got.SideEffects != want.SideEffects || got.Reuses != want.Reuses || got.Races != want.Races {
		tb.Errorf("%s: verdict %s, %d ops, %d side effects, ledger %d, %d reuses, %d races; want %s, %d, %d, %d, %d, %d",
			label, got.Verdict, got.Ops, got.SideEffects, got.LedgerEffects, got.Reuses, got.Races,
			want.Verdict, want.Ops, want.SideEffects, want.LedgerEffects, want.Reuses, want.Races)
	}
	var figures []string
	for _, c := range got.Checks {
		figures = append(figures, fmt.Sprintf("%s %s %q", c.Name, c.Status, c.Figure))
	}
	tb.Logf("%s: %s; %s", label, got.Verdict, strings.Join(figures, "; "))
	if len(got.Checks) != len(want.Checks) {
		tb.Fatalf("%s: %d checks, want %d", label, len(got.Checks), len(want.Checks))
	}
	for i, w := range want.Checks {
		g := got.Checks[i]
		switch {
		case g.Name != w.Name:
			tb.Errorf("%s: check %d is %s, want %s", label, i, g.Name, w.Name)
		case slices.Contains(loose, w.Name):
			if unsettled(g) || unsettled(w) {
				tb.Errorf("%s: %s %s %q; want's %s %q (neither may fail or be inconclusive)", label, g.Name, g.Status, g.Figure, w.Status, w.Figure)
			}
		case g.Status != w.Status || g.Held != w.Held || g.Figure != w.Figure || g.CounterexamplesTotal != w.CounterexamplesTotal:
			tb.Errorf("%s: %s %s %q (%d counterexamples); want %s %q (%d): %s",
				label, g.Name, g.Status, g.Figure, g.CounterexamplesTotal, w.Status, w.Figure, w.CounterexamplesTotal, g.Detail)
		}
	}
}

func unsettled(c verify.Check) bool {
	return c.Status == verify.StatusFailed || c.Status == verify.StatusInconclusive
}
