package load

import (
	"sync"
	"sync/atomic"
)

// workers runs the open model's sends on goroutines that outlive them. A
// goroutine per arrival would start on a small stack and grow it (copy
// it, frame by frame) on its way down net/http at every arrival, a large
// share of the sender's CPU at high rates. A worker grows its stack once.
type workers struct {
	work    chan func()
	wg      sync.WaitGroup
	started atomic.Int64 // workers started, for tests
}

func newWorkers() *workers { return &workers{work: make(chan func())} }

// Go runs f on an idle worker, or on a new one when none is idle: it never
// waits, so a slow send holds no arrival back.
func (w *workers) Go(f func()) {
	select {
	case w.work <- f:
	default:
		w.started.Add(1)
		w.wg.Go(func() {
			f()
			for f := range w.work {
				f()
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
