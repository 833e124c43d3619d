package client

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLimitDials: however many dial at once, at most n are in progress;
// the others wait their turn, and one whose context ends while it waits
// gives up with its context's error, without dialing.
func TestLimitDials(t *testing.T) {
	const n = 4
	var now, peak, calls atomic.Int64
	release := make(chan struct{})
	dial := limitDials(func(ctx context.Context, network, addr string) (net.Conn, error) {
		calls.Add(1)
		cur := now.Add(1)
		for p := peak.Load(); cur > p && !peak.CompareAndSwap(p, cur); p = peak.Load() {
		}
		<-release
		now.Add(-1)
		return nil, errors.New("no network in this test")
	}, n)

	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { _, _ = dial(context.Background(), "tcp", "x:1") })
	}
	deadline := time.Now().Add(5 * time.Second)
	for now.Load() < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // polling for the first n to be in their dial
	}
	if got := now.Load(); got != n {
		close(release)
		wg.Wait()
		t.Fatalf("%d dials in progress after 5 s of 50 started, want the limit of %d", got, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := dial(ctx, "tcp", "x:1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("a waiting dial whose context ended: %v, want context.Canceled", err)
	}
	close(release)
	wg.Wait()
	if got := peak.Load(); got != n {
		t.Fatalf("%d dials in progress at once, want the limit of %d", got, n)
	}
	if got := calls.Load(); got != 50 {
		t.Fatalf("%d of 50 dials went through", got)
	}
}
