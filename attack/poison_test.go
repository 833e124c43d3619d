package attack

import (
	"strings"
	"testing"

	"github.com/paytest/paytest/verify"
)

// TestPoisonProfileDeadLettersExactlyThePoison: the poison profile's events
// all end in the dead-letter queue and nothing else does, while every
// healthy charge is applied exactly once.
func TestPoisonProfileDeadLettersExactlyThePoison(t *testing.T) {
	cfg := bundled(t, "poison")
	cfg.Plan.Ops, cfg.Plan.Seed = 200, 3
	res := run(t, cfg)
	rep := res.Report
	if rep.Verdict != verify.VerdictHeld {
		var b strings.Builder
		_ = rep.WriteText(&b)
		t.Fatalf("verdict %s:\n%s", rep.Verdict, b.String())
	}
	if rep.Faults["poison"] != 10 {
		t.Fatalf("poison injected %d, want 10 (%v)", rep.Faults["poison"], rep.Faults)
	}
	c := rep.Check(verify.CheckDLQExact)
	if c == nil || c.Status != verify.StatusHeld || rep.DLQMessages == nil || *rep.DLQMessages != 10 {
		t.Fatalf("dlq: %v messages, check %+v", rep.DLQMessages, c)
	}
	if rep.SideEffects != 200 || rep.LedgerEffects != 200 {
		t.Fatalf("side effects %d, ledger %d; want 200 each: the poison must not hold healthy events up or be applied", rep.SideEffects, rep.LedgerEffects)
	}
	t.Logf("dlq-exact: %s", c.Figure)
}
