package backoff

import (
	"context"
	"testing"
	"time"
)

func TestFullJitterStaysInItsWindowAndSpreads(t *testing.T) {
	base, ceiling := 10*time.Millisecond, 80*time.Millisecond
	for failures, window := range map[int]time.Duration{1: 10 * time.Millisecond, 2: 20 * time.Millisecond, 4: 80 * time.Millisecond, 10: 80 * time.Millisecond, 100: 80 * time.Millisecond} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := FullJitter(base, ceiling, failures)
			if d < 0 || d >= window {
				t.Fatalf("failures %d: %s outside [0, %s)", failures, d, window)
			}
			seen[d] = true
		}
		if len(seen) < 100 {
			t.Fatalf("failures %d: only %d distinct waits in 200: not jittered", failures, len(seen))
		}
	}
	if FullJitter(0, 0, 1) != 0 {
		t.Fatal("an empty window must give no wait")
	}
}

func TestSleepEndsWithItsContext(t *testing.T) {
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("a full sleep must report true")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	began := time.Now()
	if Sleep(ctx, time.Hour) || time.Since(began) > time.Second {
		t.Fatal("a cancelled sleep must return false at once")
	}
}
