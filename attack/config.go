package attack

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/paytest/paytest/attack/fault"
	"github.com/paytest/paytest/attack/load"
	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/rundir"
	"github.com/paytest/paytest/profiles"
	"github.com/paytest/paytest/target/stack"
	"github.com/paytest/paytest/verify"
)

// Defaults for the zero fields of Config.
const (
	DefaultKeyHeader        = "Idempotency-Key"
	DefaultReconcileTimeout = 60 * time.Second
	DefaultDrainTimeout     = 60 * time.Second
	DefaultTimeout          = 2 * time.Second
	DefaultMaxAttempts      = 6
	// DefaultIDField is the JSON pointer of a charge's resource id.
	DefaultIDField = "/id"
	// DefaultReuseStatus is the answer to a key reused with a changed
	// body, as the IETF Idempotency-Key draft says.
	DefaultReuseStatus = 422
	// DefaultOps and DefaultConcurrency size a plan left at zero.
	DefaultOps         = 1000
	DefaultConcurrency = 32
	callSite           = "charge"
)

// Config is one attack, fully resolved (cmd/paytest fills it from flags,
// environment, config file and profile). Its groups follow the run: the
// plan, the client that sends it, the system it is sent to (the bundled
// one or a Target), the faults fired at it and the evidence judged after.
type Config struct {
	// Profile supplies the fault schedule and the components' extra
	// arguments; its counts and rates are already folded into Plan and
	// Client by the caller.
	Profile profiles.Profile
	// Out is the run directory; empty means runs/<timestamp>.
	Out string

	Plan     PlanConfig
	Client   ClientConfig
	Bundled  BundledConfig
	Target   TargetConfig
	Faults   FaultConfig
	Evidence EvidenceConfig

	// Progress receives the bars (Bars) or summary lines; nil: silent.
	Progress io.Writer
	Bars     bool
	// Log receives attack's own structured log; nil discards.
	Log *slog.Logger
	// Settings is the resolved configuration to record in run.yaml.
	Settings map[string]any
}

// PlanConfig shapes the seeded plan of operations and how many senders
// drive it.
type PlanConfig struct {
	// Ops is the number of logical operations (default 1000).
	Ops int
	// Concurrency is the number of concurrent senders (default 32).
	Concurrency int
	// DuplicateRate, RaceRate and ReuseRate are the shares of operations
	// sent again, raced and reused with a changed body.
	DuplicateRate float64
	RaceRate      float64
	ReuseRate     float64
	// Seed makes the plan and the fault schedule reproducible; 0 draws a
	// random one (always recorded in run.yaml and report.json).
	Seed int64

	// Rate, when set, drives the plan as an open model: ops arrive on
	// its schedule (constant, or a ramp over Duration, else over the
	// whole plan) whatever the target's pace; Concurrency is then unused.
	// Zero: the closed pool of Concurrency workers.
	Rate load.Rate
	// Duration sizes an open-model run when the caller did not fix Ops
	// (the caller sets Ops = Rate.Ops(Duration)) and is the ramp's length.
	Duration time.Duration
	// MaxInflight caps the open model's ops in flight (default
	// load.DefaultMaxInflight); arrivals beyond it are dropped and counted.
	MaxInflight int

	// Shard, when N > 1, runs only the K-th of N disjoint parts of the
	// plan Seed gives (rundir.Partition); the zero value is the whole
	// plan. Ops, Seed and the rates describe the whole plan; Concurrency,
	// Rate and MaxInflight are this shard's own (the caller divides them).
	Shard rundir.Shard
	// FaultShard is the shard that fires the faults acting on the whole
	// system (kill, outage, broker-cut, redis-loss, poison); every shard
	// fires the per-connection ones (eat-response, latency).
	FaultShard int
}

// sharded reports whether the run is one part of several.
func (p *PlanConfig) sharded() bool { return p.Shard.N > 1 }

// open reports whether the plan is driven as an open model.
func (p *PlanConfig) open() bool { return p.Rate.From > 0 }

// idleConns is how many idle connections the client keeps to the target:
// two per sender the load can have at once, so that connections are reused
// rather than closed and redialled when a request ends (in the open model
// up to MaxInflight ops are in flight, far more than Concurrency).
func (p *PlanConfig) idleConns() int {
	senders := p.Concurrency
	if p.open() {
		inflight := p.MaxInflight
		if inflight <= 0 {
			inflight = load.DefaultMaxInflight
		}
		senders = max(senders, inflight)
	}
	return 2 * senders
}

// pacer is the open model's schedule over ops charges (the shard's):
// the ramp lasts Duration, or all of them.
func (p *PlanConfig) pacer(ops int) load.Pacer {
	over := p.Duration
	if over <= 0 {
		over = p.Rate.Over(ops)
	}
	return p.Rate.Pacer(over)
}

// ClientConfig is the retrying client and what it assumes of the
// endpoint's answers.
type ClientConfig struct {
	// Timeout bounds one attempt (default 2s).
	Timeout time.Duration
	// MaxAttempts counts a sender's attempts, the first included (default
	// 6; client.Unlimited retries until the deadline).
	MaxAttempts int
	NoJitter    bool
	NoBudget    bool
	// BudgetCapacity sizes the retry budget in tokens (a retry costs 5);
	// 0 takes the profile's budget-capacity, else the AWS standard's 500.
	BudgetCapacity float64
	// MaxRetryAmplification bounds the attempts sent during an outage per
	// first attempt (verify's no-retry-storm); 0 takes the profile's, and
	// without one the figure is shown, not judged.
	MaxRetryAmplification float64

	// Header is added to every request (--header K:V).
	Header http.Header
	// KeyHeader carries the idempotency key (default Idempotency-Key).
	KeyHeader string
	// ReplayHeader marks a replayed answer the endpoint's own way: "Name"
	// (present) or "Name=Value" (that value). Empty: Idempotent-Replayed
	// or, without it, the id and body comparisons.
	ReplayHeader string
	// IDField is the JSON pointer of a 2xx answer's resource id (default
	// "/id"): two 2xx answers for one key with the same id are one charge.
	IDField string
	// ReuseStatuses are the statuses the endpoint answers a key reused
	// with a changed body (default 422).
	ReuseStatuses []int
}

// BundledConfig is the bundled reference system's infrastructure, used
// when Target.URL is empty. Empty URLs start embedded servers.
type BundledConfig struct {
	// DatabaseURL is a PostgreSQL server the run gets a database of its
	// own on.
	DatabaseURL string
	// NATSURL is a shared broker: the run creates streams of its own
	// there and deletes them at the end.
	NATSURL  string
	RedisURL string
	// Unsafe breaks the reference system's guarantees on purpose.
	Unsafe []string

	// binary is the paytest executable that runs the components; empty
	// means this process's own. Only a test binary, which is not paytest,
	// needs another.
	binary string
}

// TargetConfig is a team's own endpoint, attacked instead of the bundled
// system when URL is set.
type TargetConfig struct {
	// URL is the endpoint charges are POSTed to (http:// or https://).
	URL string
	// BodyTemplate is a text/template filled per operation.
	BodyTemplate *template.Template
	// RootCAs, when set, are the CAs trusted for an https URL (default:
	// the system's).
	RootCAs *x509.CertPool
	// KillCmd and RestartCmd run (via /bin/sh -c) at the kill points,
	// with PAYTEST_COMPONENT=target.
	KillCmd, RestartCmd string
}

// FaultConfig adjusts the profile's fault schedule.
type FaultConfig struct {
	// KillAt fires a kill at each fraction of the run (0..1), without a
	// profile: of the endpoint through KillCmd/RestartCmd for a Target,
	// of the charge service (SIGKILL, restarted 500 ms later) on the
	// bundled system.
	KillAt []float64
	// Skip leaves the named kinds out of the profile's schedule (a fault
	// that cannot fire against a Target is otherwise refused).
	Skip []string
}

// EvidenceConfig is where the side effects are read and how long the run
// waits for them to settle.
type EvidenceConfig struct {
	// For a Target: a /metrics page and its side-effect counter, a
	// Prometheus and its PromQL, a database and its per-key ledger query.
	// SideEffectMetric also names the counter verify reads on the bundled
	// system (default verify.DefaultSideEffectMetric).
	MetricsURL       string
	SideEffectMetric string
	PrometheusURL    string
	SideEffectQuery  string
	DatabaseURL      string
	LedgerQuery      string

	// ReconcileTimeout bounds re-driving unconfirmed operations;
	// DrainTimeout bounds waiting for the outbox and the consumer.
	ReconcileTimeout time.Duration
	DrainTimeout     time.Duration

	// Thresholds are load checks judged with the others ("op_p99 <
	// 800ms"); they are recorded in run.yaml for verify --run.
	Thresholds []verify.Threshold
	// MetricsListen, when set, serves paytest's own client metrics
	// (attempts by outcome and number, latency, budget) on this address
	// while the run lasts, for a team's Prometheus to scrape.
	MetricsListen string
}

// defaults fills the zero fields, the seed and the run directory among
// them.
func (c *Config) defaults() error {
	c.Plan.defaults()
	c.Client.defaults(c.Profile)
	if c.Evidence.ReconcileTimeout <= 0 {
		c.Evidence.ReconcileTimeout = DefaultReconcileTimeout
	}
	if c.Evidence.DrainTimeout <= 0 {
		c.Evidence.DrainTimeout = DefaultDrainTimeout
	}
	if c.Log == nil {
		c.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Plan.Seed == 0 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		c.Plan.Seed = int64(binary.BigEndian.Uint64(b[:])>>1) | 1
	}
	if c.Out == "" {
		c.Out = filepath.Join("runs", time.Now().UTC().Format("2006-01-02T15-04-05"))
	}
	return nil
}

func (p *PlanConfig) defaults() {
	if p.Ops <= 0 {
		p.Ops = DefaultOps
	}
	if p.Concurrency <= 0 {
		p.Concurrency = DefaultConcurrency
	}
}

// defaults fills the zero fields, the budget's from the profile.
func (c *ClientConfig) defaults(prof profiles.Profile) {
	if c.KeyHeader == "" {
		c.KeyHeader = DefaultKeyHeader
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.BudgetCapacity == 0 {
		c.BudgetCapacity = prof.BudgetCapacity
	}
	if c.MaxRetryAmplification == 0 {
		c.MaxRetryAmplification = prof.MaxRetryAmplification
	}
	if c.IDField == "" {
		c.IDField = DefaultIDField
	}
	if len(c.ReuseStatuses) == 0 {
		c.ReuseStatuses = []int{DefaultReuseStatus}
	}
}

// Validate refuses a configuration that cannot run as asked, with EUSAGE.
// Zero fields stand for their defaults. Run validates after filling them,
// so that a profile's budget is checked too; the fault schedule is checked
// when it is planned.
func (c *Config) Validate() error {
	for _, v := range []interface{ Validate() error }{&c.Plan, &c.Client, &c.Bundled, &c.Target, &c.Faults, &c.Evidence} {
		if err := v.Validate(); err != nil {
			return err
		}
	}
	if c.Target.URL == "" && c.Client.describesEndpoint() {
		return apperr.Errorf(apperr.EUSAGE, "--replay-header, --id-field and --reuse-status describe your endpoint: they apply only with --target")
	}
	if c.Plan.sharded() && c.Target.URL == "" {
		return apperr.Errorf(apperr.EUSAGE, "--shard %s splits one plan over processes attacking one system: give --target (for the bundled system, run `paytest serve stack` and attack its URL)", c.Plan.Shard)
	}
	if c.Target.URL != "" && len(c.Bundled.Unsafe) > 0 {
		return apperr.Errorf(apperr.EUSAGE, "--unsafe applies to the bundled reference system, not to --target")
	}
	if c.Target.URL != "" && !c.Evidence.forTarget() {
		return apperr.Errorf(apperr.EUSAGE, "--target needs evidence to verify: --metrics-url, --prometheus-url or --database-url with --ledger-query")
	}
	return nil
}

// Validate refuses rates outside 0..1 and an open model that cannot run.
func (p *PlanConfig) Validate() error {
	for _, r := range []float64{p.DuplicateRate, p.RaceRate, p.ReuseRate} {
		if r < 0 || r > 1 {
			return apperr.Errorf(apperr.EUSAGE, "rates must be within 0..1")
		}
	}
	if p.Rate.From < 0 || p.Rate.To < 0 || (p.Rate.From == 0) != (p.Rate.To == 0) {
		return apperr.Errorf(apperr.EUSAGE, "--rate %s: want a positive rate, or FROM:TO with both positive", p.Rate)
	}
	if p.Duration < 0 || p.MaxInflight < 0 {
		return apperr.Errorf(apperr.EUSAGE, "--duration and --max-inflight must not be negative")
	}
	if err := p.validateShard(); err != nil {
		return err
	}
	if !p.open() && (p.Duration > 0 || p.MaxInflight > 0) {
		return apperr.Errorf(apperr.EUSAGE, "--duration and --max-inflight shape an open-model run: give --rate too (without it, --concurrency workers send as fast as the target answers)")
	}
	return nil
}

// validateShard refuses a shard outside 0..N-1, more shards than ops and a
// fault shard that is not one of them. A zero Shard is the whole plan.
func (p *PlanConfig) validateShard() error {
	if p.Shard == (rundir.Shard{}) {
		return nil
	}
	if err := p.Shard.Validate(); err != nil {
		return apperr.Errorf(apperr.EUSAGE, "--shard %s: %v", p.Shard, err)
	}
	if p.Ops > 0 && p.Shard.N > p.Ops {
		return apperr.Errorf(apperr.EUSAGE, "--shard %s: %d shards for %d ops: every shard needs an op (at most %d shards)", p.Shard, p.Shard.N, p.Ops, p.Ops)
	}
	if p.FaultShard < 0 || p.FaultShard >= p.Shard.N {
		return apperr.Errorf(apperr.EUSAGE, "--fault-shard %d: want a shard within 0..%d", p.FaultShard, p.Shard.N-1)
	}
	return nil
}

// Validate refuses a negative budget or amplification bound and a
// malformed description of the endpoint's answers.
func (c *ClientConfig) Validate() error {
	if c.BudgetCapacity < 0 || c.MaxRetryAmplification < 0 {
		return apperr.Errorf(apperr.EUSAGE, "budget capacity and max retry amplification must not be negative")
	}
	if c.IDField != "" && !strings.HasPrefix(c.IDField, "/") {
		return apperr.Errorf(apperr.EUSAGE, "--id-field %q: want a JSON pointer such as /id or /data/charge_id", c.IDField)
	}
	for _, st := range c.ReuseStatuses {
		if st < 400 || st > 599 {
			return apperr.Errorf(apperr.EUSAGE, "--reuse-status %d: want a 4xx or 5xx status", st)
		}
	}
	if name, _, _ := strings.Cut(c.ReplayHeader, "="); c.ReplayHeader != "" && !validHeaderName(name) {
		return apperr.Errorf(apperr.EUSAGE, "--replay-header %q: want NAME or NAME=VALUE with a valid header name", c.ReplayHeader)
	}
	return nil
}

// describesEndpoint reports whether a field about a team's endpoint's
// answers is set to other than its default.
func (c *ClientConfig) describesEndpoint() bool {
	return c.ReplayHeader != "" || (c.IDField != "" && c.IDField != DefaultIDField) ||
		(len(c.ReuseStatuses) > 0 && !slices.Equal(c.ReuseStatuses, []int{DefaultReuseStatus}))
}

// Validate refuses an unsafe mode the reference system does not know.
func (b *BundledConfig) Validate() error {
	for _, mode := range b.Unsafe {
		if !slices.Contains(stack.UnsafeModes(), mode) {
			return apperr.Errorf(apperr.EUSAGE, "--unsafe %q: known modes are %s", mode, strings.Join(stack.UnsafeModes(), ", "))
		}
	}
	return nil
}

// Validate refuses a URL that is not http or https; kill commands are
// checked against the faults that need them when those are planned.
func (t *TargetConfig) Validate() error {
	if t.URL == "" {
		return nil
	}
	_, err := parseTarget(t.URL)
	return err
}

// Validate refuses an unknown fault to skip and a kill outside the run.
func (f *FaultConfig) Validate() error {
	for _, name := range f.Skip {
		if !slices.Contains(fault.Names(), name) {
			return apperr.Errorf(apperr.EUSAGE, "--skip-fault %q: known faults are %s", name, strings.Join(fault.Names(), ", "))
		}
	}
	for _, at := range f.KillAt {
		if at < 0 || at > 1 {
			return apperr.Errorf(apperr.EUSAGE, "--kill-at %v: want a fraction of the run within 0..1", at)
		}
	}
	return nil
}

// Validate refuses a --metrics-listen that is not host:port.
func (e *EvidenceConfig) Validate() error {
	if e.MetricsListen == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(e.MetricsListen); err != nil {
		return apperr.Errorf(apperr.EUSAGE, "--metrics-listen %q: want host:port, e.g. :9464 or 127.0.0.1:0", e.MetricsListen)
	}
	return nil
}

// forTarget reports whether there is evidence to verify a Target from.
func (e *EvidenceConfig) forTarget() bool {
	return e.MetricsURL != "" || e.PrometheusURL != "" || e.DatabaseURL != ""
}

// validHeaderName reports whether name is an HTTP header name (an RFC 9110
// token).
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if r > 0x7e || r <= ' ' || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", r) {
			return false
		}
	}
	return true
}
