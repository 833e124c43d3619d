package load

import (
	"context"
	"sync"
	"sync/atomic"
)

// workers runs the open model's sends on goroutines that outlive them. A
// goroutine per arrival would start on a small stack and grow it (copy
// it, frame by frame) on its way down net/http at every arrival, a large
// share of the sender's CPU at high rates. A worker grows its stack once.
//
// Each worker hands its funcs a context of its own, derived once from the
// run's: every attempt's timeout context registers with its parent under
// the parent's lock, and thousands of open ops registering with the run's
// one context queued on that lock whenever a stall had let them pile up.
type workers struct {
	ctx     context.Context
	work    chan func(context.Context)
	wg      sync.WaitGroup
	started atomic.Int64 // workers started, for tests
}

func newWorkers(ctx context.Context) *workers {
	return &workers{ctx: ctx, work: make(chan func(context.Context))}
}

// Go runs f on an idle worker, or on a new one when none is idle: it never
// waits, so a slow send holds no arrival back. f's context ends when the
// run's does.
func (w *workers) Go(f func(ctx context.Context)) {
	select {
	case w.work <- f:
	default:
		w.started.Add(1)
		w.wg.Go(func() {
			ctx, cancel := context.WithCancel(w.ctx)
			defer cancel()
			f(ctx)
			for f := range w.work {
				f(ctx)
			}
		})
	}
}

// Wait returns once every f given to Go has returned, and ends the
// workers. Go must not be called after it.
func (w *workers) Wait() {
	close(w.work)
	w.wg.Wait()
}
