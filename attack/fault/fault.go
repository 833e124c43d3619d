// Package fault is paytest's catalogue of faults: each kind (eat-response,
// broker-cut, kill, latency, outage, redis-loss, poison) registers itself by
// name, the way toxiproxy's toxics do, and acts on the system under attack
// only through the small interfaces of Env. A fault has a window: Start
// injects it, Stop heals it; one-off faults do their work in Start. Every
// injection and every healing is recorded through Env.Log (faults.jsonl and
// the transcript) as it happens.
package fault

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/rundir"
)

// Proxy names attack creates in its toxiproxy.
const (
	// ProxyCharge sits between the client and the charge endpoint.
	ProxyCharge = "charge"
	// ProxyNATS sits between the relay/consumer and the broker.
	ProxyNATS = "nats"
	// ProxyPostgres sits between the charge service and its database (for
	// the outage fault).
	ProxyPostgres = "postgres"
)

// Fault is one kind of fault. A value is used for one window: New returns a
// fresh one per scheduled spec.
type Fault interface {
	// Start injects the fault. ctx lives as long as the run, so a fault may
	// leave a watcher running on it.
	Start(ctx context.Context, env *Env, spec rundir.FaultSpec) error
	// Stop heals it. It is safe to call when Start failed or more than once.
	Stop(ctx context.Context, env *Env) error
}

// Proxies is the toxiproxy the faults act through.
type Proxies interface {
	AddToxic(proxy, name, typ, stream string, toxicity float32, attrs map[string]any) error
	RemoveToxic(proxy, name string) error
	SetEnabled(proxy string, enabled bool) error
}

// Components kills and restarts the parts of the system under attack;
// target/stack.Stack satisfies it, and so do the --kill-cmd/--restart-cmd
// commands for a team's own endpoint.
type Components interface {
	Kill(name string) error
	Restart(ctx context.Context, name string, extraArgs ...string) error
	// Exited is closed when the component's current process has exited; a
	// nil channel when that cannot be known.
	Exited(name string) <-chan struct{}
}

// Redis is the idempotency cache the redis-loss fault empties.
type Redis interface {
	// Flush deletes every cached key.
	Flush(ctx context.Context) error
	// Restart restarts the server empty.
	Restart(ctx context.Context) error
}

// Publisher puts raw events on the broker, bypassing the outbox (poison).
type Publisher interface {
	Publish(ctx context.Context, data []byte) error
}

// Recorder receives every fault record as it happens. Actions inject,
// start and stop are the faults.jsonl vocabulary (rundir.Fault); any other
// action (arm, error) is a note for the transcript.
type Recorder interface {
	Record(rundir.Fault)
}

// Env is what faults act on. A nil field means the run has no such thing;
// a fault that needs it fails to Start with EUSAGE.
type Env struct {
	Proxies    Proxies
	Components Components
	Redis      Redis
	Publisher  Publisher
	Log        Recorder
	// Ops is the run's number of logical operations.
	Ops int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (e *Env) record(f rundir.Fault) {
	if e == nil || e.Log == nil {
		return
	}
	if f.Time.IsZero() {
		f.Time = e.now()
	}
	e.Log.Record(f)
}

// now reads the Env's clock.
func (e *Env) now() time.Time {
	if e != nil && e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

var (
	regMu    sync.RWMutex
	registry = map[string]func() Fault{}
)

// Register makes a fault kind available by name. It panics on a duplicate,
// like toxiproxy's toxics.Register.
func Register(name string, f func() Fault) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[name]; dup {
		panic("fault: Register called twice for " + name)
	}
	registry[name] = f
}

func lookup(name string) (func() Fault, bool) {
	regMu.RLock()
	defer regMu.RUnlock()
	f, ok := registry[name]
	return f, ok
}

// New returns a fresh fault of the named kind.
func New(name string) (Fault, error) {
	f, ok := lookup(name)
	if !ok {
		return nil, apperr.Errorf(apperr.EUSAGE, "unknown fault %q (known: %s)", name, strings.Join(Names(), ", "))
	}
	return f(), nil
}

// Names lists the registered fault kinds, sorted.
func Names() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	out := make([]string, 0, len(registry))
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// CrashArgs returns, for a kill spec with a crash point, the component and
// the extra arguments that arm it: the crash fires at the K-th hit, K being
// the At fraction of ops (at least 1).
func CrashArgs(s rundir.FaultSpec, ops int) (component string, args []string) {
	if s.Fault != rundir.FaultKill || s.Crash == "" {
		return "", nil
	}
	k := int(s.At*float64(ops) + 0.5)
	if k < 1 {
		k = 1
	}
	return s.Target, []string{"--crash-at", fmt.Sprintf("%s:%d", s.Crash, k)}
}

func need(ok bool, fault, what string) error {
	if ok {
		return nil
	}
	return apperr.Errorf(apperr.EUSAGE, "fault %s needs %s, which this run does not have", fault, what)
}
