package attack

import (
	"strings"
	"testing"

	"github.com/paytest/paytest/verify"
)

// TestOutageProfileBudgetKeepsRetriesDown runs the outage profile twice
// on the same plan and schedule: the charge service's database is cut for
// 3 s while the load goes on. With the profile's retry budget the attempts
// sent during the outage stay within 1.2x of the first attempts and the
// verdict holds, every operation confirmed exactly once by reconciliation
// after the database returns; without a budget the same window shows the
// retry storm and no-retry-storm fails the run, while money still moves
// exactly once.
func TestOutageProfileBudgetKeepsRetriesDown(t *testing.T) {
	var amp [2]float64
	for i, noBudget := range []bool{false, true} {
		cfg := bundled(t, "outage")
		cfg.Plan.Ops, cfg.Plan.Seed, cfg.Client.NoBudget = 300, 17, noBudget
		res := run(t, cfg)
		rep := res.Report
		var text strings.Builder
		_ = rep.WriteText(&text)
		o := rep.Outage
		if o == nil || len(o.Windows) != 1 || rep.Faults["outage"] != 1 {
			t.Fatalf("no-budget=%v: faults %v, outage figure %+v:\n%s", noBudget, rep.Faults, o, text.String())
		}
		amp[i] = o.Amplification
		t.Logf("no-budget=%v: %s", noBudget, o.Summary())
		if o.MaxAmplification != 1.2 || o.FirstAttempts == 0 || o.WindowSeconds < 2.5 {
			t.Fatalf("no-budget=%v: outage figure %+v: want the profile's 1.2 bound and a 3 s window with first attempts in it", noBudget, *o)
		}
		// Money moved exactly once either way.
		for _, name := range []string{verify.CheckEffectsEqualOps, verify.CheckExactlyOncePerOp} {
			if c := rep.Check(name); c == nil || c.Status != verify.StatusHeld {
				t.Fatalf("no-budget=%v: %s is not held:\n%s", noBudget, name, text.String())
			}
		}
		if rep.SideEffects != 300 || rep.LedgerEffects != 300 {
			t.Fatalf("no-budget=%v: side effects %d, ledger %d; want 300 each", noBudget, rep.SideEffects, rep.LedgerEffects)
		}
		storm := rep.Check(verify.CheckNoRetryStorm)
		if !noBudget {
			if rep.Verdict != verify.VerdictHeld || rep.ExitCode != 0 || storm.Status != verify.StatusHeld || o.Amplification > 1.2 {
				t.Fatalf("with the budget: verdict %s, %s %s, amplification %.2f; want held within 1.2:\n%s",
					rep.Verdict, storm.Name, storm.Status, o.Amplification, text.String())
			}
			if o.BudgetRefused == 0 || o.BudgetExhausted == nil || *o.BudgetExhausted < float64(o.BudgetRefused) {
				t.Fatalf("with the budget: %d retries refused in the window, %v in the metric; want the budget to have acted", o.BudgetRefused, o.BudgetExhausted)
			}
			if len(res.Load.Unconfirmed) == 0 || res.Reconciled == nil || len(res.Reconciled.Unconfirmed) != 0 {
				t.Fatalf("with the budget: %d ops left unconfirmed by the outage, reconciliation %+v; want all of them confirmed", len(res.Load.Unconfirmed), res.Reconciled)
			}
			t.Logf("with the budget: %d ops failed fast during the outage, all confirmed by reconciliation", len(res.Load.Unconfirmed))
			continue
		}
		if rep.Verdict != verify.VerdictViolated || rep.ExitCode != 1 || storm.Status != verify.StatusFailed || !o.NoBudget {
			t.Fatalf("without a budget: verdict %s, %s %s; want violated by the storm:\n%s", rep.Verdict, storm.Name, storm.Status, text.String())
		}
		for _, c := range rep.Checks {
			if c.Status == verify.StatusFailed && c.Name != verify.CheckNoRetryStorm {
				t.Fatalf("without a budget: %s failed too; only the storm may:\n%s", c.Name, text.String())
			}
		}
	}
	t.Logf("amplification during the outage: %.2fx with the budget, %.2fx without", amp[0], amp[1])
	if amp[1] <= amp[0] || amp[1] <= 1.2 {
		t.Fatalf("amplification %.2fx without a budget, %.2fx with: want the unbudgeted one larger and above 1.2", amp[1], amp[0])
	}
}
