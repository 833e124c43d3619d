package attack

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/paytest/paytest/attack/fault"
)

// scheduled is one fault of the profile's schedule.
type scheduled struct {
	spec    fault.Spec
	f       fault.Fault
	startAt int // ops done at which it starts
	endAt   int // ops done at which it stops; 0: not by ops
	started time.Time
	running bool
	stopped bool
}

// schedule fires the profile's faults as operations complete: a fault
// starts once At of the ops are done and stops at Until or after Duration.
// The points are computed from the plan's size alone, so the same profile
// and ops give the same schedule.
type schedule struct {
	env   *fault.Env
	j     *journal
	items []*scheduled
	// crash holds the crash-point kills armed before load starts.
	crash []*scheduled
	// charges is the plan's number of charges (crash points count them).
	charges int
	mu      sync.Mutex
	done    int
	wake    chan struct{}
	errs    []error
}

func newSchedule(specs []fault.Spec, ops, charges int, env *fault.Env, j *journal) (*schedule, error) {
	s := &schedule{env: env, j: j, wake: make(chan struct{}, 1), charges: charges}
	for _, sp := range specs {
		f, err := fault.New(sp.Fault)
		if err != nil {
			return nil, err
		}
		it := &scheduled{spec: sp, f: f, startAt: int(math.Ceil(sp.At * float64(ops)))}
		if sp.Until > 0 {
			it.endAt = int(math.Ceil(sp.Until * float64(ops)))
		}
		if sp.Fault == fault.Kill && sp.Crash != "" {
			s.crash = append(s.crash, it)
			continue
		}
		s.items = append(s.items, it)
	}
	return s, nil
}

// describe lists the schedule for the transcript.
func (s *schedule) describe() []string {
	var out []string
	for _, it := range s.crash {
		_, args := fault.CrashArgs(it.spec, s.charges)
		out = append(out, fmt.Sprintf("%s: armed with %s", it.spec.Describe(), strings.Join(args, " ")))
	}
	for _, it := range s.items {
		end := ""
		if it.endAt > 0 {
			end = fmt.Sprintf(" to op %d", it.endAt)
		}
		out = append(out, fmt.Sprintf("%s: from op %d%s", it.spec.Describe(), it.startAt, end))
	}
	return out
}

// opDone is called by the load runner for every finished operation.
func (s *schedule) opDone() {
	s.mu.Lock()
	s.done++
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// arm starts the crash-point watchers (the component is already armed).
func (s *schedule) arm(ctx context.Context) {
	for _, it := range s.crash {
		if err := it.f.Start(ctx, s.env, it.spec); err != nil {
			s.fail(it, err)
			continue
		}
		it.running = true
	}
}

func (s *schedule) fail(it *scheduled, err error) {
	s.j.printf(time.Now(), "FAULT %s failed: %v", it.spec.Fault, err)
	s.mu.Lock()
	s.errs = append(s.errs, fmt.Errorf("%s: %w", it.spec.Describe(), err))
	s.mu.Unlock()
}

// step starts and stops what is due.
func (s *schedule) step(ctx context.Context, now time.Time) {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	for _, it := range s.items {
		if !it.running && !it.stopped && done >= it.startAt {
			if err := it.f.Start(ctx, s.env, it.spec); err != nil {
				s.fail(it, err)
				it.stopped = true
				continue
			}
			it.running, it.started = true, now
		}
		if it.running && ((it.endAt > 0 && done >= it.endAt) || (it.spec.Duration > 0 && now.Sub(it.started) >= it.spec.Duration)) {
			s.stop(ctx, it)
		}
	}
}

func (s *schedule) stop(ctx context.Context, it *scheduled) {
	if err := it.f.Stop(ctx, s.env); err != nil {
		s.fail(it, err)
	}
	it.running, it.stopped = false, true
}

// run drives the schedule until loadDone closes; then it starts what is
// still due, lets the running timed windows finish their duration, and
// stops everything. ctx is the run's context (watchers live on it).
func (s *schedule) run(ctx context.Context, loadDone <-chan struct{}) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	s.step(ctx, time.Now())
	for {
		select {
		case <-ctx.Done():
			s.stopAll(context.Background())
			return
		case <-s.wake:
		case <-tick.C:
		case <-loadDone:
			s.step(ctx, time.Now())
			for s.timedRunning(time.Now()) {
				select {
				case <-ctx.Done():
					s.stopAll(context.Background())
					return
				case <-tick.C:
					s.step(ctx, time.Now())
				}
			}
			s.stopAll(ctx)
			return
		}
		s.step(ctx, time.Now())
	}
}

func (s *schedule) timedRunning(now time.Time) bool {
	for _, it := range s.items {
		if it.running && it.spec.Duration > 0 && now.Sub(it.started) < it.spec.Duration {
			return true
		}
	}
	return false
}

// stopAll heals every running window (not the crash watchers, which end
// with the run).
func (s *schedule) stopAll(ctx context.Context) {
	for _, it := range s.items {
		if it.running {
			s.stop(ctx, it)
		}
	}
}

// waitCrashes waits, up to timeout, for armed crash-point kills whose
// component died to have restarted it.
func (s *schedule) waitCrashes(ctx context.Context, timeout time.Duration) {
	for _, it := range s.crash {
		w, ok := it.f.(fault.Waiter)
		if !ok || w.Wait() == nil || !it.running {
			continue
		}
		select {
		case <-w.Wait():
		case <-s.env.Components.Exited(it.spec.Target):
			// It died but the restart is still under way.
			select {
			case <-w.Wait():
			case <-time.After(timeout):
			case <-ctx.Done():
			}
		default:
			// It has not died (yet): nothing to wait for.
		}
	}
}

func (s *schedule) errors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.errs...)
}

// wait waits for the crash-point watchers to end (after the run's context
// is cancelled, or their restart is done).
func (s *schedule) wait() {
	for _, it := range s.crash {
		if w, ok := it.f.(fault.Waiter); ok && it.running && w.Wait() != nil {
			<-w.Wait()
		}
	}
}
