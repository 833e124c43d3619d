package attack

import (
	"fmt"
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/paytest/paytest/internal/rundir"
)

// live keeps the progress bars' live figures: the attempts answered in
// the last whole second and their p99 latency (from when each was due),
// from two one-second HDR windows that rotate.
type live struct {
	mu       sync.Mutex
	now      func() time.Time
	cur      *hdrhistogram.Histogram
	last     *hdrhistogram.Histogram
	curStart time.Time
}

func newLive(now func() time.Time) *live {
	return &live{now: now, cur: hdrhistogram.New(1, int64(time.Hour/time.Microsecond), 2), last: hdrhistogram.New(1, int64(time.Hour/time.Microsecond), 2), curStart: now()}
}

// rotate moves to the window holding t: the current one becomes the last
// (or, after a silent second, the last is empty).
func (l *live) rotate(t time.Time) {
	switch d := t.Sub(l.curStart); {
	case d < time.Second:
		return
	case d < 2*time.Second:
		l.last, l.cur = l.cur, l.last
	default:
		l.last.Reset()
	}
	l.cur.Reset()
	l.curStart = l.curStart.Add(t.Sub(l.curStart).Truncate(time.Second))
}

// add records an attempt that was sent and answered.
func (l *live) add(a *rundir.Attempt) {
	if !a.Sent() || a.End.IsZero() {
		return
	}
	us := max(1, a.End.Sub(a.Due()).Microseconds())
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rotate(l.now())
	_ = l.cur.RecordValue(min(us, int64(time.Hour/time.Microsecond)))
}

// figures are the last whole second's attempts and p99.
func (l *live) figures() (perSecond int64, p99 time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rotate(l.now())
	if l.last.TotalCount() == 0 {
		return 0, 0
	}
	return l.last.TotalCount(), time.Duration(l.last.ValueAtQuantile(99)) * time.Microsecond
}

// String is the bars' live decoration: "1234/s p99 85ms".
func (l *live) String() string {
	n, p99 := l.figures()
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("%d/s p99 %s", n, p99.Round(time.Millisecond/10))
}
