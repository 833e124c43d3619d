package attack

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/paytest/paytest/internal/rundir"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// progress shows the run as it goes: mpb bars on a terminal, else nothing
// until one summary line per phase.
type progress struct {
	w        io.Writer
	mu       sync.Mutex
	p        *mpb.Progress
	bars     map[string]*mpb.Bar
	ops      int64
	drainMax int64
	// live is the attempts' rate and p99 over the last second, shown
	// beside the attempts bar.
	live *live
}

const (
	barOps      = "ops confirmed"
	barAttempts = "attempts"
	barDrained  = "outbox drained"
	barEffects  = "effects applied"
)

func newProgress(ctx context.Context, w io.Writer, bars bool, ops, charges int) *progress {
	pr := &progress{w: w, ops: int64(ops), bars: map[string]*mpb.Bar{}, live: newLive(time.Now)}
	if w == nil {
		pr.w = io.Discard
		return pr
	}
	if !bars {
		return pr
	}
	pr.p = mpb.NewWithContext(ctx, mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
	add := func(name string, total int64) {
		app := []decor.Decorator{decor.CountersNoUnit("%d / %d")}
		if name == barAttempts {
			app = append(app, decor.Any(func(decor.Statistics) string { return "  " + pr.live.String() }))
		}
		pr.bars[name] = pr.p.AddBar(total,
			mpb.PrependDecorators(decor.Name(name, decor.WC{W: len(barEffects) + 1, C: decor.DindentRight})),
			mpb.AppendDecorators(app...))
	}
	add(barOps, int64(ops))
	add(barAttempts, 0)
	add(barDrained, 0)
	add(barEffects, int64(charges))
	return pr
}

func (pr *progress) set(name string, v int64) {
	if pr.p == nil {
		return
	}
	if b := pr.bars[name]; b != nil {
		b.SetCurrent(v)
	}
}

// attempts grows the attempts bar's total with its count (it has no
// known total) and feeds the live rate and p99.
func (pr *progress) attempts(n int64, a *rundir.Attempt) {
	if pr.p == nil {
		return
	}
	pr.live.add(a)
	b := pr.bars[barAttempts]
	b.SetTotal(n, false)
	b.SetCurrent(n)
}

// pending tracks the outbox: the bar's total is the largest backlog seen.
func (pr *progress) pending(n int64) {
	if pr.p == nil {
		return
	}
	pr.mu.Lock()
	if n > pr.drainMax {
		pr.drainMax = n
	}
	max := pr.drainMax
	pr.mu.Unlock()
	b := pr.bars[barDrained]
	b.SetTotal(max, false)
	b.SetCurrent(max - n)
}

// line prints a summary line: above the bars on a terminal, plainly
// otherwise.
func (pr *progress) line(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if pr.p != nil {
		_, _ = fmt.Fprintln(pr.p, msg)
		return
	}
	_, _ = fmt.Fprintln(pr.w, msg)
}

// done completes every bar and waits for the last render.
func (pr *progress) done() {
	if pr.p == nil {
		return
	}
	for _, b := range pr.bars {
		b.SetTotal(-1, true)
	}
	pr.p.Wait()
	pr.p = nil
}
