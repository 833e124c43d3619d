package client

import "sync"

// BudgetOptions configure a retry budget. Zero fields take the defaults of
// the AWS SDK's standard retry mode.
type BudgetOptions struct {
	// Capacity is the bucket's size and its starting level (default 500).
	Capacity float64
	// RetryCost is what a retry after an error response or a network
	// failure takes from the bucket (default 5).
	RetryCost float64
	// TimeoutCost is what a retry after a timeout takes (default 10).
	TimeoutCost float64
	// SuccessRefill is what a first-try success puts back (default 1). A
	// retry that succeeds refunds its own cost instead.
	SuccessRefill float64
}

// Budget is a retry token bucket shared by every client of one call site: a
// retry costs tokens, a success refills, and when the bucket cannot pay for
// a retry the client fails fast instead of adding load to a struggling
// server. It is safe for concurrent use.
type Budget struct {
	mu     sync.Mutex
	opt    BudgetOptions
	tokens float64
}

// NewBudget returns a full bucket.
func NewBudget(o BudgetOptions) *Budget {
	if o.Capacity <= 0 {
		o.Capacity = 500
	}
	if o.RetryCost <= 0 {
		o.RetryCost = 5
	}
	if o.TimeoutCost <= 0 {
		o.TimeoutCost = 10
	}
	if o.SuccessRefill <= 0 {
		o.SuccessRefill = 1
	}
	return &Budget{opt: o, tokens: o.Capacity}
}

// Options returns the budget's options with defaults filled in.
func (b *Budget) Options() BudgetOptions { return b.opt }

// Take pays for one retry: TimeoutCost when the failure being retried was a
// timeout, RetryCost otherwise. It reports false, and takes nothing, when
// the bucket holds too little.
func (b *Budget) Take(isTimeout bool) bool {
	_, ok := b.take(isTimeout)
	return ok
}

func (b *Budget) take(isTimeout bool) (float64, bool) {
	cost := b.opt.RetryCost
	if isTimeout {
		cost = b.opt.TimeoutCost
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tokens < cost {
		return 0, false
	}
	b.tokens -= cost
	return cost, true
}

// Success records a successful attempt. retryCost is what the attempt's
// retry took from the bucket (0 for a first try): a retry gets its cost
// back, a first try adds SuccessRefill. The bucket never exceeds Capacity.
func (b *Budget) Success(retryCost float64) {
	add := retryCost
	if add <= 0 {
		add = b.opt.SuccessRefill
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens = min(b.opt.Capacity, b.tokens+add)
}

// Tokens returns the bucket's level.
func (b *Budget) Tokens() float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tokens
}
