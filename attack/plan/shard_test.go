package plan

import (
	"testing"

	"github.com/paytest/paytest/internal/rundir"
)

// TestShardsPartitionThePlan: the N shards of a plan are disjoint, cover
// it, keep its ids, keep every reuse with the op it reuses, and differ by
// at most one charge.
func TestShardsPartitionThePlan(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Seed, cfg.Ops, cfg.ReuseRate = 17, 500, 0.1
	cfg.Merchants = []Merchant{{"a", "ka"}, {"b", "kb"}}
	p := mustNew(t, cfg)
	for _, n := range []int{1, 2, 3, 7} {
		owner := map[int]int{}
		minC, maxC := p.Len(), 0
		for k := range n {
			s := p.Shard(k, n)
			if s.Seed != p.Seed {
				t.Errorf("shard %d/%d: seed %d", k, n, s.Seed)
			}
			for i, op := range s.All() {
				if s.ID(i) != op.Op.Op || s.Kind(i) != op.Kind || s.Senders(i) != op.Senders || s.Race(i) != op.Race || s.ReuseOf(i) != op.ReuseOf ||
					s.Key(i) != op.Key || s.Merchant(i) != op.Merchant || !sendableAgrees(s, i, op) {
					t.Errorf("shard %d/%d: op at %d: accessors disagree with %+v", k, n, i, op.Op)
				}
				if prev, dup := owner[op.Op.Op]; dup {
					t.Fatalf("%d shards: op %d in shards %d and %d", n, op.Op.Op, prev, k)
				}
				owner[op.Op.Op] = k
				if got, ok := s.Op(op.Op.Op); !ok || got.Op != op.Op || string(got.Body) != string(op.Body) {
					t.Errorf("shard %d/%d: Op(%d) not found", k, n, op.Op.Op)
				}
				if op.Kind == rundir.KindReuse {
					orig, ok := s.Op(op.ReuseOf)
					if !ok || orig.Key != op.Key {
						t.Errorf("shard %d/%d: reuse op %d without its original op %d", k, n, op.Op.Op, op.ReuseOf)
					}
				}
			}
			minC, maxC = min(minC, s.Charges()), max(maxC, s.Charges())
		}
		if len(owner) != p.Len() {
			t.Errorf("%d shards hold %d ops of %d", n, len(owner), p.Len())
		}
		if maxC-minC > 1 || minC == 0 {
			t.Errorf("%d shards: charges per shard from %d to %d", n, minC, maxC)
		}
		if _, ok := p.Shard(0, n).Op(p.Len() + 1); ok {
			t.Errorf("an op past the plan was found")
		}
	}
	if p.Shard(0, 1) != p {
		t.Errorf("shard 0/1 is not the whole plan")
	}
	cfg.Ops = 3
	small := mustNew(t, cfg)
	for k := range 3 {
		if c := small.Shard(k, 3).Charges(); c != 1 {
			t.Errorf("3 charges over 3 shards: shard %d has %d", k, c)
		}
	}
}
