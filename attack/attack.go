// Package attack is paytest's chaos driver. Run boots the bundled reference
// payment system (or points at a team's own endpoint through an embedded
// toxiproxy), drives a seeded plan of charges with duplicates, races and key
// reuse through a retrying client, fires a profile's faults at their points
// (responses eaten, the broker cut, the relay killed between publish and
// mark), reconciles every unconfirmed operation with its same key, waits
// for the outbox to drain and the consumer to catch up, and hands the
// evidence to verify for a verdict. Everything it writes lands in one run
// directory; everything it starts is stopped when it returns, fails or is
// cancelled.
package attack

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paytest/paytest/attack/client"
	"github.com/paytest/paytest/attack/fault"
	"github.com/paytest/paytest/attack/load"
	"github.com/paytest/paytest/attack/plan"
	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/redact"
	"github.com/paytest/paytest/internal/rundir"
	"github.com/paytest/paytest/internal/toxiembed"
	"github.com/paytest/paytest/profiles"
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
	callSite           = "charge"
)

// Config is one attack, fully resolved (cmd/paytest fills it from flags,
// environment, config file and profile).
type Config struct {
	// Profile supplies the fault schedule and the components' extra
	// arguments; its counts and rates are already folded into the fields
	// below by the caller.
	Profile profiles.Profile
	// Ops, Concurrency and the rates shape the plan.
	Ops           int
	Concurrency   int
	DuplicateRate float64
	RaceRate      float64
	ReuseRate     float64
	// Seed makes the plan and the fault schedule reproducible; 0 draws a
	// random one (always recorded in run.yaml and report.json).
	Seed int64
	// Out is the run directory; empty means runs/<timestamp>.
	Out string

	// The bundled reference system (no Target). Empty URLs start embedded
	// servers.
	Binary      string
	DatabaseURL string
	NATSURL     string
	RedisURL    string
	Unsafe      []string
	// Stream, Subject and DLQStream name the broker's streams; empty means
	// the defaults, or unique per-run names when NATSURL is given.
	Stream, Subject, DLQStream string

	// Target is a team's own endpoint; empty means the bundled system.
	Target string
	// Header is added to every request (--header K:V).
	Header http.Header
	// BodyTemplate is a text/template filled per operation for Target.
	BodyTemplate *template.Template
	// RootCAs, when set, are the CAs trusted for an https Target (default:
	// the system's).
	RootCAs *x509.CertPool
	// KeyHeader carries the idempotency key (default Idempotency-Key).
	KeyHeader string
	// Evidence for a Target: a /metrics page and its side-effect counter, a
	// Prometheus and its PromQL, a database and its per-key ledger query.
	MetricsURL       string
	SideEffectMetric string
	PrometheusURL    string
	SideEffectQuery  string
	LedgerQuery      string
	// KillCmd and RestartCmd run (via /bin/sh -c) at the profile's kill
	// points against a Target, with PAYTEST_COMPONENT=target.
	KillCmd, RestartCmd string
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
	// KillAt fires a kill at each fraction of the run (0..1), without a
	// profile: of the endpoint through KillCmd/RestartCmd for a Target,
	// of the charge service (SIGKILL, restarted 500 ms later) on the
	// bundled system.
	KillAt []float64
	// SkipFaults leaves the named kinds out of the profile's schedule (a
	// fault that cannot fire against a Target is otherwise refused).
	SkipFaults []string

	// The retrying client.
	Timeout     time.Duration
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

	// ReconcileTimeout bounds re-driving unconfirmed operations;
	// DrainTimeout bounds waiting for the outbox and the consumer.
	ReconcileTimeout time.Duration
	DrainTimeout     time.Duration

	// Progress receives the bars (Bars) or summary lines; nil: silent.
	Progress io.Writer
	Bars     bool
	// Log receives attack's own structured log; nil discards.
	Log *slog.Logger
	// Settings is the resolved configuration to record in run.yaml.
	Settings map[string]any

	// faults is the schedule this run fires (planFaults).
	faults []rundir.FaultSpec
}

// Result is what a run produced.
type Result struct {
	// Dir is the run directory.
	Dir  string
	Seed int64
	// Report is verify's verdict (nil when the run failed before it).
	Report *verify.Report
	// Load is the chaos phase's summary; Reconciled the re-drive's.
	Load       *load.Summary
	Reconciled *load.Summary
	// Faults counts the injected faults by name.
	Faults map[string]int
	// Drained says whether the outbox emptied and the effects settled.
	Drained  bool
	Duration time.Duration
	// Fingerprint identifies the plan.
	Fingerprint string
}

func (c *Config) defaults() error {
	if c.Ops <= 0 {
		c.Ops = 1000
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 32
	}
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
		c.BudgetCapacity = c.Profile.BudgetCapacity
	}
	if c.MaxRetryAmplification == 0 {
		c.MaxRetryAmplification = c.Profile.MaxRetryAmplification
	}
	if c.BudgetCapacity < 0 || c.MaxRetryAmplification < 0 {
		return apperr.Errorf(apperr.EUSAGE, "budget capacity and max retry amplification must not be negative")
	}
	if c.ReconcileTimeout <= 0 {
		c.ReconcileTimeout = DefaultReconcileTimeout
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Log == nil {
		c.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.Seed == 0 {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		c.Seed = int64(binary.BigEndian.Uint64(b[:])>>1) | 1
	}
	if c.Out == "" {
		c.Out = filepath.Join("runs", time.Now().UTC().Format("2006-01-02T15-04-05"))
	}
	for _, r := range []float64{c.DuplicateRate, c.RaceRate, c.ReuseRate} {
		if r < 0 || r > 1 {
			return apperr.Errorf(apperr.EUSAGE, "rates must be within 0..1")
		}
	}
	if c.IDField == "" {
		c.IDField = DefaultIDField
	}
	if !strings.HasPrefix(c.IDField, "/") {
		return apperr.Errorf(apperr.EUSAGE, "--id-field %q: want a JSON pointer such as /id or /data/charge_id", c.IDField)
	}
	if len(c.ReuseStatuses) == 0 {
		c.ReuseStatuses = []int{DefaultReuseStatus}
	}
	for _, st := range c.ReuseStatuses {
		if st < 400 || st > 599 {
			return apperr.Errorf(apperr.EUSAGE, "--reuse-status %d: want a 4xx or 5xx status", st)
		}
	}
	if name, _, _ := strings.Cut(c.ReplayHeader, "="); c.ReplayHeader != "" && !validHeaderName(name) {
		return apperr.Errorf(apperr.EUSAGE, "--replay-header %q: want NAME or NAME=VALUE with a valid header name", c.ReplayHeader)
	}
	if c.Target == "" && (c.ReplayHeader != "" || c.IDField != DefaultIDField || !slices.Equal(c.ReuseStatuses, []int{DefaultReuseStatus})) {
		return apperr.Errorf(apperr.EUSAGE, "--replay-header, --id-field and --reuse-status describe your endpoint: they apply only with --target")
	}
	if c.Target != "" && len(c.Unsafe) > 0 {
		return apperr.Errorf(apperr.EUSAGE, "--unsafe applies to the bundled reference system, not to --target")
	}
	if c.Target != "" && c.MetricsURL == "" && c.PrometheusURL == "" && c.DatabaseURL == "" {
		return apperr.Errorf(apperr.EUSAGE, "--target needs evidence to verify: --metrics-url, --prometheus-url or --database-url with --ledger-query")
	}
	return nil
}

// system is what a run attacks: the bundled stack or a team's endpoint.
type system struct {
	url         string // where the client sends (through the proxy)
	env         *fault.Env
	sources     verify.Sources
	drain       drainSpec
	merchants   []plan.Merchant
	httpClient  *http.Client
	description string
	notes       []string
	teardown    []func()
	cleanupOnce sync.Once
}

func (s *system) stop() {
	s.cleanupOnce.Do(func() {
		for i := len(s.teardown) - 1; i >= 0; i-- {
			s.teardown[i]()
		}
	})
}

// Run performs one attack and its verification. The error carries an
// apperr code: EUSAGE for bad configuration, EINCONCLUSIVE when the system
// could not be brought up or the evidence not collected. A violated verdict
// is not an error: it is in Result.Report.
func Run(ctx context.Context, cfg Config) (res *Result, err error) {
	began := time.Now()
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = apperr.Wrap(apperr.EINCONCLUSIVE, ctx.Err(), "attack interrupted; the partial run is in %s", cfg.Out)
			res = nil
		}
	}()
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if cfg.faults, err = planFaults(&cfg); err != nil {
		return nil, err
	}
	if err := clearRunDir(cfg.Out); err != nil {
		return nil, apperr.Wrap(apperr.EUSAGE, err, "run directory %s", cfg.Out)
	}
	if err := os.MkdirAll(filepath.Join(cfg.Out, rundir.MetricsDir), 0o755); err != nil {
		return nil, apperr.Wrap(apperr.EUSAGE, err, "run directory %s", cfg.Out)
	}
	res = &Result{Dir: cfg.Out, Seed: cfg.Seed}
	if cfg.Settings == nil {
		cfg.Settings = map[string]any{
			"profile": cfg.Profile.Name, "ops": cfg.Ops, "concurrency": cfg.Concurrency, "seed": cfg.Seed,
			"duplicate-rate": cfg.DuplicateRate, "race-rate": cfg.RaceRate, "reuse-rate": cfg.ReuseRate,
			"target": cfg.Target, "unsafe": cfg.Unsafe, "timeout": cfg.Timeout.String(),
			"max-attempts": cfg.MaxAttempts, "no-jitter": cfg.NoJitter, "no-budget": cfg.NoBudget,
			"budget-capacity": cfg.BudgetCapacity, "max-retry-amplification": cfg.MaxRetryAmplification,
			"kill-at": cfg.KillAt, "skip-fault": cfg.SkipFaults,
		}
	}
	runRec := rundir.Run{
		Seed: cfg.Seed, Profile: cfg.Profile.Name, Target: redact.URL(cfg.Target), Ops: cfg.Ops,
		Concurrency: cfg.Concurrency, NoJitter: cfg.NoJitter, Unsafe: cfg.Unsafe,
		Started: began.UTC(), Config: redactSettings(cfg.Settings),
		ReuseStatuses: cfg.ReuseStatuses, IDField: cfg.IDField, ReplayHeader: cfg.ReplayHeader,
	}
	if runRec.Target == "" {
		runRec.Target = "bundled"
	}
	if err := rundir.WriteRun(filepath.Join(cfg.Out, rundir.RunFile), runRec); err != nil {
		return nil, apperr.Wrap(apperr.EUSAGE, err, "writing run.yaml")
	}
	j, err := openJournal(filepath.Join(cfg.Out, rundir.FaultsFile), filepath.Join(cfg.Out, rundir.TranscriptFile), began)
	if err != nil {
		return nil, apperr.Wrap(apperr.EUSAGE, err, "run directory %s", cfg.Out)
	}
	defer j.Close()
	j.printf(began, "paytest attack: profile %s, seed %d, %d ops, concurrency %d, target %s",
		cfg.Profile.Name, cfg.Seed, cfg.Ops, cfg.Concurrency, runRec.Target)

	// Bring the system up: the toxiproxy first, then what it fronts.
	tp, err := toxiembed.Start(ctx)
	if err != nil {
		return nil, apperr.Wrap(apperr.EINCONCLUSIVE, err, "starting toxiproxy")
	}
	defer tp.Shutdown()
	var sys *system
	if cfg.Target == "" {
		sys, err = startBundled(ctx, &cfg, tp)
	} else {
		sys, err = startTarget(ctx, &cfg, tp)
	}
	if sys != nil {
		defer sys.stop()
	}
	if err != nil {
		return nil, err
	}
	sys.description = redact.String(sys.description)
	j.printf(time.Now(), "system up in %s: %s", time.Since(began).Round(time.Millisecond), sys.description)
	for _, n := range sys.notes {
		j.printf(time.Now(), "note: %s", n)
	}
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, "paytest: %s up in %s; run directory %s\n", sys.description, time.Since(began).Round(time.Millisecond), cfg.Out)
	}

	// The plan.
	pl, err := plan.Build(ctx, plan.Config{
		Ops: cfg.Ops, DuplicateRate: cfg.DuplicateRate, RaceRate: cfg.RaceRate, ReuseRate: cfg.ReuseRate,
		Seed: cfg.Seed, Merchants: sys.merchants, BodyTemplate: cfg.BodyTemplate,
	})
	if err != nil {
		return nil, apperr.Wrap(apperr.EUSAGE, err, "building the plan")
	}
	if err := pl.Write(filepath.Join(cfg.Out, rundir.PlanFile)); err != nil {
		return nil, apperr.Wrap(apperr.EINCONCLUSIVE, err, "writing the plan")
	}
	res.Fingerprint = pl.Fingerprint()
	j.printf(time.Now(), "plan: %d operations, fingerprint %s", len(pl.Ops), res.Fingerprint)
	pr := newProgress(ctx, cfg.Progress, cfg.Bars, len(pl.Ops), pl.Charges())
	defer pr.done()

	// The client and its history.
	reg := prometheus.NewRegistry()
	var budget *client.Budget
	if !cfg.NoBudget {
		budget = client.NewBudget(client.BudgetOptions{Capacity: cfg.BudgetCapacity})
	}
	cl, err := client.New(client.Options{
		CallSite: callSite, Timeout: cfg.Timeout, MaxAttempts: cfg.MaxAttempts, NoJitter: cfg.NoJitter,
		Budget: budget, HTTPClient: sys.httpClient, Registerer: reg, Seed: cfg.Seed,
		IDField: cfg.IDField, ReplayHeader: cfg.ReplayHeader, ReuseStatuses: cfg.ReuseStatuses,
	})
	if err != nil {
		return nil, apperr.Wrap(apperr.EUSAGE, err, "client")
	}
	if budget != nil {
		o := budget.Options()
		j.printf(time.Now(), "client: retry budget of %g tokens per call site, %g per retry, %g back per first-try success", o.Capacity, o.RetryCost, o.SuccessRefill)
	} else {
		j.printf(time.Now(), "client: no retry budget")
	}
	hw, err := rundir.Create[rundir.Attempt](filepath.Join(cfg.Out, rundir.HistoryFile))
	if err != nil {
		return nil, apperr.Wrap(apperr.EINCONCLUSIVE, err, "writing history")
	}
	defer hw.Close()

	// The faults.
	sys.env.Log = j
	sys.env.Ops = cfg.Ops
	for _, f := range cfg.Profile.Faults {
		if slices.Contains(cfg.SkipFaults, f.Fault) {
			j.printf(time.Now(), "schedule: left out by --skip-fault: %s", f.Describe())
		}
	}
	sched, err := newSchedule(cfg.faults, len(pl.Ops), cfg.Ops, sys.env, j)
	if err != nil {
		return nil, err
	}
	for _, line := range sched.describe() {
		j.printf(time.Now(), "schedule: %s", line)
	}
	runRec.Config = redactSettings(cfg.Settings)
	runRec.Config["seed"] = cfg.Seed
	runRec.Config["fault-schedule"] = sched.describe()
	runRec.Config["plan-fingerprint"] = res.Fingerprint
	runCtx, cancelRun := context.WithCancel(ctx)
	// Before the system stops: end the crash watchers, so that none
	// restarts a component behind the teardown's back.
	defer func() { cancelRun(); sched.wait() }()
	sched.arm(runCtx)

	var attempts, confirmed atomic.Int64
	lcfg := load.Config{
		URL: sys.url, Header: cfg.Header, KeyHeader: cfg.KeyHeader, Concurrency: cfg.Concurrency,
		Client: cl, History: hw,
		OnAttempt: func(a rundir.Attempt) {
			pr.attempts(attempts.Add(1))
			j.attempt(a)
		},
		OnOpDone: func(_ int, r client.Result) {
			if r.Definite {
				pr.set(barOps, confirmed.Add(1))
			}
			sched.opDone()
		},
	}

	// Chaos phase.
	loadDone := make(chan struct{})
	schedDone := make(chan struct{})
	go func() {
		defer close(schedDone)
		sched.run(runCtx, loadDone)
	}()
	evidence := sys.sources.HTTPClient
	if evidence == nil {
		evidence = &http.Client{Timeout: 2 * time.Second}
	}
	sampleCtx, stopSampling := context.WithCancel(runCtx)
	var sampling sync.WaitGroup
	if len(sys.sources.MetricsURLs) > 0 {
		sampling.Add(1)
		go func() {
			defer sampling.Done()
			sampleTimeline(sampleCtx, evidence, cfg.Out, sys.sources.MetricsURLs, 250*time.Millisecond, func(name string, page []byte) {
				if !cfg.Bars {
					return
				}
				if v, ok := pageValue(page, "paytest_outbox_pending"); ok && name == "relay" {
					pr.pending(int64(v))
				}
				if url := sys.drain.EffectsURL; url != "" && url == sys.sources.MetricsURLs[name] {
					if v, ok := pageValue(page, sys.drain.EffectsMetric); ok {
						pr.set(barEffects, int64(v))
					}
				}
			})
		}()
	}
	defer func() { stopSampling(); sampling.Wait() }()
	chaosBegan := time.Now()
	var stopped stops
	sum, loadErr := load.Run(runCtx, pl, lcfg)
	close(loadDone)
	<-schedDone
	if loadErr != nil {
		if ctx.Err() != nil {
			return nil, apperr.Wrap(apperr.EINCONCLUSIVE, loadErr, "load")
		}
		stopped.add(j, "the load failed: %v", loadErr)
	}
	res.Load = sum
	if err := (fault.Toxiproxy{Client: tp.Client()}).Heal(); err != nil {
		j.printf(time.Now(), "healing the proxies: %v", err)
	}
	if sum != nil {
		j.printf(time.Now(), "chaos phase done in %s: %d ops, %d confirmed, %d attempts, %d unconfirmed",
			time.Since(chaosBegan).Round(time.Millisecond), sum.Ops, sum.Confirmed, sum.Attempts, len(sum.Unconfirmed))
		pr.line("paytest: chaos phase %s: %d ops, %d confirmed, %d attempts, %d to reconcile",
			time.Since(chaosBegan).Round(time.Millisecond), sum.Ops, sum.Confirmed, sum.Attempts, len(sum.Unconfirmed))
		if loadErr == nil && len(sum.Unconfirmed) > 0 {
			res.Reconciled = reconcilePhase(runCtx, &cfg, pl, sum.Unconfirmed, lcfg, j, pr, &stopped)
		}
	}
	if err := cancelled(ctx); err != nil {
		return nil, err
	}

	// Drain.
	sched.waitCrashes(runCtx, 30*time.Second)
	res.Drained = drainPhase(runCtx, sys, &cfg, pl.Charges(), evidence, j, pr, &stopped)
	for _, e := range j.Errors() {
		stopped.add(j, "a fault failed: %s", e)
	}
	for _, d := range sched.unfired() {
		stopped.add(j, "%s never fired: the component never reached its crash point", d)
	}
	res.Faults = j.Counts()

	// Evidence and verdict.
	stopSampling()
	sampling.Wait()
	if err := saveRegistry(reg, rundir.PagePath(cfg.Out, rundir.ClientPage)); err != nil {
		return nil, apperr.Wrap(apperr.EINCONCLUSIVE, err, "saving client metrics")
	}
	if err := hw.Close(); err != nil {
		return nil, apperr.Wrap(apperr.EINCONCLUSIVE, err, "writing history")
	}
	cancelRun()
	sched.wait()
	runRec.Ended = time.Now().UTC()
	if err := rundir.WriteRun(filepath.Join(cfg.Out, rundir.RunFile), runRec); err != nil {
		return nil, apperr.Wrap(apperr.EINCONCLUSIVE, err, "writing run.yaml")
	}
	if err := verify.Collect(ctx, sys.sources, cfg.Out); err != nil {
		if cerr := cancelled(ctx); cerr != nil {
			return nil, cerr
		}
		// What was collected is still judged: the run says why it is not all.
		stopped.add(j, "collecting the evidence failed: %v", err)
	}
	sys.stop()
	tp.Shutdown()
	if err := j.Close(); err != nil {
		return nil, apperr.Wrap(apperr.EINCONCLUSIVE, err, "writing the transcript")
	}
	pr.done()
	rep, err := verify.Verify(ctx, cfg.Out, verify.Options{
		SideEffectMetric: cfg.SideEffectMetric, MaxRetryAmplification: cfg.MaxRetryAmplification,
		Stopped: stopped.String(),
	})
	if err != nil {
		return nil, err
	}
	res.Report = rep
	res.Duration = time.Since(began)
	return res, nil
}

// stops collects why a run's evidence is incomplete (it stopped early, a
// fault failed, the drain's deadline passed): each reason is told in the
// transcript, and verify's Options.Stopped gets them all, so that the
// report says so and reads inconclusive unless a check failed.
type stops []string

func (s *stops) add(j *journal, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	j.printf(time.Now(), "evidence incomplete: %s", msg)
	*s = append(*s, msg)
}

func (s stops) String() string { return strings.Join(s, "; ") }

// reconcilePhase re-drives the operations the chaos left unconfirmed until
// the reconcile deadline, then gives those still unconfirmed a last look
// (load.Reconcile), so a key the endpoint still holds has its 409 in the
// history even when the deadline cut its last retry. A key still in flight at the deadline is a
// finding about the endpoint (verify's no-key-stuck-in-flight), not an
// early stop: the run goes on to drain, collect and verify.
func reconcilePhase(ctx context.Context, cfg *Config, pl *plan.Plan, unconfirmed []int, lcfg load.Config, j *journal, pr *progress, stopped *stops) *load.Summary {
	rb := time.Now()
	rs, err := load.Reconcile(ctx, pl, unconfirmed, lcfg, time.Now().Add(cfg.ReconcileTimeout))
	if rs != nil && rs.LastLook.Ops > 0 {
		j.printf(time.Now(), "last look (one attempt each, outside the retry budget) at %s", rs.LastLook)
	}
	switch {
	case err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
		j.printf(time.Now(), "reconcile deadline (%s) passed with %d ops still unconfirmed", cfg.ReconcileTimeout, len(rs.Unconfirmed))
	case err != nil:
		stopped.add(j, "reconciliation failed: %v", err)
	}
	if rs == nil {
		return nil
	}
	j.printf(time.Now(), "reconciled %d ops in %s: %d confirmed, %d still unconfirmed",
		len(unconfirmed), time.Since(rb).Round(time.Millisecond), rs.Confirmed, len(rs.Unconfirmed))
	pr.line("paytest: reconciled %d ops in %s, %d still unconfirmed", len(unconfirmed), time.Since(rb).Round(time.Millisecond), len(rs.Unconfirmed))
	return rs
}

// drainPhase waits for the outbox, the broker and the side effects to
// settle (see waitDrained). When the deadline passes first, the evidence
// is taken early and the run says so.
func drainPhase(ctx context.Context, sys *system, cfg *Config, charges int, hc *http.Client, j *journal, pr *progress, stopped *stops) bool {
	d := sys.drain
	if d.EffectsURL == "" && d.PendingURL == "" && d.PrometheusURL == "" && d.Broker == nil {
		return true
	}
	d.Deadline = cfg.DrainTimeout
	if d.Expected == 0 {
		d.Expected = charges
	}
	if d.PendingURL != "" {
		d.DLQExpected = j.Counts()[rundir.FaultPoison]
	}
	dr := waitDrained(ctx, hc, d, pr)
	j.printf(time.Now(), "drain: settled=%v in %s, %s%s", dr.Settled, dr.Took.Round(time.Millisecond), dr.describe(d), errSuffix(dr.LastErr))
	pr.line("paytest: drained=%v in %s: %s", dr.Settled, dr.Took.Round(time.Millisecond), dr.describe(d))
	if !dr.Settled && ctx.Err() == nil {
		stopped.add(j, "the drain deadline (%s) passed before the system settled (%s%s): the evidence was taken early",
			cfg.DrainTimeout, dr.describe(d), errSuffix(dr.LastErr))
	}
	return dr.Settled
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	// A scrape's error quotes its URL, secrets and all.
	return "; last error: " + redact.String(err.Error())
}

// cancelled turns a context's end into the run's error.
func cancelled(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return apperr.Wrap(apperr.EINCONCLUSIVE, err, "attack interrupted")
	}
	return nil
}

// clearRunDir removes an earlier run's files from dir (a reused --out such
// as `make demo`'s), so that no stale snapshot or ledger mixes with this
// run's evidence. Files it does not know are left alone.
func clearRunDir(dir string) error {
	for _, name := range rundir.Files() {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
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
