package load

import (
	"testing"
	"time"
)

// The pacer's clock wakes on time in an idle program, at the low rates
// where a Go timer wakes up to a millisecond late (shown beside it): the
// open model counts latency from the due time, so the clock's lateness
// would read as the target's.
func TestPreciseClockWakesOnTime(t *testing.T) {
	clock := newPacerClock()
	defer clock.close()
	timer := newTimerClock()
	defer timer.close()
	for _, gap := range []time.Duration{time.Millisecond, 2500 * time.Microsecond} {
		late := lateness(t, clock, 200, gap)
		p50 := late[len(late)/2]
		tl := lateness(t, timer, 200, gap)
		t.Logf("every %v: lateness p50 %v, p90 %v (a Go timer's: p50 %v, p90 %v)",
			gap, p50, late[len(late)*9/10], tl[len(tl)/2], tl[len(tl)*9/10])
		// A timer's is about 500us; 300 leaves room for a busy machine.
		if p50 > 300*time.Microsecond {
			t.Fatalf("every %v: median lateness %v, want under 300us", gap, p50)
		}
	}
}
