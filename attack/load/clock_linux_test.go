package load

import (
	"testing"
	"time"
)

// The pacer's clock wakes on time, where a Go timer wakes up to a
// millisecond late (shown beside it) in an idle program at low rates and in
// bursts at 5,000/s (200us apart): the open model counts latency from the
// due time, so the clock's lateness would read as the target's.
//
// Other test processes share the CPUs under make test, and a thread that
// is not scheduled cannot wake on time (CI once read a median of 610us,
// the Go timer's 656us beside it): the best of three windows is judged. A
// clock that wakes late by design is late in every window.
func TestPreciseClockWakesOnTime(t *testing.T) {
	clock := newPacerClock()
	defer clock.close()
	timer := newTimerClock()
	defer timer.close()
	for _, gap := range []time.Duration{200 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond} {
		best := time.Duration(-1)
		for window := range 3 {
			late := lateness(t, clock, 200, gap)
			p50 := late[len(late)/2]
			tl := lateness(t, timer, 200, gap)
			t.Logf("every %v, window %d: lateness p50 %v, p90 %v (a Go timer's: p50 %v, p90 %v)",
				gap, window+1, p50, late[len(late)*9/10], tl[len(tl)/2], tl[len(tl)*9/10])
			if best < 0 || p50 < best {
				best = p50
			}
			// A timer's is 500-700us; the clock's a few, and 200 leaves
			// room for a busy machine.
			if best <= 200*time.Microsecond {
				break
			}
		}
		if best > 200*time.Microsecond {
			t.Fatalf("every %v: median lateness %v in the best of three windows, want under 200us", gap, best)
		}
	}
}

// Arrivals at most denseGap apart wait on the Go timer (no nap per
// arrival); sparser ones, and the first, on the precise sleep.
func TestPreciseClockLeavesDenseArrivalsToTheTimer(t *testing.T) {
	c := &preciseClock{timer: newTimerClock()}
	defer c.close()
	start := time.Now()
	for _, tc := range []struct {
		after time.Duration // since start
		dense bool
	}{
		{0, false}, // the first arrival
		{200 * time.Microsecond, false},
		{200*time.Microsecond + denseGap, true},
		{200*time.Microsecond + denseGap + 40*time.Microsecond, true},
		{200*time.Microsecond + denseGap + 40*time.Microsecond, true}, // due together
		{time.Millisecond, false},
	} {
		if got := c.dense(start.Add(tc.after)); got != tc.dense {
			t.Errorf("arrival at +%v: dense %v, want %v", tc.after, got, tc.dense)
		}
	}
}

// The clock learns how late the kernel wakes its naps and spins a little
// more than that, within a quarter of the wait; a nap cut short by a
// signal and a freak late one do not throw it off.
func TestPreciseClockLearnsItsOversleep(t *testing.T) {
	c := &preciseClock{oversleep: firstOversleep}
	want := time.Now()
	for range 100 {
		c.woke(want, want.Add(10*time.Microsecond))
	}
	if c.oversleep < 9*time.Microsecond || c.oversleep > 11*time.Microsecond {
		t.Fatalf("oversleep %v after naps 10us late, want about 10us", c.oversleep)
	}
	before := c.oversleep
	c.woke(want, want.Add(-time.Millisecond)) // cut short
	if c.oversleep != before {
		t.Fatalf("a nap cut short moved the oversleep from %v to %v", before, c.oversleep)
	}
	c.woke(want, want.Add(time.Second))
	if c.oversleep > before+maxSpin/8 {
		t.Fatalf("one nap a second late moved the oversleep from %v to %v", before, c.oversleep)
	}
	c.oversleep = 10 * time.Microsecond
	for _, tc := range []struct{ wait, spin time.Duration }{
		{time.Millisecond, 14500 * time.Nanosecond}, // 10us + a quarter + 2us
		{40 * time.Microsecond, 10 * time.Microsecond},
	} {
		if got := c.spinFor(tc.wait); got != tc.spin {
			t.Errorf("spin before a %v wait: %v, want %v", tc.wait, got, tc.spin)
		}
	}
	c.oversleep = maxSpin
	if got := c.spinFor(time.Second); got != maxSpin {
		t.Errorf("spin with a slow kernel: %v, want the %v bound", got, maxSpin)
	}
}
