package rundir

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestParseShard(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Shard
		err  string
	}{
		{"0/1", Shard{0, 1}, ""},
		{"3/4", Shard{3, 4}, ""},
		{" 2/8 ", Shard{2, 8}, ""},
		{"4/4", Shard{}, "within 0..3"},
		{"-1/4", Shard{}, "within 0..3"},
		{"0/0", Shard{}, "at least 1"},
		{"1", Shard{}, "want K/N"},
		{"a/b", Shard{}, "want K/N"},
		{"", Shard{}, "want K/N"},
	} {
		got, err := ParseShard(tt.in)
		switch {
		case tt.err == "" && (err != nil || got != tt.want):
			t.Errorf("ParseShard(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("ParseShard(%q): %v; want an error mentioning %q", tt.in, err, tt.err)
		}
	}
	if s := (Shard{K: 2, N: 5}).String(); s != "2/5" {
		t.Errorf("String: %q", s)
	}
}

// TestPartition: charges go round-robin by rank, a reuse with the op it
// reuses, whatever the ids between.
func TestPartition(t *testing.T) {
	ops := []Op{
		{Op: 1, Kind: KindCharge}, {Op: 2, Kind: KindReuse, ReuseOf: 1}, {Op: 3, Kind: KindCharge},
		{Op: 4, Kind: KindCharge}, {Op: 5, Kind: KindReuse, ReuseOf: 3}, {Op: 6, Kind: KindReuse, ReuseOf: 4},
		{Op: 7, Kind: KindCharge}, {Op: 8, Kind: KindCharge},
	}
	want := map[int][]int{2: {0, 0, 1, 0, 1, 0, 1, 0}, 3: {0, 0, 1, 2, 1, 2, 0, 1}, 1: {0, 0, 0, 0, 0, 0, 0, 0}}
	for n, shards := range want {
		p := NewPartition(n)
		for i, op := range ops {
			if k := p.Next(op); k != shards[i] {
				t.Errorf("%d shards: op %d in shard %d, want %d", n, op.Op, k, shards[i])
			}
			if k, ok := p.Owner(op.Op); !ok || k != shards[i] {
				t.Errorf("%d shards: Owner(%d) = %d, %v", n, op.Op, k, ok)
			}
		}
	}
}

func TestRunShardRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), RunFile)
	in := Run{Seed: 9, Ops: 100, Shard: "1/4", FaultShard: 2, PlanFingerprint: "abc", Stopped: "the drain deadline passed"}
	if err := WriteRun(path, in); err != nil {
		t.Fatal(err)
	}
	out, err := ReadRun(path)
	if err != nil {
		t.Fatal(err)
	}
	sh, err := out.ShardOf()
	if err != nil || sh != (Shard{1, 4}) || out.FaultShard != 2 || out.PlanFingerprint != "abc" || out.Stopped != in.Stopped {
		t.Errorf("read back %+v (shard %v, %v)", out, sh, err)
	}
	if sh, err := (Run{}).ShardOf(); err != nil || sh != (Shard{0, 1}) {
		t.Errorf("a whole run's shard: %v, %v", sh, err)
	}
}
