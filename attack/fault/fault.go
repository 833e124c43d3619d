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

	"github.com/paytest/paytest/attack/history"
	"github.com/paytest/paytest/internal/apperr"
)

// Fault names, as report.json and faults.jsonl use them (README.md,
// "Reference interface").
const (
	EatResponse = "eat-response"
	BrokerCut   = "broker-cut"
	Kill        = "kill"
	RedisLoss   = "redis-loss"
	Outage      = "outage"
	Poison      = "poison"
	Latency     = "latency"
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

// Spec is one scheduled fault, as a profile states it.
type Spec struct {
	// Fault is the kind: one of Names().
	Fault string `yaml:"fault" json:"fault"`
	// At is when it fires, as the fraction of operations done (0 to 1).
	At float64 `yaml:"at" json:"at"`
	// Until, if set, ends the window at this fraction of operations done.
	Until float64 `yaml:"until,omitempty" json:"until,omitempty"`
	// Duration, if set, ends the window this long after it started (the
	// first of Until and Duration wins). Neither: the window lasts until
	// the end of the chaos phase.
	Duration time.Duration `yaml:"duration,omitempty" json:"duration,omitempty"`
	// Toxicity is the probability that a request is affected (toxics).
	Toxicity float64 `yaml:"toxicity,omitempty" json:"toxicity,omitempty"`
	// Target is the component (kill) or proxy (latency) acted on.
	Target string `yaml:"target,omitempty" json:"target,omitempty"`
	// Count is how many things a one-off fault injects (poison events).
	Count int `yaml:"count,omitempty" json:"count,omitempty"`
	// Latency and Jitter for the latency fault.
	Latency time.Duration `yaml:"latency,omitempty" json:"latency,omitempty"`
	Jitter  time.Duration `yaml:"jitter,omitempty" json:"jitter,omitempty"`
	// Crash, for kill, names the target's own crash point
	// ("after-publish"): the component is started armed to die there at
	// the At-th fraction of its work, and the fault restarts it when it does.
	Crash string `yaml:"crash,omitempty" json:"crash,omitempty"`
	// Restart is the extra arguments a killed component restarts with.
	Restart []string `yaml:"restart,omitempty" json:"restart,omitempty"`
	// Phase is a free label (redis-loss: "flush" or "restart").
	Phase string `yaml:"phase,omitempty" json:"phase,omitempty"`
}

// Describe is a one-line human description of the spec.
func (s Spec) Describe() string {
	var b strings.Builder
	b.WriteString(s.Fault)
	if s.Target != "" {
		fmt.Fprintf(&b, " %s", s.Target)
	}
	if s.Crash != "" {
		fmt.Fprintf(&b, " at its %s crash point", s.Crash)
	}
	fmt.Fprintf(&b, " at %.0f%%", s.At*100)
	if s.Until > 0 {
		fmt.Fprintf(&b, " until %.0f%%", s.Until*100)
	}
	if s.Duration > 0 {
		fmt.Fprintf(&b, " for %s", s.Duration)
	}
	if s.Toxicity > 0 {
		fmt.Fprintf(&b, " toxicity %.2f", s.Toxicity)
	}
	if s.Latency > 0 {
		fmt.Fprintf(&b, " latency %s", s.Latency)
	}
	if s.Count > 0 {
		fmt.Fprintf(&b, " count %d", s.Count)
	}
	if s.Phase != "" {
		fmt.Fprintf(&b, " (%s)", s.Phase)
	}
	return b.String()
}

// Validate checks the spec's kind and ranges.
func (s Spec) Validate() error {
	if _, ok := lookup(s.Fault); !ok {
		return apperr.Errorf(apperr.EUSAGE, "unknown fault %q (known: %s)", s.Fault, strings.Join(Names(), ", "))
	}
	if s.At < 0 || s.At > 1 || s.Until < 0 || s.Until > 1 || (s.Until > 0 && s.Until < s.At) {
		return apperr.Errorf(apperr.EUSAGE, "fault %s: at/until must be fractions 0..1 with until >= at", s.Fault)
	}
	if s.Toxicity < 0 || s.Toxicity > 1 {
		return apperr.Errorf(apperr.EUSAGE, "fault %s: toxicity %v not in 0..1", s.Fault, s.Toxicity)
	}
	return nil
}

// Fault is one kind of fault. A value is used for one window: New returns a
// fresh one per scheduled spec.
type Fault interface {
	// Start injects the fault. ctx lives as long as the run, so a fault may
	// leave a watcher running on it.
	Start(ctx context.Context, env *Env, spec Spec) error
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

// Connections makes the client open a fresh connection per request while
// on: toxiproxy draws a toxic's toxicity per connection, so this turns it
// into a per-request probability. Calls nest.
type Connections interface {
	FreshConnections(on bool)
}

// Recorder receives every fault record as it happens. Actions inject,
// start and stop are the faults.jsonl vocabulary (history.Fault); any other
// action (arm, error) is a note for the transcript.
type Recorder interface {
	Record(history.Fault)
}

// Env is what faults act on. A nil field means the run has no such thing;
// a fault that needs it fails to Start with EUSAGE.
type Env struct {
	Proxies     Proxies
	Components  Components
	Redis       Redis
	Publisher   Publisher
	Connections Connections
	Log         Recorder
	// Ops is the run's number of logical operations.
	Ops int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (e *Env) record(f history.Fault) {
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
func CrashArgs(s Spec, ops int) (component string, args []string) {
	if s.Fault != Kill || s.Crash == "" {
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
