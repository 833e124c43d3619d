package fault

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"

	"github.com/paytest/paytest/internal/rundir"
	"github.com/paytest/paytest/internal/toxiembed"
)

func init() {
	Register(rundir.FaultEatResponse, func() Fault { return &toxic{kind: rundir.FaultEatResponse} })
	Register(rundir.FaultLatency, func() Fault { return &toxic{kind: rundir.FaultLatency} })
	Register(rundir.FaultBrokerCut, func() Fault { return &cut{kind: rundir.FaultBrokerCut, proxy: ProxyNATS} })
	Register(rundir.FaultOutage, func() Fault { return &cut{kind: rundir.FaultOutage, proxy: ProxyPostgres} })
	Register(rundir.FaultKill, func() Fault { return &kill{} })
	Register(rundir.FaultRedisLoss, func() Fault { return &redisLoss{} })
	Register(rundir.FaultPoison, func() Fault { return &poison{} })
}

var (
	_ Fault = (*toxic)(nil)
	_ Fault = (*cut)(nil)
	_ Fault = (*kill)(nil)
	_ Fault = redisLoss{}
	_ Fault = poison{}
)

// toxic adds a toxiproxy toxic for its window: eat-response is a downstream
// eat_response on the client->charge proxy (the request reaches the service
// and commits; the response is dropped and the connection closed, each
// response with probability toxicity, on whatever connection it travels:
// toxiembed.EatResponse), latency a latency toxic on the named proxy.
type toxic struct {
	kind    string
	proxy   string
	name    string
	started bool
	mu      sync.Mutex
	spec    rundir.FaultSpec
}

func (t *toxic) Start(_ context.Context, env *Env, s rundir.FaultSpec) error {
	if err := need(env.Proxies != nil, t.kind, "a toxiproxy"); err != nil {
		return err
	}
	toxicity := float32(s.Toxicity)
	if toxicity == 0 {
		toxicity = 1
	}
	var typ string
	var attrs map[string]any
	t.proxy = ProxyCharge
	switch t.kind {
	case rundir.FaultEatResponse:
		// The toxic draws per response; the link always carries it.
		typ, attrs = toxiembed.EatResponseType, map[string]any{"probability": toxicity}
		toxicity = 1
	case rundir.FaultLatency:
		if s.Target != "" {
			t.proxy = s.Target
		}
		typ, attrs = "latency", map[string]any{"latency": s.Latency.Milliseconds(), "jitter": s.Jitter.Milliseconds()}
	}
	t.name = t.kind
	if err := env.Proxies.AddToxic(t.proxy, t.name, typ, "downstream", toxicity, attrs); err != nil {
		return fmt.Errorf("fault %s: %w", t.kind, err)
	}
	t.mu.Lock()
	t.started, t.spec = true, s
	t.mu.Unlock()
	env.record(rundir.Fault{Fault: t.kind, Action: rundir.ActionStart, Target: t.proxy,
		Detail: fmt.Sprintf("%s toxic %v, toxicity %.2f: %s", typ, attrs, toxicity, s.Describe())})
	return nil
}

func (t *toxic) Stop(_ context.Context, env *Env) error {
	t.mu.Lock()
	started := t.started
	t.started = false
	t.mu.Unlock()
	if !started {
		return nil
	}
	err := env.Proxies.RemoveToxic(t.proxy, t.name)
	env.record(rundir.Fault{Fault: t.kind, Action: rundir.ActionStop, Target: t.proxy, Detail: "toxic removed"})
	return err
}

// cut disables a proxy for its window: broker-cut the one between the
// relay/consumer and NATS (every connection through it drops), outage the
// one between the charge service and its database.
type cut struct {
	kind, proxy string
	mu          sync.Mutex
	started     bool
}

func (c *cut) Start(_ context.Context, env *Env, s rundir.FaultSpec) error {
	if err := need(env.Proxies != nil, c.kind, "a toxiproxy"); err != nil {
		return err
	}
	if s.Target != "" {
		c.proxy = s.Target
	}
	// The window opens when the disabling begins: toxiproxy drops the
	// proxy's connections before the call returns (up to a few hundred
	// ms later), and requests fail from the first drop on.
	began := env.now()
	if err := env.Proxies.SetEnabled(c.proxy, false); err != nil {
		return fmt.Errorf("fault %s: %w", c.kind, err)
	}
	c.mu.Lock()
	c.started = true
	c.mu.Unlock()
	env.record(rundir.Fault{Time: began, Fault: c.kind, Action: rundir.ActionStart, Target: c.proxy, Detail: "proxy disabled: " + s.Describe()})
	return nil
}

func (c *cut) Stop(_ context.Context, env *Env) error {
	c.mu.Lock()
	started := c.started
	c.started = false
	c.mu.Unlock()
	if !started {
		return nil
	}
	err := env.Proxies.SetEnabled(c.proxy, true)
	env.record(rundir.Fault{Fault: c.kind, Action: rundir.ActionStop, Target: c.proxy, Detail: "proxy enabled"})
	return err
}

// kill crashes a component and restarts it. With rundir.FaultSpec.Crash the component
// was started armed with its own crash point (see CrashArgs) and dies by
// itself; Start then only watches, and when the process exits records the
// kill and restarts it with rundir.FaultSpec.Restart. Without Crash, Start kills it
// (SIGKILL, or the team's --kill-cmd) and Stop restarts it.
type kill struct {
	mu      sync.Mutex
	spec    rundir.FaultSpec
	killed  bool
	watcher chan struct{}
}

func (k *kill) Start(ctx context.Context, env *Env, s rundir.FaultSpec) error {
	if err := need(env.Components != nil, rundir.FaultKill, "components to kill"); err != nil {
		return err
	}
	if s.Target == "" {
		return need(false, rundir.FaultKill, "a target component")
	}
	k.spec = s
	if s.Crash != "" {
		exited := env.Components.Exited(s.Target)
		if exited == nil {
			return need(false, rundir.FaultKill, "a component whose exit can be watched")
		}
		env.record(rundir.Fault{Fault: rundir.FaultKill, Action: rundir.ActionArm, Target: s.Target, Detail: s.Describe()})
		k.watcher = make(chan struct{})
		go func() {
			defer close(k.watcher)
			select {
			case <-ctx.Done():
				return
			case <-exited:
			}
			env.record(rundir.Fault{Fault: rundir.FaultKill, Action: rundir.ActionInject, Target: s.Target, Count: 1,
				Detail: fmt.Sprintf("%s died at its %s crash point", s.Target, s.Crash)})
			began := time.Now()
			if err := env.Components.Restart(ctx, s.Target, s.Restart...); err != nil {
				env.record(rundir.Fault{Fault: rundir.FaultKill, Action: rundir.ActionError, Target: s.Target, Detail: "restart: " + err.Error()})
				return
			}
			env.record(rundir.Fault{Fault: rundir.FaultKill, Action: rundir.ActionStop, Target: s.Target,
				Detail: fmt.Sprintf("restarted without its crash point in %s", time.Since(began).Round(time.Millisecond))})
		}()
		return nil
	}
	if err := env.Components.Kill(s.Target); err != nil {
		return fmt.Errorf("fault kill %s: %w", s.Target, err)
	}
	k.mu.Lock()
	k.killed = true
	k.mu.Unlock()
	env.record(rundir.Fault{Fault: rundir.FaultKill, Action: rundir.ActionInject, Target: s.Target, Count: 1, Detail: "killed: " + s.Describe()})
	return nil
}

// Wait returns a channel closed when a crash-point watcher has finished
// (the component died and was restarted, or the run ended); nil otherwise.
func (k *kill) Wait() <-chan struct{} { return k.watcher }

func (k *kill) Stop(ctx context.Context, env *Env) error {
	k.mu.Lock()
	killed := k.killed
	k.killed = false
	k.mu.Unlock()
	if !killed {
		return nil
	}
	began := time.Now()
	if err := env.Components.Restart(ctx, k.spec.Target, k.spec.Restart...); err != nil {
		// The caller records the error (Stop's contract: it returns it).
		return fmt.Errorf("fault kill: restart %s: %w", k.spec.Target, err)
	}
	env.record(rundir.Fault{Fault: rundir.FaultKill, Action: rundir.ActionStop, Target: k.spec.Target,
		Detail: fmt.Sprintf("restarted in %s", time.Since(began).Round(time.Millisecond))})
	return nil
}

// Waiter is a fault that keeps working after Start (a crash-point watcher);
// Wait's channel closes when it is done.
type Waiter interface {
	Wait() <-chan struct{}
}

var _ Waiter = (*kill)(nil)

// redisLoss empties the idempotency cache: Phase "restart" restarts Redis
// empty, anything else deletes every key (FLUSHDB). A one-off.
type redisLoss struct{}

func (redisLoss) Start(ctx context.Context, env *Env, s rundir.FaultSpec) error {
	if err := need(env.Redis != nil, rundir.FaultRedisLoss, "a Redis"); err != nil {
		return err
	}
	var err error
	detail := "every cached key deleted"
	if s.Phase == "restart" {
		err, detail = env.Redis.Restart(ctx), "redis restarted empty"
	} else {
		err = env.Redis.Flush(ctx)
	}
	if err != nil {
		return fmt.Errorf("fault redis-loss: %w", err)
	}
	env.record(rundir.Fault{Fault: rundir.FaultRedisLoss, Action: rundir.ActionInject, Target: "redis", Count: 1, Detail: detail})
	return nil
}

func (redisLoss) Stop(context.Context, *Env) error { return nil }

// poison publishes Count malformed events straight onto the broker: the
// consumer must dead-letter them and carry on. A one-off.
type poison struct{}

func (poison) Start(ctx context.Context, env *Env, s rundir.FaultSpec) error {
	if err := need(env.Publisher != nil, rundir.FaultPoison, "a broker to publish to"); err != nil {
		return err
	}
	n := s.Count
	if n == 0 {
		n = 1
	}
	for i := 0; i < n; i++ {
		body := fmt.Sprintf(`{"poison":true,"n":%d,"amount":"not a number"}`, i)
		if err := env.Publisher.Publish(ctx, []byte(body)); err != nil {
			return fmt.Errorf("fault poison: publish %d: %w", i, err)
		}
	}
	env.record(rundir.Fault{Fault: rundir.FaultPoison, Action: rundir.ActionInject, Target: "broker", Count: n,
		Detail: fmt.Sprintf("%d malformed events published", n)})
	return nil
}

func (poison) Stop(context.Context, *Env) error { return nil }

// Toxiproxy adapts a toxiproxy API client to Proxies.
type Toxiproxy struct {
	Client *toxiclient.Client
}

var _ Proxies = Toxiproxy{}

// AddToxic adds a toxic to the named proxy.
func (t Toxiproxy) AddToxic(proxy, name, typ, stream string, toxicity float32, attrs map[string]any) error {
	p, err := t.Client.Proxy(proxy)
	if err != nil {
		return fmt.Errorf("proxy %s: %w", proxy, err)
	}
	_, err = p.AddToxic(name, typ, stream, toxicity, toxiclient.Attributes(attrs))
	return err
}

// RemoveToxic removes the named toxic from the named proxy.
func (t Toxiproxy) RemoveToxic(proxy, name string) error {
	p, err := t.Client.Proxy(proxy)
	if err != nil {
		return fmt.Errorf("proxy %s: %w", proxy, err)
	}
	return p.RemoveToxic(name)
}

// SetEnabled enables or disables the named proxy.
func (t Toxiproxy) SetEnabled(proxy string, enabled bool) error {
	p, err := t.Client.Proxy(proxy)
	if err != nil {
		return fmt.Errorf("proxy %s: %w", proxy, err)
	}
	if p.Enabled == enabled {
		return nil
	}
	if enabled {
		return p.Enable()
	}
	return p.Disable()
}

// Heal removes every toxic and enables every proxy.
func (t Toxiproxy) Heal() error {
	if err := t.Client.ResetState(); err != nil {
		return errors.Join(errors.New("toxiproxy reset"), err)
	}
	return nil
}
