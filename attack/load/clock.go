package load

import (
	"context"
	"time"
)

// pacerClock is what the open model's pacer waits on between arrivals. It
// is used by one goroutine, and closed when the arrivals are done.
type pacerClock interface {
	// waitUntil returns at t, or with ctx's error when ctx ends first.
	waitUntil(ctx context.Context, t time.Time) error
	close()
}

// timerClock waits on a Go timer. An idle Go program wakes from a timer up
// to a millisecond late on Linux (the runtime's poller sleeps in whole
// milliseconds): Linux uses preciseClock instead.
type timerClock struct{ t *time.Timer }

func newTimerClock() *timerClock { return &timerClock{t: time.NewTimer(time.Hour)} }

func (c *timerClock) waitUntil(ctx context.Context, t time.Time) error {
	wait := time.Until(t)
	if wait <= 0 {
		return ctx.Err()
	}
	c.t.Reset(wait)
	select {
	case <-c.t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *timerClock) close() { c.t.Stop() }
