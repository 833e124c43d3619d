package load

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paytest/paytest/attack/client"
	"github.com/paytest/paytest/internal/rundir"
)

// DefaultMaxInflight is Config.MaxInflight's default in the open model: a
// bound on goroutines and sockets, far above what a healthy endpoint keeps
// open at the rates one machine sends.
const DefaultMaxInflight = 10000

// A Pacer schedules an open-model run's arrivals: operation i (in plan
// order, from 0) is due Due(i) after the run's start, whatever happened to
// the ones before it. vegeta's pacers answer "how long until the next hit";
// an index keeps every arrival's intended time exact, so latency can count
// from it.
type Pacer interface {
	Due(i int) time.Duration
}

// ConstantPacer is a constant arrival rate, in operations per second.
type ConstantPacer struct{ Rate float64 }

// Due is i / Rate.
func (p ConstantPacer) Due(i int) time.Duration {
	return time.Duration(float64(i) / p.Rate * float64(time.Second))
}

// String is "N/s".
func (p ConstantPacer) String() string { return strconv.FormatFloat(p.Rate, 'f', -1, 64) + "/s" }

// LinearPacer is a rate rising (or falling) linearly from From to To
// operations per second over Over, then holding To: vegeta's linear pacer
// and k6's ramping-arrival-rate.
type LinearPacer struct {
	From, To float64
	Over     time.Duration
}

// Due solves the arrivals-so-far integral, From*t + (To-From)*t²/(2*Over),
// for the time it reaches i.
func (p LinearPacer) Due(i int) time.Duration {
	over := p.Over.Seconds()
	a := (p.To - p.From) / over // rate's slope, per second²
	n := float64(i)
	if ramp := (p.From + p.To) / 2 * over; n > ramp {
		return p.Over + time.Duration((n-ramp)/p.To*float64(time.Second))
	}
	var t float64
	if math.Abs(a) < 1e-12 {
		t = n / p.From
	} else {
		t = (-p.From + math.Sqrt(p.From*p.From+2*a*n)) / a
	}
	return time.Duration(t * float64(time.Second))
}

// String is "FROM:TO/s over D".
func (p LinearPacer) String() string {
	return fmt.Sprintf("%s:%s/s over %s", strconv.FormatFloat(p.From, 'f', -1, 64), strconv.FormatFloat(p.To, 'f', -1, 64), p.Over)
}

// Rate is a parsed --rate: a constant rate (From == To) or a linear ramp.
type Rate struct{ From, To float64 }

// ParseRate reads "N" (operations per second) or "FROM:TO" (a linear ramp
// over the run).
func ParseRate(s string) (Rate, error) {
	from, to, ramp := strings.Cut(strings.TrimSpace(s), ":")
	f, err := strconv.ParseFloat(strings.TrimSuffix(from, "/s"), 64)
	if err != nil || f <= 0 || math.IsInf(f, 0) {
		return Rate{}, fmt.Errorf("rate %q: want a positive number of operations per second, or FROM:TO for a ramp", s)
	}
	r := Rate{From: f, To: f}
	if ramp {
		t, err := strconv.ParseFloat(strings.TrimSuffix(to, "/s"), 64)
		if err != nil || t <= 0 || math.IsInf(t, 0) {
			return Rate{}, fmt.Errorf("rate %q: the ramp's end must be a positive number of operations per second", s)
		}
		r.To = t
	}
	return r, nil
}

// Ramp says whether the rate changes over the run.
func (r Rate) Ramp() bool { return r.From != r.To }

// Ops is how many operations the rate sends in d.
func (r Rate) Ops(d time.Duration) int { return int(math.Round((r.From + r.To) / 2 * d.Seconds())) }

// Over is how long the rate takes to send ops operations (the inverse of
// Ops), the ramp's length.
func (r Rate) Over(ops int) time.Duration {
	return time.Duration(float64(ops) / ((r.From + r.To) / 2) * float64(time.Second))
}

// Pacer is the rate as a Pacer whose ramp lasts over.
func (r Rate) Pacer(over time.Duration) Pacer {
	if !r.Ramp() {
		return ConstantPacer{Rate: r.From}
	}
	return LinearPacer{From: r.From, To: r.To, Over: over}
}

// String is "N/s" or "FROM:TO/s".
func (r Rate) String() string {
	if !r.Ramp() {
		return strconv.FormatFloat(r.From, 'f', -1, 64) + "/s"
	}
	return strconv.FormatFloat(r.From, 'f', -1, 64) + ":" + strconv.FormatFloat(r.To, 'f', -1, 64) + "/s"
}

// openRun is the open model's state beside the runner's.
type openRun struct {
	*runner
	start    time.Time
	inflight atomic.Int64
	dropped  atomic.Int64
	maxLag   atomic.Int64          // nanoseconds an arrival was dispatched after it was due
	done     map[int]chan struct{} // by position: closed when the op is done; only for ops a reuse waits on
	workers  *workers
	// droppedCharges are the ids of the charges dropped at the cap (only
	// the pacer's goroutine appends).
	droppedCharges []int
}

// runOpen sends p's ops at the Pacer's arrivals, each from its own
// goroutine, whatever the endpoint's pace: a slow answer holds no later
// arrival back. An arrival that finds MaxInflight operations open is
// dropped: recorded as one attempt with OutcomeDropped and left
// unconfirmed (Reconcile may send it later), never queued.
func runOpen(ctx context.Context, r *runner) *openRun {
	// Built whole before the first arrival and only read after: the
	// goroutines share it without a lock.
	o := &openRun{runner: r, done: map[int]chan struct{}{}, workers: newWorkers(ctx)}
	for i := range r.p.Len() {
		if r.p.Kind(i) == rundir.KindReuse {
			if orig := indexOf(r.p, r.p.ReuseOf(i)); o.done[orig] == nil {
				o.done[orig] = make(chan struct{})
			}
		}
	}
	r.onDone = func(idx int) {
		o.inflight.Add(-1)
		if ch := o.done[idx]; ch != nil {
			close(ch)
		}
	}
	clock := newPacerClock()
	defer clock.close()
	o.start = time.Now()
	for i := range r.p.Len() {
		due := o.start.Add(r.cfg.Pacer.Due(i))
		if err := clock.waitUntil(ctx, due); err != nil {
			o.workers.Wait()
			return o
		}
		if lag := time.Since(due); lag > time.Duration(o.maxLag.Load()) {
			o.maxLag.Store(int64(lag))
		}
		o.arrive(i, due)
	}
	if r.cfg.OnLastArrival != nil && len(o.droppedCharges) > 0 && ctx.Err() == nil {
		r.cfg.OnLastArrival(o.droppedCharges)
	}
	o.workers.Wait()
	return o
}

// arrive starts op idx, due at due, or drops it at the in-flight cap.
func (o *openRun) arrive(idx int, due time.Time) {
	p := o.p
	o.state[idx].remaining.Store(int32(p.Senders(idx)))
	if o.inflight.Add(1) > int64(o.cfg.MaxInflight) {
		o.dropped.Add(1)
		now := time.Now()
		o.record(rundir.Attempt{
			Op: p.ID(idx), Kind: p.Kind(idx), CallSite: o.cfg.Client.Options().CallSite, Merchant: p.Merchant(idx), Key: p.Key(idx),
			Attempt: 1, DelayReason: rundir.ReasonFirst, Outcome: rundir.OutcomeDropped,
			Error:    fmt.Sprintf("not sent: %d operations already in flight (--max-inflight)", o.cfg.MaxInflight),
			Intended: due, Start: now, End: now,
		})
		o.state[idx].remaining.Store(1)
		o.finish(idx, client.Result{Outcome: rundir.OutcomeDropped, Err: errDropped})
		if p.Kind(idx) == rundir.KindCharge {
			o.droppedCharges = append(o.droppedCharges, p.ID(idx))
		}
		return
	}
	switch {
	case p.Kind(idx) == rundir.KindReuse:
		o.workers.Go(func(ctx context.Context) { o.sendReuse(ctx, idx, due) })
	case p.Race(idx):
		o.workers.Go(func(ctx context.Context) { o.raceAt(ctx, idx, due) })
	default:
		for s := range p.Senders(idx) {
			at := due
			if s > 0 {
				at = due.Add(dupDelay(p.Seed, p.ID(idx), s, o.cfg.DuplicateDelay))
			}
			o.workers.Go(func(ctx context.Context) { o.finish(idx, o.sendAt(ctx, idx, s, at)) })
		}
	}
}

var errDropped = errors.New("load: dropped at the in-flight cap")

// sendAt sends op idx as sender s once at is reached, recording at as the
// first attempt's intended time.
func (o *openRun) sendAt(ctx context.Context, idx, sender int, at time.Time) client.Result {
	if err := sleepUntil(ctx, at); err != nil {
		return client.Result{Err: err}
	}
	req := o.request(idx, sender)
	req.Intended = at
	return o.cfg.Client.Do(ctx, req, o.record)
}

// raceAt releases all of a race's senders together at due.
func (o *openRun) raceAt(ctx context.Context, idx int, due time.Time) {
	if err := sleepUntil(ctx, due); err != nil {
		for range o.p.Senders(idx) {
			o.finish(idx, client.Result{Err: err})
		}
		return
	}
	var wg sync.WaitGroup
	for s := range o.p.Senders(idx) {
		wg.Go(func() { o.finish(idx, o.sendAt(ctx, idx, s, due)) })
	}
	wg.Wait()
}

// sendReuse sends a reuse op once the op whose key it reuses is done, if
// that op succeeded; its latency counts from its own arrival.
func (o *openRun) sendReuse(ctx context.Context, idx int, due time.Time) {
	orig := indexOf(o.p, o.p.ReuseOf(idx))
	select {
	case <-o.done[orig]:
	case <-ctx.Done():
		o.finish(idx, client.Result{Err: ctx.Err()})
		return
	}
	if o.state[orig].flags.Load()&fSucceeded == 0 {
		o.finish(idx, client.Result{Outcome: "not-sent", Err: errors.New("load: the op it reuses did not succeed")})
		return
	}
	o.finish(idx, o.sendAt(ctx, idx, 0, due))
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// openSummary adds the open model's figures to s.
func (o *openRun) openSummary(s *Summary) {
	s.Dropped = int(o.dropped.Load())
	s.MaxLag = time.Duration(o.maxLag.Load())
	s.Pacer = o.cfg.Pacer
}
