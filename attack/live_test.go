package attack

import (
	"testing"
	"time"

	"github.com/paytest/paytest/internal/rundir"
)

func TestLiveFiguresAreTheLastWholeSecond(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	clock := now
	l := newLive(func() time.Time { return clock })
	answer := func(lat time.Duration) {
		a := rundir.Attempt{Outcome: rundir.OutcomeNew, Intended: clock.Add(-lat), Start: clock, End: clock}
		l.add(&a)
	}
	for i := range 100 {
		clock = now.Add(time.Duration(i) * 10 * time.Millisecond)
		lat := 5 * time.Millisecond
		if i >= 98 {
			lat = 900 * time.Millisecond // the slowest 2%: the p99
		}
		answer(lat)
	}
	if n, _ := l.figures(); n != 0 {
		t.Fatalf("%d/s before the first second ended, want nothing yet", n)
	}
	clock = now.Add(1500 * time.Millisecond)
	n, p99 := l.figures()
	if n != 100 || p99 < 850*time.Millisecond || l.String() == "" {
		t.Fatalf("after 1 s: %d/s p99 %v (%q), want 100/s and the slow answers' ~900ms", n, p99, l.String())
	}
	// A budget refusal is not an answer.
	l.add(&rundir.Attempt{Outcome: rundir.OutcomeBudget, Start: clock, End: clock})
	clock = now.Add(5 * time.Second)
	if n, _ := l.figures(); n != 0 {
		t.Fatalf("%d/s after silent seconds, want 0", n)
	}
}
