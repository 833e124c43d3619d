package load

import (
	"context"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// maxNap bounds one sleep of preciseClock, so that a cancelled context is
// noticed within it.
const maxNap = 5 * time.Millisecond

// yieldFrom is the shortest wait before which preciseClock first yields its
// P: the sender the last arrival woke waits on this P's run queue while
// the thread sleeps in a system call, until the runtime takes the P back
// (tens of microseconds) or the other P steals it, and that wait would
// count in its latency. Arrivals closer than this wait on the Go timer.
const yieldFrom = denseGap

// maxSpin bounds how long preciseClock spins at the end of a wait.
const maxSpin = 100 * time.Microsecond

// firstOversleep is the oversleep a preciseClock assumes before it has
// measured one.
const firstOversleep = 50 * time.Microsecond

// denseGap is the longest gap between arrivals that preciseClock leaves to
// a Go timer. A thread's sleep and wake-up costs a share of CPU time of its
// own, large on a virtual machine, and at one nap per arrival it would be
// a large share of the sender's work. Arrivals this close together keep
// the runtime busy enough that it checks its timers many times between
// two of them, and a Go timer wakes the pacer on time without a nap.
const denseGap = 100 * time.Microsecond

// preciseClock sleeps in clock_nanosleep, which wakes within tens of
// microseconds of the due time, and spins the last of them, where a Go
// timer wakes up to a millisecond late (the runtime's poller sleeps in
// whole milliseconds; between arrivals under a millisecond apart, as at
// 5,000/s, it fires them in bursts). The open model counts latency from
// the due time, so the clock's lateness would be reported as the target's.
// Arrivals at most denseGap apart wait on the Go timer.
type preciseClock struct {
	last  time.Time // the previous due time
	timer *timerClock
	// oversleep is how late the kernel wakes this clock's naps, a moving
	// average: the nap ends that much before the spin's start. A fixed
	// guess spins too long where wake-ups are prompt and wakes late where
	// they are slow.
	oversleep time.Duration
}

// newPacerClock returns the precise clock.
func newPacerClock() pacerClock {
	return &preciseClock{timer: newTimerClock(), oversleep: firstOversleep}
}

// spinFor is how long to spin at the end of a wait: a little more than
// the kernel's usual oversleep, within maxSpin and a quarter of the wait.
func (c *preciseClock) spinFor(wait time.Duration) time.Duration {
	return min(c.oversleep+c.oversleep/4+2*time.Microsecond, maxSpin, wait/4)
}

// woke adds a nap that was to end at want and ended at got to the
// oversleep's average (an eighth each). A nap that ended early, cut by a
// signal, says nothing about it.
func (c *preciseClock) woke(want, got time.Time) {
	if over := got.Sub(want); over >= 0 {
		c.oversleep += (min(over, maxSpin) - c.oversleep) / 8
	}
}

// dense says whether t follows the previous due time by at most denseGap.
func (c *preciseClock) dense(t time.Time) bool {
	gap := t.Sub(c.last)
	c.last = t
	return gap <= denseGap
}

func (c *preciseClock) waitUntil(ctx context.Context, t time.Time) error {
	if c.dense(t) {
		return c.timer.waitUntil(ctx, t)
	}
	wait := time.Until(t)
	if wait >= yieldFrom {
		runtime.Gosched()
	}
	// The spin costs at most a quarter of the time between arrivals.
	spin := c.spinFor(wait)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		wait = time.Until(t)
		if wait <= spin {
			break
		}
		nap := min(wait-spin, maxNap)
		ts := unix.NsecToTimespec(int64(nap))
		began := time.Now()
		// The kernel may wake a sleeper up to its thread's timer slack
		// late (50 us by default): 1 ns on whichever thread this is. It
		// stays so on that thread, which only makes its wakeups prompt.
		_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
		// EINTR (a signal) only ends this nap early: the loop sleeps again.
		if unix.ClockNanosleep(unix.CLOCK_MONOTONIC, 0, &ts, nil) == nil {
			c.woke(began.Add(nap), time.Now())
		}
	}
	for time.Now().Before(t) {
	}
	return nil
}

func (c *preciseClock) close() { c.timer.close() }
