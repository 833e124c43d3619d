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
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/paytest/paytest/attack/client"
	"github.com/paytest/paytest/attack/fault"
	"github.com/paytest/paytest/attack/load"
	"github.com/paytest/paytest/attack/plan"
	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/redact"
	"github.com/paytest/paytest/internal/rundir"
	"github.com/paytest/paytest/internal/toxiembed"
	"github.com/paytest/paytest/verify"
)

// Result is what a run produced.
type Result struct {
	// Dir is the run directory.
	Dir  string
	Seed int64
	// Report is verify's verdict (nil when the run failed before it).
	Report *verify.Report
	// Load is the chaos phase's summary; CaughtUp that of the open model's
	// dropped charges sent while its last ops finished (nil: none
	// dropped); Reconciled the re-drive's.
	Load       *load.Summary
	CaughtUp   *load.Summary
	Reconciled *load.Summary
	// Faults counts the injected faults by name.
	Faults map[string]int
	// Drained says whether the outbox emptied and the effects settled.
	Drained  bool
	Duration time.Duration
	// stopTook is how long stopping the system took.
	stopTook time.Duration
	// Fingerprint identifies the plan (the whole plan, for a shard).
	Fingerprint string
	// Shard is the part of the plan run; Report is nil for a shard of
	// several, whose verdict needs every shard (verify.VerifyShards), and
	// Stopped says why it stopped early, if it did.
	Shard   rundir.Shard
	Stopped string
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
// is not an error: it is in Result.Report. A run that stops early (the
// load, reconciliation, a fault or the evidence failed, the drain's
// deadline passed) still ends with a report that says why.
func Run(ctx context.Context, cfg Config) (res *Result, err error) {
	r := &attackRun{cfg: cfg, began: time.Now()}
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = apperr.Wrap(apperr.EINCONCLUSIVE, ctx.Err(), "attack interrupted; the partial run is in %s", r.cfg.Out)
			res = nil
		}
	}()
	// Everything started is stopped, in reverse, however the run ends.
	defer r.close()
	if err := r.prepare(); err != nil {
		return nil, err
	}
	if err := r.bringUp(ctx); err != nil {
		return nil, err
	}
	if err := r.buildPlan(ctx); err != nil {
		return nil, err
	}
	if err := r.newClient(); err != nil {
		return nil, err
	}
	if err := r.serveMetrics(); err != nil {
		return nil, err
	}
	runCtx, err := r.armFaults(ctx)
	if err != nil {
		return nil, err
	}
	r.startSampling(runCtx)
	if err := r.chaos(ctx, runCtx); err != nil {
		return nil, err
	}
	r.reconcile(runCtx)
	if err := cancelled(ctx); err != nil {
		return nil, err
	}
	r.drain(runCtx)
	return r.verdict(ctx)
}

// attackRun is one attack's state as it passes through Run's phases.
type attackRun struct {
	cfg     Config
	began   time.Time
	res     *Result
	rec     rundir.Run
	faults  []rundir.FaultSpec
	j       *journal
	tp      *toxiembed.Server
	sys     *system
	pl      *plan.Plan
	pr      *progress
	reg     *prometheus.Registry
	cl      *client.Client
	budget  *client.Budget
	history *rundir.Writer[rundir.Attempt]
	sched   *schedule
	lcfg    load.Config
	// confirmed counts the ops confirmed, for the progress bar.
	confirmed atomic.Int64
	// caughtUp are the dropped charges the catch-up re-drove.
	caughtUp []int
	// evidence reads the system's metrics pages.
	evidence *http.Client
	// loadFailed is set when the load stopped early: nothing is
	// reconciled then.
	loadFailed bool
	stopped    stops
	// cancelRun ends the run's context (the faults, the sampling);
	// stopSampling ends the metrics timeline and waits for it.
	cancelRun    context.CancelFunc
	stopSampling func()
	// closers run in reverse at the end of Run, as defers would.
	closers []func()
}

func (r *attackRun) onClose(f func()) { r.closers = append(r.closers, f) }

func (r *attackRun) close() {
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
}

// prepare resolves and checks the configuration and the fault schedule
// before anything is created, then opens the run directory: run.yaml and
// the journal (faults.jsonl, transcript.txt).
func (r *attackRun) prepare() (err error) {
	cfg := &r.cfg
	if err := cfg.defaults(); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if r.faults, err = planFaults(cfg); err != nil {
		return err
	}
	var leftOut []rundir.FaultSpec
	r.faults, leftOut = shardFaults(&cfg.Plan, r.faults)
	if err := clearRunDir(cfg.Out); err != nil {
		return apperr.Wrap(apperr.EUSAGE, err, "run directory %s", cfg.Out)
	}
	if err := os.MkdirAll(filepath.Join(cfg.Out, rundir.MetricsDir), 0o755); err != nil {
		return apperr.Wrap(apperr.EUSAGE, err, "run directory %s", cfg.Out)
	}
	r.res = &Result{Dir: cfg.Out, Seed: cfg.Plan.Seed, Shard: cfg.Plan.Shard}
	if cfg.Settings == nil {
		cfg.Settings = defaultSettings(cfg)
	}
	r.rec = runRecord(cfg, r.began)
	if err := rundir.WriteRun(filepath.Join(cfg.Out, rundir.RunFile), r.rec); err != nil {
		return apperr.Wrap(apperr.EUSAGE, err, "writing run.yaml")
	}
	r.j, err = openJournal(filepath.Join(cfg.Out, rundir.FaultsFile), filepath.Join(cfg.Out, rundir.TranscriptFile), r.began)
	if err != nil {
		return apperr.Wrap(apperr.EUSAGE, err, "run directory %s", cfg.Out)
	}
	r.onClose(func() { _ = r.j.Close() })
	r.j.printf(r.began, "paytest attack: profile %s, seed %d, %d ops, concurrency %d, target %s",
		cfg.Profile.Name, cfg.Plan.Seed, cfg.Plan.Ops, cfg.Plan.Concurrency, r.rec.Target)
	if cfg.Plan.sharded() {
		r.j.printf(r.began, "shard %s of the plan; faults on the whole system fire from shard %d", cfg.Plan.Shard, cfg.Plan.FaultShard)
	}
	for _, f := range leftOut {
		r.j.printf(r.began, "schedule: left to shard %d (it acts on the whole system): %s", cfg.Plan.FaultShard, f.Describe())
	}
	return nil
}

// systemFaults act on the whole system, not on one shard's connections:
// in a sharded run only the fault shard fires them.
var systemFaults = []string{rundir.FaultKill, rundir.FaultOutage, rundir.FaultBrokerCut, rundir.FaultRedisLoss, rundir.FaultPoison}

// shardFaults splits the schedule of a shard other than the fault shard
// into what it fires (the per-connection faults) and what it leaves to
// the fault shard. An unsharded run, or the fault shard, fires everything.
func shardFaults(p *PlanConfig, specs []rundir.FaultSpec) (fire, leftOut []rundir.FaultSpec) {
	if !p.sharded() || p.Shard.K == p.FaultShard {
		return specs, nil
	}
	for _, s := range specs {
		if slices.Contains(systemFaults, s.Fault) {
			leftOut = append(leftOut, s)
		} else {
			fire = append(fire, s)
		}
	}
	return fire, leftOut
}

// defaultSettings is what run.yaml records of a Config given without the
// CLI's resolved settings.
func defaultSettings(cfg *Config) map[string]any {
	p, c := cfg.Plan, cfg.Client
	return map[string]any{
		"profile": cfg.Profile.Name, "ops": p.Ops, "concurrency": p.Concurrency, "seed": p.Seed,
		"duplicate-rate": p.DuplicateRate, "race-rate": p.RaceRate, "reuse-rate": p.ReuseRate,
		"target": cfg.Target.URL, "unsafe": cfg.Bundled.Unsafe, "timeout": c.Timeout.String(),
		"max-attempts": c.MaxAttempts, "no-jitter": c.NoJitter, "no-budget": c.NoBudget,
		"budget-capacity": c.BudgetCapacity, "max-retry-amplification": c.MaxRetryAmplification,
		"kill-at": cfg.Faults.KillAt, "skip-fault": cfg.Faults.Skip,
	}
}

// runRecord is run.yaml as the run starts.
func runRecord(cfg *Config, began time.Time) rundir.Run {
	rec := rundir.Run{
		Seed: cfg.Plan.Seed, Profile: cfg.Profile.Name, Target: redact.URL(cfg.Target.URL), Ops: cfg.Plan.Ops,
		Concurrency: cfg.Plan.Concurrency, NoJitter: cfg.Client.NoJitter, Unsafe: cfg.Bundled.Unsafe,
		Started: began.UTC(), Config: redactSettings(cfg.Settings),
		ReuseStatuses: cfg.Client.ReuseStatuses, IDField: cfg.Client.IDField, ReplayHeader: cfg.Client.ReplayHeader,
	}
	if cfg.Plan.open() {
		rec.Rate, rec.MaxInflight = cfg.Plan.Rate.String(), cfg.Plan.MaxInflight
	}
	for _, t := range cfg.Evidence.Thresholds {
		rec.Thresholds = append(rec.Thresholds, t.Expr)
	}
	if rec.Target == "" {
		rec.Target = "bundled"
	}
	if cfg.Plan.sharded() {
		rec.Shard, rec.FaultShard = cfg.Plan.Shard.String(), cfg.Plan.FaultShard
	}
	return rec
}

// bringUp starts the toxiproxy, then what it fronts: the bundled system or
// the proxy in front of a team's endpoint.
func (r *attackRun) bringUp(ctx context.Context) (err error) {
	if r.tp, err = toxiembed.Start(ctx); err != nil {
		return apperr.Wrap(apperr.EINCONCLUSIVE, err, "starting toxiproxy")
	}
	r.onClose(r.tp.Shutdown)
	var sys *system
	if r.cfg.Target.URL == "" {
		sys, err = startBundled(ctx, &r.cfg, r.faults, r.tp)
	} else {
		sys, err = startTarget(ctx, &r.cfg, r.tp)
	}
	if sys != nil {
		r.onClose(sys.stop)
	}
	if err != nil {
		return err
	}
	r.sys = sys
	sys.description = redact.String(sys.description)
	up := time.Since(r.began).Round(time.Millisecond)
	r.j.printf(time.Now(), "system up in %s: %s", up, sys.description)
	for _, n := range sys.notes {
		r.j.printf(time.Now(), "note: %s", n)
	}
	if r.cfg.Progress != nil {
		fmt.Fprintf(r.cfg.Progress, "paytest: %s up in %s; run directory %s\n", sys.description, up, r.cfg.Out)
	}
	return nil
}

// buildPlan builds and writes the seeded plan, takes the shard's part of
// it, and starts the progress display over that.
//
// plan.jsonl holds the whole plan in every shard: verify then knows every
// op, a missing shard's included, from any one shard's directory, and
// which shard owned each (rundir.Partition over it), and the fingerprint
// recorded is the whole plan's, the same in every shard and in an
// unsharded run of the same seed.
func (r *attackRun) buildPlan(ctx context.Context) (err error) {
	p := r.cfg.Plan
	whole, err := plan.Build(ctx, plan.Config{
		Ops: p.Ops, DuplicateRate: p.DuplicateRate, RaceRate: p.RaceRate, ReuseRate: p.ReuseRate,
		Seed: p.Seed, Merchants: r.sys.merchants, BodyTemplate: r.cfg.Target.BodyTemplate,
	})
	if err != nil {
		return apperr.Wrap(apperr.EUSAGE, err, "building the plan")
	}
	if r.res.Fingerprint, err = whole.Save(ctx, filepath.Join(r.cfg.Out, rundir.PlanFile)); err != nil {
		return apperr.Wrap(apperr.EINCONCLUSIVE, err, "writing the plan")
	}
	r.rec.PlanFingerprint = r.res.Fingerprint
	if err := rundir.WriteRun(filepath.Join(r.cfg.Out, rundir.RunFile), r.rec); err != nil {
		return apperr.Wrap(apperr.EINCONCLUSIVE, err, "writing run.yaml")
	}
	r.pl = whole.Shard(p.Shard.K, p.Shard.N)
	r.j.printf(time.Now(), "plan: %d operations, fingerprint %s", whole.Len(), r.res.Fingerprint)
	if p.sharded() {
		r.j.printf(time.Now(), "shard %s: %d of the %d operations (%d charges)", p.Shard, r.pl.Len(), whole.Len(), r.pl.Charges())
	}
	r.pr = newProgress(ctx, r.cfg.Progress, r.cfg.Bars, r.pl.Len(), r.pl.Charges())
	r.onClose(r.pr.done)
	return nil
}

// newClient makes the retrying client, its retry budget and metrics
// registry, and the history every attempt is written to.
func (r *attackRun) newClient() (err error) {
	c := r.cfg.Client
	r.reg = prometheus.NewRegistry()
	if !c.NoBudget {
		r.budget = client.NewBudget(client.BudgetOptions{Capacity: c.BudgetCapacity})
	}
	r.cl, err = client.New(client.Options{
		CallSite: callSite, Timeout: c.Timeout, MaxAttempts: c.MaxAttempts, NoJitter: c.NoJitter,
		Budget: r.budget, HTTPClient: r.sys.httpClient, Registerer: r.reg, Seed: r.cfg.Plan.Seed,
		IDField: c.IDField, ReplayHeader: c.ReplayHeader, ReuseStatuses: c.ReuseStatuses,
	})
	if err != nil {
		return apperr.Wrap(apperr.EUSAGE, err, "client")
	}
	if r.budget != nil {
		o := r.budget.Options()
		r.j.printf(time.Now(), "client: retry budget of %g tokens per call site, %g per retry, %g back per first-try success", o.Capacity, o.RetryCost, o.SuccessRefill)
	} else {
		r.j.printf(time.Now(), "client: no retry budget")
	}
	if r.history, err = rundir.Create[rundir.Attempt](filepath.Join(r.cfg.Out, rundir.HistoryFile)); err != nil {
		return apperr.Wrap(apperr.EINCONCLUSIVE, err, "writing history")
	}
	r.onClose(func() { _ = r.history.Close() })
	return nil
}

// serveMetrics serves the client's registry on Evidence.MetricsListen
// while the run lasts, with the retry budget's tokens beside it.
func (r *attackRun) serveMetrics() error {
	addr := r.cfg.Evidence.MetricsListen
	if addr == "" {
		return nil
	}
	if r.budget != nil {
		b := r.budget
		r.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "paytest_retry_budget_tokens", Help: "Tokens left in the client's retry budget.",
		}, b.Tokens))
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return apperr.Wrap(apperr.EUSAGE, err, "--metrics-listen")
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	r.onClose(func() { _ = srv.Close(); <-done })
	r.j.printf(time.Now(), "client metrics at http://%s/metrics while the run lasts", ln.Addr())
	r.pr.line("paytest: client metrics at http://%s/metrics", ln.Addr())
	return nil
}

// armFaults builds the fault schedule over the plan, records it, and arms
// it in the run's context, which it returns.
func (r *attackRun) armFaults(ctx context.Context) (context.Context, error) {
	cfg, j := &r.cfg, r.j
	r.sys.env.Log = j
	r.sys.env.Ops = r.pl.Charges()
	for _, f := range cfg.Profile.Faults {
		if slices.Contains(cfg.Faults.Skip, f.Fault) {
			j.printf(time.Now(), "schedule: left out by --skip-fault: %s", f.Describe())
		}
	}
	sched, err := newSchedule(r.faults, r.pl.Len(), r.pl.Charges(), r.sys.env, j)
	if err != nil {
		return nil, err
	}
	r.sched = sched
	for _, line := range sched.describe() {
		j.printf(time.Now(), "schedule: %s", line)
	}
	r.rec.Config = redactSettings(cfg.Settings)
	r.rec.Config["seed"] = cfg.Plan.Seed
	r.rec.Config["fault-schedule"] = sched.describe()
	r.rec.Config["plan-fingerprint"] = r.res.Fingerprint
	runCtx, cancelRun := context.WithCancel(ctx)
	r.cancelRun = cancelRun
	// Before the system stops: end the crash watchers, so that none
	// restarts a component behind the teardown's back.
	r.onClose(func() { cancelRun(); sched.wait() })
	sched.arm(runCtx)
	r.lcfg = r.loadConfig()
	if r.cfg.Plan.open() {
		r.lcfg.Pacer = r.cfg.Plan.pacer(r.pl.Charges())
		inflight := r.lcfg.MaxInflight
		if inflight == 0 {
			inflight = load.DefaultMaxInflight
		}
		j.printf(time.Now(), "load: open model, %s, at most %d ops in flight", r.lcfg.Pacer, inflight)
	}
	return runCtx, nil
}

// loadConfig is the load's configuration: each attempt goes to the
// progress and the transcript, each op's end to the progress and the
// schedule.
func (r *attackRun) loadConfig() load.Config {
	var attempts atomic.Int64
	confirmed := &r.confirmed
	return load.Config{
		URL: r.sys.url, Header: r.cfg.Client.Header, KeyHeader: r.cfg.Client.KeyHeader, Concurrency: r.cfg.Plan.Concurrency,
		Client: r.cl, History: r.history, MaxInflight: r.cfg.Plan.MaxInflight,
		OnAttempt: func(a rundir.Attempt) {
			r.pr.attempts(attempts.Add(1), &a)
			r.j.attempt(a)
		},
		OnOpDone: func(_ int, res client.Result) {
			if res.Definite {
				r.pr.set(barOps, confirmed.Add(1))
			}
			r.sched.opDone()
		},
	}
}

// startSampling snapshots the system's metrics pages into the run
// directory's timeline until stopSampling, feeding the progress bars.
func (r *attackRun) startSampling(runCtx context.Context) {
	r.evidence = r.sys.sources.HTTPClient
	if r.evidence == nil {
		r.evidence = &http.Client{Timeout: 2 * time.Second}
	}
	sampleCtx, cancel := context.WithCancel(runCtx)
	var sampling sync.WaitGroup
	r.stopSampling = func() { cancel(); sampling.Wait() }
	r.onClose(r.stopSampling)
	pages := r.sys.sources.MetricsURLs
	if len(pages) == 0 {
		return
	}
	sampling.Add(1)
	go func() {
		defer sampling.Done()
		sampleTimeline(sampleCtx, r.evidence, r.cfg.Out, pages, 250*time.Millisecond, r.onPage)
	}()
}

// onPage moves the outbox and side-effect bars from a sampled page.
func (r *attackRun) onPage(name string, page []byte) {
	if !r.cfg.Bars {
		return
	}
	if v, ok := pageValue(page, "paytest_outbox_pending"); ok && name == "relay" {
		r.pr.pending(int64(v))
	}
	if url := r.sys.drain.EffectsURL; url != "" && url == r.sys.sources.MetricsURLs[name] {
		if v, ok := pageValue(page, r.sys.drain.EffectsMetric); ok {
			r.pr.set(barEffects, int64(v))
		}
	}
}

// chaos drives the plan while the schedule fires its faults, then heals
// the proxies. A failed load stops the run early (recorded), unless the
// run was cancelled, which ends it.
func (r *attackRun) chaos(ctx, runCtx context.Context) error {
	began := time.Now()
	loadDone := make(chan struct{})
	schedDone := make(chan struct{})
	go func() {
		defer close(schedDone)
		r.sched.run(runCtx, loadDone)
	}()
	lcfg := r.lcfg
	var catchUp sync.WaitGroup
	lcfg.OnLastArrival = func(dropped []int) {
		r.caughtUp = dropped
		catchUp.Go(func() { r.res.CaughtUp = r.catchUp(runCtx, dropped) })
	}
	sum, loadErr := load.Run(runCtx, r.pl, lcfg)
	close(loadDone)
	<-schedDone
	catchUp.Wait()
	if loadErr != nil {
		if ctx.Err() != nil {
			return apperr.Wrap(apperr.EINCONCLUSIVE, loadErr, "load")
		}
		r.stopped.add(r.j, "the load failed: %v", loadErr)
		r.loadFailed = true
	}
	r.res.Load = sum
	if err := (fault.Toxiproxy{Client: r.tp.Client()}).Heal(); err != nil {
		r.j.printf(time.Now(), "healing the proxies: %v", err)
	}
	if sum != nil {
		took := time.Since(began).Round(time.Millisecond)
		r.j.printf(time.Now(), "chaos phase done in %s: %d ops, %d confirmed, %d attempts, %d unconfirmed",
			took, sum.Ops, sum.Confirmed, sum.Attempts, len(sum.Unconfirmed))
		todo := len(sum.Unconfirmed)
		caught := ""
		if cu := r.res.CaughtUp; cu != nil {
			todo = len(stillUnconfirmed(sum.Unconfirmed, r.caughtUp, cu.Unconfirmed))
			caught = fmt.Sprintf(", %d dropped and caught up", cu.Confirmed)
		}
		r.pr.line("paytest: chaos phase %s: %d ops, %d confirmed, %d attempts%s, %d to reconcile",
			took, sum.Ops, sum.Confirmed, sum.Attempts, caught, todo)
	}
	return nil
}

// catchUp sends the charges the open model dropped at its in-flight cap
// once its last arrival is made, while its last ops finish (their
// Retry-After waits and backoffs leave the target idle otherwise): as the
// reconciliation does, a fresh sender with the op's key, without the last
// look (the reconcile phase takes it) and without counting toward the
// fault schedule, whose windows follow the load's own ops.
func (r *attackRun) catchUp(runCtx context.Context, dropped []int) *load.Summary {
	began := time.Now()
	cfg := r.lcfg
	cfg.LastLook = -1
	cfg.OnOpDone = func(_ int, res client.Result) {
		if res.Definite {
			r.pr.set(barOps, r.confirmed.Add(1))
		}
	}
	sum, err := load.Reconcile(runCtx, r.pl, dropped, cfg, time.Now().Add(r.cfg.Evidence.ReconcileTimeout))
	if sum != nil {
		r.j.printf(time.Now(), "caught up %d of %d dropped charges in %s while the last ops finished",
			sum.Confirmed, len(dropped), time.Since(began).Round(time.Millisecond))
	}
	if err != nil && runCtx.Err() == nil {
		r.j.printf(time.Now(), "catching up the dropped charges: %v (the reconcile phase re-drives them)", err)
	}
	return sum
}

// reconcile re-drives what the chaos left unconfirmed (less what the
// catch-up confirmed), after a load that finished.
func (r *attackRun) reconcile(runCtx context.Context) {
	if r.loadFailed || r.res.Load == nil {
		return
	}
	todo := r.res.Load.Unconfirmed
	if cu := r.res.CaughtUp; cu != nil {
		todo = stillUnconfirmed(todo, r.caughtUp, cu.Unconfirmed)
	}
	if len(todo) == 0 {
		return
	}
	r.res.Reconciled = reconcilePhase(runCtx, &r.cfg, r.pl, todo, r.lcfg, r.j, r.pr, &r.stopped)
}

// stillUnconfirmed is ids less the ops redriven confirmed (those of
// redriven not in unconfirmed).
func stillUnconfirmed(ids, redriven, unconfirmed []int) []int {
	confirmed := map[int]bool{}
	for _, id := range redriven {
		confirmed[id] = true
	}
	for _, id := range unconfirmed {
		confirmed[id] = false
	}
	var out []int
	for _, id := range ids {
		if !confirmed[id] {
			out = append(out, id)
		}
	}
	return out
}

// drain waits for crashed components to come back and the system to
// settle, then records every fault that failed or never fired.
func (r *attackRun) drain(runCtx context.Context) {
	r.sched.waitCrashes(runCtx, 30*time.Second)
	r.res.Drained = drainPhase(runCtx, r.sys, &r.cfg, r.pl.Charges(), r.evidence, r.j, r.pr, &r.stopped)
	for _, e := range r.j.Errors() {
		r.stopped.add(r.j, "a fault failed: %s", e)
	}
	for _, d := range r.sched.unfired() {
		r.stopped.add(r.j, "%s never fired: the component never reached its crash point", d)
	}
	r.res.Faults = r.j.Counts()
}

// verdict saves the client's side of the evidence, collects the system's,
// stops everything, and has verify judge the run directory. Evidence that
// could not all be collected is still judged, the report saying why.
func (r *attackRun) verdict(ctx context.Context) (*Result, error) {
	out := r.cfg.Out
	r.stopSampling()
	if err := saveRegistry(r.reg, rundir.PagePath(out, rundir.ClientPage)); err != nil {
		return nil, apperr.Wrap(apperr.EINCONCLUSIVE, err, "saving client metrics")
	}
	if err := r.history.Close(); err != nil {
		return nil, apperr.Wrap(apperr.EINCONCLUSIVE, err, "writing history")
	}
	r.cancelRun()
	r.sched.wait()
	r.rec.Ended = time.Now().UTC()
	if err := rundir.WriteRun(filepath.Join(out, rundir.RunFile), r.rec); err != nil {
		return nil, apperr.Wrap(apperr.EINCONCLUSIVE, err, "writing run.yaml")
	}
	if err := verify.Collect(ctx, r.sys.sources, out); err != nil {
		if cerr := cancelled(ctx); cerr != nil {
			return nil, cerr
		}
		r.stopped.add(r.j, "collecting the evidence failed: %v", err)
	}
	// The load's and the evidence's idle connections (and the ones their
	// transports dialled and never used) would each hold a component's
	// graceful shutdown: an HTTP server waits 5 s for a connection that
	// never sent a request. Closed here (the proxy closes its side too).
	r.sys.httpClient.CloseIdleConnections()
	if r.evidence != nil {
		r.evidence.CloseIdleConnections()
	}
	stopping := time.Now()
	r.sys.stop()
	r.tp.Shutdown()
	r.res.stopTook = time.Since(stopping)
	r.j.printf(time.Now(), "system stopped in %s", r.res.stopTook.Round(time.Millisecond))
	if r.cfg.Plan.sharded() {
		return r.shardDone()
	}
	if err := r.j.Close(); err != nil {
		return nil, apperr.Wrap(apperr.EINCONCLUSIVE, err, "writing the transcript")
	}
	r.pr.done()
	rep, err := verify.Verify(ctx, out, verify.Options{
		SideEffectMetric: r.cfg.Evidence.SideEffectMetric, MaxRetryAmplification: r.cfg.Client.MaxRetryAmplification,
		Stopped: r.stopped.String(), Thresholds: r.cfg.Evidence.Thresholds,
	})
	if err != nil {
		return nil, err
	}
	r.res.Report = rep
	r.res.Duration = time.Since(r.began)
	return r.res, nil
}

// shardDone ends a shard's run without a verdict of its own: one shard
// sees only its part of the plan, while the system's evidence holds every
// shard's effects, so only verify over every shard's directory can judge
// it. Why the shard stopped early, if it did, goes into run.yaml for that
// verdict.
func (r *attackRun) shardDone() (*Result, error) {
	r.rec.Stopped = r.stopped.String()
	if err := rundir.WriteRun(filepath.Join(r.cfg.Out, rundir.RunFile), r.rec); err != nil {
		return nil, apperr.Wrap(apperr.EINCONCLUSIVE, err, "writing run.yaml")
	}
	r.j.printf(time.Now(), "shard %s done: the verdict is paytest verify over every shard's run directory", r.cfg.Plan.Shard)
	if err := r.j.Close(); err != nil {
		return nil, apperr.Wrap(apperr.EINCONCLUSIVE, err, "writing the transcript")
	}
	r.pr.done()
	r.res.Stopped = r.rec.Stopped
	r.res.Duration = time.Since(r.began)
	return r.res, nil
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
	rs, err := load.Reconcile(ctx, pl, unconfirmed, lcfg, time.Now().Add(cfg.Evidence.ReconcileTimeout))
	if rs != nil && rs.LastLook.Ops > 0 {
		j.printf(time.Now(), "last look (one attempt each, outside the retry budget) at %s", rs.LastLook)
	}
	switch {
	case err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
		j.printf(time.Now(), "reconcile deadline (%s) passed with %d ops still unconfirmed", cfg.Evidence.ReconcileTimeout, len(rs.Unconfirmed))
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
	d.Deadline = cfg.Evidence.DrainTimeout
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
			cfg.Evidence.DrainTimeout, dr.describe(d), errSuffix(dr.LastErr))
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
