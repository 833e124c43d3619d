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

// preciseFrom is the shortest wait preciseClock sleeps in clock_nanosleep;
// a shorter one is left to a Go timer. Arrivals that close together keep
// the runtime busy, and a busy runtime runs its timers on time, while each
// blocking sleep would cost the pacer its P.
const preciseFrom = 300 * time.Microsecond

// preciseClock sleeps in clock_nanosleep, which wakes within tens of
// microseconds of the due time, where a Go timer in an idle program wakes
// up to a millisecond late (the runtime's poller sleeps in whole
// milliseconds). The open model counts latency from the due time, so that
// lateness would be reported as the target's.
type preciseClock struct{ timer *timerClock }

// newPacerClock returns the precise clock.
func newPacerClock() pacerClock { return &preciseClock{timer: newTimerClock()} }

func (c *preciseClock) waitUntil(ctx context.Context, t time.Time) error {
	if time.Until(t) < preciseFrom {
		return c.timer.waitUntil(ctx, t)
	}
	// The senders the last arrival started wait on this P's run queue: let
	// them run before this thread sleeps with the P.
	runtime.Gosched()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		wait := time.Until(t)
		if wait <= 0 {
			return nil
		}
		ts := unix.NsecToTimespec(int64(min(wait, maxNap)))
		// The kernel may wake a sleeper up to its thread's timer slack
		// late (50 us by default): 1 ns on whichever thread this is. It
		// stays so on that thread, which only makes its wakeups prompt.
		_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 1, 0, 0, 0)
		// EINTR (a signal) only ends this nap early: the loop sleeps again.
		_ = unix.ClockNanosleep(unix.CLOCK_MONOTONIC, 0, &ts, nil)
	}
}

func (c *preciseClock) close() { c.timer.close() }
