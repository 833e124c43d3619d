// Package stack boots the bundled reference payment system: the
// infrastructure it needs (PostgreSQL, NATS JetStream and, for the profiles
// that use it, Redis: embedded throwaway servers unless URLs are given) and
// its three components, each a child process re-executing the paytest binary
// (`paytest serve charge|relay|consumer`), awaited by readiness and torn down
// in order. It knows nothing of who attacks it.
package stack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/paytest/paytest/internal/natsembed"
	"github.com/paytest/paytest/internal/pgembed"
	"github.com/paytest/paytest/internal/proc"
	"github.com/paytest/paytest/internal/redisembed"
	"github.com/paytest/paytest/target/outbox"
)

// Component names.
const (
	Charge   = "charge"
	Relay    = "relay"
	Consumer = "consumer"
)

// DefaultAPIKey is the demo merchant's key the charge service accepts by
// default.
const DefaultAPIKey = "demo=sk_test_demo"

// InfraConfig says which infrastructure to use; an empty URL means start an
// embedded one.
type InfraConfig struct {
	DatabaseURL string
	NATSURL     string
	RedisURL    string
	// NeedRedis starts an embedded Redis when RedisURL is empty.
	NeedRedis bool
	Log       *slog.Logger
}

// Infra is the infrastructure the reference system runs on.
type Infra struct {
	DatabaseURL string
	NATSURL     string
	RedisURL    string

	pg    *pgembed.Cluster
	nats  *natsembed.Server
	redis *redisembed.Server
	once  sync.Once
}

// StartInfra starts what InfraConfig leaves to embedded defaults. On error
// everything it started is stopped again.
func StartInfra(ctx context.Context, cfg InfraConfig) (*Infra, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	in := &Infra{DatabaseURL: cfg.DatabaseURL, NATSURL: cfg.NATSURL, RedisURL: cfg.RedisURL}
	if in.DatabaseURL == "" {
		began := time.Now()
		c, err := pgembed.Start(ctx, pgembed.Options{})
		if err != nil {
			return nil, err
		}
		in.pg = c
		if err := pgembed.CreateDatabase(ctx, c.URL("postgres"), "paytest"); err != nil {
			in.Stop()
			return nil, fmt.Errorf("stack: create database: %w", err)
		}
		in.DatabaseURL = c.URL("paytest")
		log.Info("embedded postgres up", "port", c.Port(), "took", time.Since(began).Round(time.Millisecond))
	}
	if in.NATSURL == "" {
		s, err := natsembed.Start(natsembed.Options{})
		if err != nil {
			in.Stop()
			return nil, err
		}
		in.nats = s
		in.NATSURL = s.URL()
		log.Info("embedded nats up", "url", s.URL())
	}
	if in.RedisURL == "" && cfg.NeedRedis {
		s, err := redisembed.Start(ctx)
		if err != nil {
			in.Stop()
			return nil, err
		}
		in.redis = s
		in.RedisURL = s.URL()
		log.Info("embedded redis up", "url", s.URL())
	}
	return in, nil
}

// RestartRedis empties the embedded Redis by restarting it on the same
// port: a simulated loss of every cached key.
func (in *Infra) RestartRedis(ctx context.Context) error {
	if in.redis == nil {
		return errors.New("stack: redis is not embedded, cannot restart it")
	}
	return in.redis.Restart(ctx)
}

// Stop stops every embedded server. It is safe to call more than once.
func (in *Infra) Stop() {
	in.once.Do(func() {
		if in.redis != nil {
			in.redis.Stop()
		}
		if in.nats != nil {
			in.nats.Shutdown()
		}
		if in.pg != nil {
			_ = in.pg.Stop()
		}
	})
}

// Config describes the reference system to start.
type Config struct {
	// Binary is the paytest executable; empty means this process's own.
	Binary      string
	DatabaseURL string
	// NATSURL is what the relay and the consumer connect to: possibly a
	// proxy in front of the broker.
	NATSURL  string
	RedisURL string
	// RedisPrefix namespaces the charge service's cache keys.
	RedisPrefix string
	// Stream, Subject and DLQStream default to the components' defaults;
	// unique names let several stacks share one NATS server.
	Stream, Subject, DLQStream string
	// ChargeDatabaseURL, when set, is the charge service's database URL
	// instead of DatabaseURL: a proxy in front of the same database.
	ChargeDatabaseURL string
	// APIKeys are merchant=secret pairs; default DefaultAPIKey.
	APIKeys []string
	// Unsafe modes, each passed to the component that knows it.
	Unsafe []string
	// Extra arguments per component (crash points, rates...). They apply to
	// the first start only; Restart takes its own.
	Charge, Relay, Consumer []string
	// Log receives every child's output, prefixed by its name.
	Log io.Writer
}

// unsafeOwner says which component takes each unsafe mode.
var unsafeOwner = map[string]string{
	"no-idempotency":    Charge,
	"non-atomic-create": Charge,
	"dual-write":        Charge,
	"no-inbox-dedup":    Consumer,
}

// UnsafeModes lists the unsafe modes the reference system knows.
func UnsafeModes() []string {
	return []string{"dual-write", "no-idempotency", "no-inbox-dedup", "non-atomic-create"}
}

// Stack is the running reference system.
type Stack struct {
	cfg   Config
	mu    sync.Mutex
	procs map[string]*proc.Process
	base  map[string][]string
	// env holds each component's secrets (API keys, and URLs, which may
	// carry passwords): a command line is readable by every user of the
	// machine (ps, /proc/PID/cmdline), a process's environment only by its
	// owner. The components read every flag from PAYTEST_<FLAG>.
	env  map[string][]string
	once sync.Once
}

// Start starts the consumer, the relay and the charge service, in that
// order, each awaited on /readyz. On error the ones already up are stopped.
func Start(ctx context.Context, cfg Config) (*Stack, error) {
	if cfg.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("stack: own executable: %w", err)
		}
		cfg.Binary = exe
	}
	if len(cfg.APIKeys) == 0 {
		cfg.APIKeys = []string{DefaultAPIKey}
	}
	if cfg.Stream == "" {
		cfg.Stream = outbox.DefaultStream
	}
	if cfg.Subject == "" {
		cfg.Subject = outbox.DefaultSubject
	}
	if cfg.ChargeDatabaseURL == "" {
		cfg.ChargeDatabaseURL = cfg.DatabaseURL
	}
	s := &Stack{cfg: cfg, procs: map[string]*proc.Process{}, base: map[string][]string{}, env: map[string][]string{}}
	broker := []string{"--stream", cfg.Stream, "--subject", cfg.Subject}
	natsEnv := "PAYTEST_NATS_URL=" + cfg.NATSURL
	s.base[Consumer] = append([]string{"serve", "consumer"}, broker...)
	if cfg.DLQStream != "" {
		s.base[Consumer] = append(s.base[Consumer], "--dlq-stream", cfg.DLQStream)
	}
	s.env[Consumer] = []string{"PAYTEST_DATABASE_URL=" + cfg.DatabaseURL, natsEnv}
	s.base[Relay] = append([]string{"serve", "relay"}, broker...)
	s.env[Relay] = []string{"PAYTEST_DATABASE_URL=" + cfg.DatabaseURL, natsEnv}
	s.base[Charge] = []string{"serve", "charge"}
	// Set even when empty, so that none is inherited from this process's
	// own environment (an empty variable counts as unset).
	s.env[Charge] = []string{"PAYTEST_DATABASE_URL=" + cfg.ChargeDatabaseURL, "PAYTEST_API_KEY=" + strings.Join(cfg.APIKeys, ","),
		"PAYTEST_REDIS_URL=" + cfg.RedisURL, "PAYTEST_NATS_URL="}
	if cfg.RedisURL != "" && cfg.RedisPrefix != "" {
		s.base[Charge] = append(s.base[Charge], "--redis-prefix", cfg.RedisPrefix)
	}
	for _, mode := range cfg.Unsafe {
		owner, ok := unsafeOwner[mode]
		if !ok {
			return nil, fmt.Errorf("stack: unknown unsafe mode %q (known: %v)", mode, UnsafeModes())
		}
		s.base[owner] = append(s.base[owner], "--unsafe", mode)
		if mode == "dual-write" {
			s.base[Charge] = append(s.base[Charge], broker...)
			s.env[Charge] = append(s.env[Charge], natsEnv)
		}
	}
	extra := map[string][]string{Consumer: cfg.Consumer, Relay: cfg.Relay, Charge: cfg.Charge}
	for _, name := range []string{Consumer, Relay, Charge} {
		if err := s.start(ctx, name, "127.0.0.1:0", extra[name]); err != nil {
			s.Stop()
			return nil, err
		}
	}
	return s, nil
}

func (s *Stack) start(ctx context.Context, name, listen string, extra []string) error {
	args := append(append(append([]string(nil), s.base[name]...), "--listen", listen), extra...)
	p, err := proc.Start(ctx, proc.Spec{
		Name: name, Path: s.cfg.Binary, Args: args, Env: s.env[name], Log: s.cfg.Log, Ready: "/readyz",
		StartTimeout: 60 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("stack: %w", err)
	}
	s.mu.Lock()
	s.procs[name] = p
	s.mu.Unlock()
	return nil
}

func (s *Stack) get(name string) (*proc.Process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.procs[name]
	if !ok {
		return nil, fmt.Errorf("stack: no component %q (have charge, relay, consumer)", name)
	}
	return p, nil
}

// Addr returns the component's bound host:port.
func (s *Stack) Addr(name string) string {
	p, err := s.get(name)
	if err != nil {
		return ""
	}
	return p.Addr()
}

// Pid returns the process id of the component's current process, or 0.
func (s *Stack) Pid(name string) int {
	p, err := s.get(name)
	if err != nil {
		return 0
	}
	return p.Pid()
}

// ChargeURL returns the charge endpoint, http://HOST:PORT/charge.
func (s *Stack) ChargeURL() string { return "http://" + s.Addr(Charge) + "/charge" }

// MetricsURLs returns each component's /metrics URL by name.
func (s *Stack) MetricsURLs() map[string]string {
	out := map[string]string{}
	for _, n := range []string{Charge, Relay, Consumer} {
		out[n] = "http://" + s.Addr(n) + "/metrics"
	}
	return out
}

// Exited returns a channel closed when the component's current process has
// exited (a crash point fired, or it was killed).
func (s *Stack) Exited(name string) <-chan struct{} {
	p, err := s.get(name)
	if err != nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return p.Done()
}

// Kill sends SIGKILL to the component and waits until it is gone.
func (s *Stack) Kill(name string) error {
	p, err := s.get(name)
	if err != nil {
		return err
	}
	p.Kill()
	return nil
}

// Restart stops the component if it still runs and starts it again on the
// same address with its base arguments plus extraArgs (crash points and other
// first-start arguments are not repeated).
func (s *Stack) Restart(ctx context.Context, name string, extraArgs ...string) error {
	p, err := s.get(name)
	if err != nil {
		return err
	}
	_ = p.Stop(10 * time.Second)
	return s.start(ctx, name, p.Addr(), extraArgs)
}

// Stop stops the charge service, the relay and the consumer, in that order
// (SIGTERM, then SIGKILL after a grace period). It is safe to call more than
// once.
func (s *Stack) Stop() error {
	var errs []error
	s.once.Do(func() {
		for _, name := range []string{Charge, Relay, Consumer} {
			s.mu.Lock()
			p := s.procs[name]
			s.mu.Unlock()
			if p != nil {
				if err := p.Stop(10 * time.Second); err != nil {
					errs = append(errs, err)
				}
			}
		}
	})
	return errors.Join(errs...)
}
