package load

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestWorkersNeverWait: Go returns while every worker is busy (it starts
// another), and Wait returns only once every func has.
func TestWorkersNeverWait(t *testing.T) {
	w := newWorkers(context.Background())
	release := make(chan struct{})
	var done atomic.Int64
	const n = 100
	for range n {
		w.Go(func(context.Context) { <-release; done.Add(1) })
	}
	if got := w.started.Load(); got != n {
		t.Fatalf("%d workers for %d blocked funcs, want one each", got, n)
	}
	close(release)
	w.Wait()
	if got := done.Load(); got != n {
		t.Fatalf("Wait returned with %d of %d funcs done", got, n)
	}
}

// TestWorkersAreReused: funcs given one after another, each done before
// the next, run on a few workers, not one goroutine each.
func TestWorkersAreReused(t *testing.T) {
	w := newWorkers(context.Background())
	const n = 1000
	for range n {
		ch := make(chan struct{})
		w.Go(func(context.Context) { close(ch) })
		<-ch
	}
	w.Wait()
	if got := w.started.Load(); got > n/10 {
		t.Fatalf("%d workers started for %d funcs run one at a time", got, n)
	}
	t.Logf("%d workers for %d funcs", w.started.Load(), n)
}

// TestWorkersContextEndsWithTheRun: the context a worker hands its funcs
// ends when the one the workers were made with does.
func TestWorkersContextEndsWithTheRun(t *testing.T) {
	run, cancel := context.WithCancel(context.Background())
	w := newWorkers(run)
	got := make(chan context.Context, 1)
	w.Go(func(ctx context.Context) { got <- ctx })
	ctx := <-got
	if ctx.Err() != nil {
		t.Fatalf("a worker's context ended before the run's: %v", ctx.Err())
	}
	cancel()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a worker's context still open 5 s after the run's ended")
	}
	w.Wait()
}
