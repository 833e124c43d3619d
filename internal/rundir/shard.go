package rundir

import (
	"fmt"
	"strconv"
	"strings"
)

// Shard is the K-th of N disjoint parts of one plan (attack --shard K/N).
// The zero value, like 0/1, is the whole plan.
type Shard struct {
	K, N int
}

// ParseShard reads "K/N", with 0 <= K < N and N >= 1.
func ParseShard(s string) (Shard, error) {
	ks, ns, ok := strings.Cut(strings.TrimSpace(s), "/")
	k, errK := strconv.Atoi(ks)
	n, errN := strconv.Atoi(ns)
	if !ok || errK != nil || errN != nil {
		return Shard{}, fmt.Errorf("want K/N, e.g. 0/4, got %q", s)
	}
	sh := Shard{K: k, N: n}
	return sh, sh.Validate()
}

// Validate refuses N < 1 and K outside 0..N-1.
func (s Shard) Validate() error {
	if s.N < 1 {
		return fmt.Errorf("the count N must be at least 1, got %d/%d", s.K, s.N)
	}
	if s.K < 0 || s.K >= s.N {
		return fmt.Errorf("the index K must be within 0..%d (N-1), got %d/%d", s.N-1, s.K, s.N)
	}
	return nil
}

// Sharded reports whether s is one part of several (N > 1).
func (s Shard) Sharded() bool { return s.N > 1 }

// String is "K/N".
func (s Shard) String() string { return strconv.Itoa(s.K) + "/" + strconv.Itoa(s.N) }

// Partition assigns the ops of a plan, read in order, to N shards: the
// charges round-robin by their rank among the charges (so every shard of
// a plan with at least N charges has some, and no two shards differ by
// more than one charge), and each reuse to the shard of the op whose key
// it reuses. An op's senders (duplicates and race partners) are the op's
// own, so everything sent under one key stays in one shard. attack uses
// it to pick a shard's ops; verify to know which ops each shard owned.
type Partition struct {
	n       int
	charges int
	owner   []uint32 // op id -> shard; ops are numbered 1.. in order
}

// NewPartition partitions a plan over n shards (n < 1 is taken as 1).
func NewPartition(n int) *Partition { return &Partition{n: max(n, 1)} }

// Next returns the shard of op, the next op of the plan. A reuse of an op
// not seen yet goes with its key's first charge rank, which a plan never
// needs (a reuse always follows its original).
func (p *Partition) Next(op Op) int {
	var k int
	if op.Kind == KindReuse && op.ReuseOf > 0 && op.ReuseOf < len(p.owner) {
		k = int(p.owner[op.ReuseOf])
	} else {
		k = p.charges % p.n
		p.charges++
	}
	if op.Op >= 0 {
		for len(p.owner) <= op.Op {
			p.owner = append(p.owner, 0)
		}
		p.owner[op.Op] = uint32(k)
	}
	return k
}

// Owner returns the shard an op already passed to Next was given.
func (p *Partition) Owner(id int) (int, bool) {
	if id < 1 || id >= len(p.owner) {
		return 0, false
	}
	return int(p.owner[id]), true
}
