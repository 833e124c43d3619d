// Package backoff is the reference components' retry pacing: full jitter
// over an exponentially growing window, and a sleep that ends with its
// context.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// FullJitter returns a random wait in [0, min(ceiling, base*2^(failures-1))),
// the "full jitter" of Brooker's exponential backoff.
func FullJitter(base, ceiling time.Duration, failures int) time.Duration {
	d := ceiling
	if failures < 30 {
		d = min(ceiling, base<<max(0, failures-1))
	}
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d)))
}

// Sleep waits d or until ctx ends, reporting whether the full d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
