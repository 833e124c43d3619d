package load

import (
	"context"
	"slices"
	"testing"
	"time"
)

// lateness is how late clock wakes for n waits spaced gap apart, sorted.
func lateness(t *testing.T, clock pacerClock, n int, gap time.Duration) []time.Duration {
	t.Helper()
	start := time.Now()
	late := make([]time.Duration, 0, n)
	for i := range n {
		due := start.Add(time.Duration(i+1) * gap)
		if err := clock.waitUntil(context.Background(), due); err != nil {
			t.Fatal(err)
		}
		late = append(late, time.Since(due))
	}
	slices.Sort(late)
	return late
}

// The pacer's clock never wakes before the due time.
func TestPacerClockNeverWakesEarly(t *testing.T) {
	clock := newPacerClock()
	defer clock.close()
	for _, gap := range []time.Duration{time.Millisecond, 100 * time.Microsecond} {
		if late := lateness(t, clock, 100, gap); late[0] < 0 {
			t.Fatalf("every %v: woke %v early", gap, -late[0])
		}
	}
}

// A cancelled context ends a long wait at once (within one nap).
func TestPacerClockStopsWithItsContext(t *testing.T) {
	clock := newPacerClock()
	defer clock.close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(20*time.Millisecond, cancel)
	began := time.Now()
	if err := clock.waitUntil(ctx, began.Add(time.Hour)); err != context.Canceled {
		t.Fatalf("waitUntil = %v, want context.Canceled", err)
	}
	if took := time.Since(began); took > 100*time.Millisecond {
		t.Fatalf("returned %v after the wait began, the context ended at 20ms", took)
	}
}
