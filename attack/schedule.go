package attack

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/paytest/paytest/attack/fault"
	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/rundir"
	"github.com/paytest/paytest/profiles"
	"github.com/paytest/paytest/target/charge"
	"github.com/paytest/paytest/target/consumer"
	"github.com/paytest/paytest/target/relay"
	"github.com/paytest/paytest/target/stack"
)

// TargetComponent is what a kill of a team's endpoint is called everywhere:
// the transcript, faults.jsonl and --kill-cmd's PAYTEST_COMPONENT.
const TargetComponent = "target"

// plainKillDowntime is how long a plain kill (no crash point) keeps the
// component down before it is restarted.
const plainKillDowntime = 500 * time.Millisecond

// crashPoints lists each bundled component's crash points.
var crashPoints = map[string][]string{
	stack.Charge:   charge.CrashPoints,
	stack.Relay:    {relay.CrashAfterPublish},
	stack.Consumer: {consumer.CrashAfterApplyBeforeAck},
}

// bundledComponents are the reference system's components a kill may name.
var bundledComponents = []string{stack.Charge, stack.Relay, stack.Consumer}

// bundledProxies are the proxies a fault may name on the bundled system:
// client to charge service, relay and consumer to the broker, charge
// service to its database.
var bundledProxies = []string{fault.ProxyCharge, fault.ProxyNATS, fault.ProxyPostgres}

// planFaults turns the profile's schedule, --skip-fault and --kill-at into
// the faults this run fires. Every fault either acts on the system under
// attack or is refused here, before anything starts, with EUSAGE naming it
// and the profile: against a team's endpoint eat-response, latency and
// outage act through the proxy in front of it and kill through --kill-cmd;
// on the bundled system a fault must name a component, crash point or
// proxy that exists.
func planFaults(cfg *Config) ([]rundir.FaultSpec, error) {
	if err := cfg.Faults.Validate(); err != nil {
		return nil, err
	}
	var out []rundir.FaultSpec
	for _, s := range cfg.Profile.Faults {
		if err := s.Validate(); err != nil {
			return nil, apperr.Wrap(apperr.EUSAGE, err, "profile %s", cfg.Profile.Name)
		}
		if slices.Contains(cfg.Faults.Skip, s.Fault) {
			continue
		}
		var err error
		if cfg.Target.URL != "" {
			s, err = targetFault(cfg, s)
		} else {
			err = bundledFault(cfg.Profile.Name, s)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	for _, at := range cfg.Faults.KillAt {
		if cfg.Target.URL != "" && cfg.Target.KillCmd == "" {
			return nil, apperr.Errorf(apperr.EUSAGE, "--kill-at needs --kill-cmd (and --restart-cmd) to kill your endpoint")
		}
		// On the bundled system the endpoint under attack is the charge
		// service, as a team's endpoint is with --target.
		kill := rundir.FaultSpec{Fault: rundir.FaultKill, Target: TargetComponent, At: at}
		if cfg.Target.URL == "" {
			kill.Target = stack.Charge // restarted with the flags it first started with, below
		}
		out = append(out, kill)
	}
	for i := range out {
		s := &out[i]
		if s.Fault == rundir.FaultKill && s.Crash == "" && s.Duration == 0 && s.Until == 0 {
			s.Duration = plainKillDowntime
		}
		if s.Fault == rundir.FaultKill && cfg.Target.URL == "" {
			// A restarted component keeps the flags it started with (the
			// profile's and --charge-arg/--relay-arg/--consumer-arg); the
			// kill's own restart flags come last and win.
			s.Restart = append(componentArgs(cfg, s.Target), s.Restart...)
		}
	}
	return out, nil
}

// componentArgs are the flags a bundled component first started with,
// crash points aside.
func componentArgs(cfg *Config, name string) []string {
	switch name {
	case stack.Charge:
		return slices.Clone(cfg.Profile.Charge)
	case stack.Relay:
		return slices.Clone(cfg.Profile.Relay)
	case stack.Consumer:
		return slices.Clone(cfg.Profile.Consumer)
	}
	return nil
}

// targetFault adapts one fault to a team's endpoint, or refuses it.
func targetFault(cfg *Config, s rundir.FaultSpec) (rundir.FaultSpec, error) {
	refuse := func(why string) error {
		return apperr.Errorf(apperr.EUSAGE, "profile %s: fault %q cannot fire against --target: %s; "+
			"choose a profile whose faults can (%s), write your own, or leave it out with --skip-fault %s",
			cfg.Profile.Name, s.Describe(), why, strings.Join(targetProfiles(), ", "), s.Fault)
	}
	switch s.Fault {
	case rundir.FaultEatResponse:
	case rundir.FaultLatency, rundir.FaultOutage:
		// The proxy in front of the endpoint: latency on its responses, an
		// outage as the proxy refusing connections for the window.
		if s.Target != "" && s.Target != fault.ProxyCharge && s.Target != TargetComponent {
			return s, refuse(fmt.Sprintf("the only proxy is the one in front of your endpoint (%q), not %q", TargetComponent, s.Target))
		}
		s.Target = fault.ProxyCharge
	case rundir.FaultKill:
		if cfg.Target.KillCmd == "" {
			return s, refuse("a kill of your endpoint needs --kill-cmd (and --restart-cmd)")
		}
		// A component's crash point becomes a kill of the whole endpoint
		// at the same point of the run.
		s.Target, s.Crash = TargetComponent, ""
	case rundir.FaultBrokerCut:
		return s, refuse("it cuts the bundled system's broker")
	case rundir.FaultRedisLoss:
		return s, refuse("it empties the bundled charge service's Redis")
	case rundir.FaultPoison:
		return s, refuse("it publishes malformed events on the bundled system's broker")
	default:
		return s, refuse("it needs the bundled reference system")
	}
	return s, nil
}

// targetProfiles lists the built-in profiles whose every fault can fire
// against a team's endpoint without --kill-cmd.
func targetProfiles() []string {
	var out []string
	for _, p := range profiles.List() {
		ok := true
		for _, f := range p.Faults {
			ok = ok && (f.Fault == rundir.FaultEatResponse || f.Fault == rundir.FaultLatency || f.Fault == rundir.FaultOutage)
		}
		if ok {
			out = append(out, p.Name)
		}
	}
	return out
}

// bundledFault checks that a fault names what the bundled system has.
func bundledFault(profile string, s rundir.FaultSpec) error {
	switch s.Fault {
	case rundir.FaultKill:
		points, ok := crashPoints[s.Target]
		if !ok {
			return apperr.Errorf(apperr.EUSAGE, "profile %s: fault %q: kill needs a target component of the reference system (%s), not %q",
				profile, s.Describe(), strings.Join(bundledComponents, ", "), s.Target)
		}
		if s.Crash != "" && !slices.Contains(points, s.Crash) {
			return apperr.Errorf(apperr.EUSAGE, "profile %s: fault %q: %s has no crash point %q (it has %s)",
				profile, s.Describe(), s.Target, s.Crash, strings.Join(points, ", "))
		}
	case rundir.FaultLatency, rundir.FaultBrokerCut, rundir.FaultOutage:
		if s.Target != "" && !slices.Contains(bundledProxies, s.Target) {
			return apperr.Errorf(apperr.EUSAGE, "profile %s: fault %q: no proxy %q on the reference system (it has %s)",
				profile, s.Describe(), s.Target, strings.Join(bundledProxies, ", "))
		}
	}
	if s.Crash != "" && s.Fault != rundir.FaultKill {
		return apperr.Errorf(apperr.EUSAGE, "profile %s: fault %q: only kill takes a crash point", profile, s.Describe())
	}
	return nil
}

// scheduled is one fault of the profile's schedule.
type scheduled struct {
	spec    rundir.FaultSpec
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
}

func newSchedule(specs []rundir.FaultSpec, ops, charges int, env *fault.Env, j *journal) (*schedule, error) {
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
		if sp.Fault == rundir.FaultKill && sp.Crash != "" {
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

// fail records a fault that could not start or stop (faults.jsonl action
// "error"): the run is then inconclusive.
func (s *schedule) fail(it *scheduled, err error) {
	s.j.Record(rundir.Fault{Fault: it.spec.Fault, Action: rundir.ActionError, Target: it.spec.Target,
		Detail: fmt.Sprintf("%s: %v", it.spec.Describe(), err)})
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

// unfired describes the armed crash-point kills whose component has not
// died (it never reached its crash point): faults that never fired.
func (s *schedule) unfired() []string {
	var out []string
	for _, it := range s.crash {
		if !it.running {
			continue // failed to arm: recorded as an error
		}
		select {
		case <-s.env.Components.Exited(it.spec.Target):
		default:
			if w, ok := it.f.(fault.Waiter); !ok || !closed(w.Wait()) {
				out = append(out, it.spec.Describe())
			}
		}
	}
	return out
}

// closed reports whether c is closed (a nil channel never is).
func closed(c <-chan struct{}) bool {
	if c == nil {
		return false
	}
	select {
	case <-c:
		return true
	default:
		return false
	}
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
