package load

import (
	"testing"
	"time"
)

// The pacer's clock wakes on time, where a Go timer wakes up to a
// millisecond late (shown beside it) in an idle program at low rates and in
// bursts at 5,000/s (200us apart): the open model counts latency from the
// due time, so the clock's lateness would read as the target's.
func TestPreciseClockWakesOnTime(t *testing.T) {
	clock := newPacerClock()
	defer clock.close()
	timer := newTimerClock()
	defer timer.close()
	for _, gap := range []time.Duration{200 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond} {
		late := lateness(t, clock, 200, gap)
		p50 := late[len(late)/2]
		tl := lateness(t, timer, 200, gap)
		t.Logf("every %v: lateness p50 %v, p90 %v (a Go timer's: p50 %v, p90 %v)",
			gap, p50, late[len(late)*9/10], tl[len(tl)/2], tl[len(tl)*9/10])
		// A timer's is 500-700us; the clock's a few, and 200 leaves room
		// for a busy machine.
		if p50 > 200*time.Microsecond {
			t.Fatalf("every %v: median lateness %v, want under 200us", gap, p50)
		}
	}
}
