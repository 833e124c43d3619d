package attack

import (
	"strings"
	"testing"

	"github.com/paytest/paytest/verify"
)

// TestRedisLossProfileHolds: the charge service runs with its Redis hot
// tier; mid-run every cached key is deleted, later Redis is restarted
// empty, while duplicates keep coming. Replays Redis lost fall through to
// Postgres, which still dedups: the verdict holds, both faults are
// recorded, and the report counts the fall-throughs.
func TestRedisLossProfileHolds(t *testing.T) {
	cfg := bundled(t, "redis-loss")
	cfg.Plan.Ops, cfg.Plan.Seed = 300, 11
	res := run(t, cfg)
	rep := res.Report
	if rep.Verdict != verify.VerdictHeld || rep.ExitCode != 0 {
		var b strings.Builder
		_ = rep.WriteText(&b)
		t.Fatalf("verdict %s (exit %d), want held:\n%s", rep.Verdict, rep.ExitCode, b.String())
	}
	if rep.Faults["redis-loss"] != 2 {
		t.Fatalf("faults = %v, want redis-loss twice (flush, restart)", rep.Faults)
	}
	phases := map[string]bool{}
	for _, f := range faultRecords(t, res.Dir) {
		if f.Fault == "redis-loss" {
			phases[f.Detail] = true
		}
	}
	if len(phases) != 2 {
		t.Fatalf("redis-loss records = %v, want a flush and a restart", phases)
	}
	c := rep.IdempotencyCache
	if c == nil {
		t.Fatal("report.json has no idempotency_cache: the charge service ran without Redis")
	}
	t.Logf("idempotency cache: %+v", *c)
	if c.FallThrough <= 0 || c.RedisHit <= 0 {
		t.Fatalf("idempotency_cache = %+v, want Redis hits and fall-throughs above zero", *c)
	}
	if rep.SideEffects != rep.Ops || rep.LedgerEffects != rep.Ops {
		t.Fatalf("side effects %d, ledger %d, ops %d: want one each", rep.SideEffects, rep.LedgerEffects, rep.Ops)
	}
}
