package main

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/paytest/paytest/attack"
	"github.com/paytest/paytest/attack/load"
	"github.com/paytest/paytest/attack/plan"
	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/rundir"
	"github.com/paytest/paytest/profiles"
	"github.com/paytest/paytest/target/stack"
	"github.com/paytest/paytest/verify"
)

const attackLong = `Run a scenario (a profile) and verify it.

Without --target, paytest boots the bundled reference payment system on
embedded defaults (Postgres, NATS JetStream, the charge service, relay and
consumer as child processes, an embedded toxiproxy in front of the charge
service and of the broker), drives a seeded plan of charges with duplicate
senders, same-key races and key reuse, eats responses, cuts the broker and
kills the relay between publish and mark, reconciles every unconfirmed
operation with its same key, waits for the outbox to drain and the consumer
to catch up, and prints the verdict.

With --target URL it attacks your endpoint through the embedded toxiproxy
and verifies from the evidence you point it at: --database-url with
--ledger-query (the authority: one row per idempotency key with the number
of charges it made), --metrics-url with --side-effect-metric, or
--prometheus-url with --side-effect-query (counters are summed across
restarts). See README.md, "Attacking your own endpoint".

What paytest assumes of your endpoint: a POST of the body (--body-template)
with the key in --key-header; a 2xx means charged (a replay of the stored
answer, marked or not, counts once: same --id-field or the same body, or
--replay-header; the ledger, when given, decides); 409 means the key is in flight (retried, honouring
Retry-After); a key reused with a changed body gets one of --reuse-status;
5xx and dropped connections are retried with the same key. A key still
answered 409 when the run ends fails no-key-stuck-in-flight.

The ledger query returns one row per key, in one of these forms:
  SELECT idem_key, count(*) FROM ledger GROUP BY 1               (key, count)
  SELECT merchant, idem_key, count(*) FROM ledger GROUP BY 1, 2  (merchant, key, count)
  SELECT merchant, idem_key, amount, count(*) FROM ledger GROUP BY 1, 2, 3
                                               (merchant, key, amount, count)
The last tells a changed-body reuse's effects (its own amount) from its
original's. Against --target the keys are matched whatever the merchant
column says.

Faults against --target: eat-response and latency act on the proxy in front
of your endpoint, outage makes that proxy refuse connections for its
window, kill runs --kill-cmd then --restart-cmd (PAYTEST_COMPONENT=target),
also at each --kill-at fraction. broker-cut, redis-loss and poison need the
bundled system: a profile with them (default, backlog, redis-loss, poison)
is refused unless --skip-fault leaves them out; endpoint (the default with
--target), lost-response, key-reuse, race and outage run as they are. On the bundled system --kill-at kills the
charge service (SIGKILL, restarted 500 ms later).

A run always ends with report.json and report.html: when it stops early
(reconciliation or evidence collection failed, a fault failed, the drain's
deadline passed) the report says why and reads inconclusive unless a check
failed.

Everything lands in the run directory (--out): run.yaml, plan.jsonl,
history.jsonl, faults.jsonl, transcript.txt, metrics/, report.json,
report.html, and the reference components' own logs in components.log.
Configuration precedence: flag, PAYTEST_* environment, --config file, the
profile, built-in default.

Sharded runs: --shard K/N (with --target and a fixed --seed) sends only the
K-th of N disjoint parts of the plan, so N processes together send the plan
once; an op's duplicate senders, race partners and reuse op stay in its
shard. Each shard writes its own run directory (plan.jsonl holds the whole
plan; run.yaml the shard, the seed and the whole plan's fingerprint) and
gives no verdict of its own: paytest verify --run 'DIR/shard-*' merges them.
Faults on the whole system (kill, outage, broker-cut, redis-loss, poison)
fire from --fault-shard only; eat-response and latency from every shard;
fault fractions are of the shard's ops. A profile's or default
--concurrency, --rate and --max-inflight are divided by N; values given
explicitly are the shard's own.

Exit codes: 0 held, 1 violated, 2 usage error, 3 inconclusive; a shard of
several exits 0 when it finished, 3 when it stopped early.`

const attackExample = `  paytest attack                                   # the default profile on embedded infrastructure
  paytest attack --profile race --ops 200 --seed 42
  paytest attack --unsafe no-idempotency           # watch the checker catch double charges
  paytest attack --output json --no-progress > report.json
  paytest attack --profile backlog --relay-arg=--publish-rate=0   # the same backlog drained with no limit
  paytest attack --profile lost-response --target https://api.example.test/v1/charges \
      --header 'Authorization: Bearer sk_test_x' --body-template body.tmpl \
      --metrics-url https://api.example.test/metrics --side-effect-metric payments_captured_total
  paytest attack --profile lost-response --target http://localhost:8080/pay \
      --database-url postgres://app@localhost/shop \
      --ledger-query 'SELECT idem_key, count(*) FROM ledger GROUP BY 1' \
      --replay-header X-Cache=HIT --reuse-status 400,422 \
      --kill-cmd 'systemctl kill -s KILL payments' --restart-cmd 'systemctl start payments' --kill-at 0.3,0.7`

func newAttackCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "attack",
		Short:   "Run a scenario against the reference system or your endpoint, then verify it",
		Long:    attackLong,
		Example: attackExample,
		Args:    cobra.NoArgs,
		RunE:    runAttack,
	}
	f := cmd.Flags()
	addRunFlags(f)
	addPlanFlags(f)
	addClientFlags(f)
	addBundledFlags(f)
	addTargetFlags(f)
	addFaultFlags(f)
	addEvidenceFlags(f)
	return cmd
}

// addRunFlags: the scenario, the run directory, the output, and the
// bundled components' own flags (which extend the profile's).
func addRunFlags(f *pflag.FlagSet) {
	f.String("profile", profiles.Default, "scenario: a built-in name ("+strings.Join(profiles.Names(), ", ")+") or a YAML file; with --target the default is "+profiles.DefaultTarget)
	f.String("out", "", "run directory (default runs/<timestamp>)")
	f.String("output", "text", "verdict format on stdout: text or json")
	f.Bool("no-progress", false, "no progress bars, one summary line per phase instead")
	f.StringArray("charge-arg", nil, "extra flag for the bundled charge service, after the profile's (repeatable; e.g. --charge-arg=--processing-delay=5ms)")
	f.StringArray("relay-arg", nil, "extra flag for the bundled relay, after the profile's (repeatable; e.g. --relay-arg=--publish-rate=0 for no limit)")
	f.StringArray("consumer-arg", nil, "extra flag for the bundled consumer, after the profile's (repeatable; e.g. --consumer-arg=--max-inflight=64)")
	f.String("junit", "", "also write every check (thresholds included) as JUnit XML to this file, for CI test reports")
}

// addPlanFlags: attack.PlanConfig.
func addPlanFlags(f *pflag.FlagSet) {
	f.Int("ops", 1000, fmt.Sprintf("logical operations (charges) to drive, at most %d", plan.MaxOps))
	f.Int("concurrency", 32, fmt.Sprintf("concurrent senders, at most %d", maxConcurrency))
	f.Float64("duplicate-rate", 0.2, "share of operations sent again by an independent sender")
	f.Float64("race-rate", 0.05, "share of operations released to several senders at once")
	f.Float64("reuse-rate", 0.02, "share of operations whose key is reused with a changed body (must get 422)")
	f.Int64("seed", 0, "seed of the plan and the fault schedule (0: random; always recorded)")
	f.String("rate", "", "open model: operations per second arriving on a schedule whatever the target's pace (N), or a linear ramp over the run (FROM:TO); without it --concurrency workers send as fast as answers come")
	f.Duration("duration", 0, "with --rate: run for this long (ops = rate x duration unless --ops is given); also the ramp's length")
	f.Int("max-inflight", 0, "with --rate: most operations open at once; arrivals beyond it are dropped and counted, never delayed, then reconciled as many at once (at most 256) (default 10000)")
	f.String("shard", "", "run only the K-th of N disjoint parts of the plan --seed gives, as K/N (0 <= K < N; needs --target and a fixed --seed); a profile's or default --concurrency, --rate and --max-inflight are divided by N, values given explicitly are this shard's own")
	f.Int("fault-shard", 0, "with --shard: the shard that fires the faults acting on the whole system (kill, outage, broker-cut, redis-loss, poison); every shard fires eat-response and latency")
}

// addClientFlags: attack.ClientConfig.
func addClientFlags(f *pflag.FlagSet) {
	f.StringArray("header", nil, "header K:V added to every request (repeatable)")
	f.String("key-header", attack.DefaultKeyHeader, "header that carries the idempotency key")
	f.String("replay-header", "", "header NAME or NAME=VALUE your endpoint marks replayed answers with (default: Idempotent-Replayed, else same id or body)")
	f.String("id-field", attack.DefaultIDField, "JSON pointer to the resource id in a 2xx body: two 2xx answers for one key with the same id are one charge")
	f.StringSlice("reuse-status", []string{"422"}, "status(es) your endpoint answers a key reused with a changed body, e.g. 400,422 (repeatable)")
	f.Bool("no-jitter", false, "UNSAFE: retry without jitter (to prove the jitter check fails)")
	f.Duration("timeout", attack.DefaultTimeout, "per-attempt timeout of the client")
	f.Int("max-attempts", attack.DefaultMaxAttempts, "attempts per sender, first included (1: no retries; -1: retry until the deadline)")
	f.Bool("budget", true, "per-call-site retry budget (token bucket)")
	f.Bool("no-budget", false, "disable the retry budget (same as --budget=false)")
	f.Float64("budget-capacity", 0, "retry budget size in tokens, a retry costing 5 (0: the profile's, else 500 as in the AWS standard retry mode)")
	f.Float64("max-retry-amplification", 0, "fail no-retry-storm when an outage's attempts exceed this many times its first attempts (0: the profile's; none: shown, not judged)")
}

// addBundledFlags: attack.BundledConfig (--database-url is the ledger's
// with --target: attack.EvidenceConfig).
func addBundledFlags(f *pflag.FlagSet) {
	f.String("database-url", "", "PostgreSQL URL: the reference system's database (default: embedded), or your ledger with --target")
	f.String("nats-url", "", "NATS URL with JetStream for the reference system (default: embedded)")
	f.String("redis-url", "", "Redis URL for the charge service's cache (default: embedded when the profile needs one)")
	f.StringArray("unsafe", nil, "break a guarantee of the reference system on purpose: "+strings.Join(stack.UnsafeModes(), ", "))
}

// addTargetFlags: attack.TargetConfig.
func addTargetFlags(f *pflag.FlagSet) {
	f.String("target", "", "attack your own endpoint (http:// or https:// URL) instead of the reference system")
	f.String("body-template", "", "file with a text/template of the request body, filled per operation")
	f.String("ca-cert", "", "PEM file of the CA(s) to trust for an https --target (default: the system's)")
	f.String("kill-cmd", "", "shell command killing your endpoint at the profile's kill points and --kill-at (with --target; gets PAYTEST_COMPONENT=target)")
	f.String("restart-cmd", "", "shell command restarting your endpoint after a kill, once it is down (with --target; gets PAYTEST_COMPONENT=target)")
}

// addFaultFlags: attack.FaultConfig.
func addFaultFlags(f *pflag.FlagSet) {
	f.StringSlice("kill-at", nil, "kill at these fractions of the run, e.g. 0.3,0.7 (repeatable): your endpoint through --kill-cmd, or the bundled charge service")
	f.StringSlice("skip-fault", nil, "leave these faults out of the profile (repeatable): those that cannot fire against --target are refused otherwise")
}

// addEvidenceFlags: attack.EvidenceConfig.
func addEvidenceFlags(f *pflag.FlagSet) {
	f.String("metrics-url", "", "your /metrics page (with --side-effect-metric)")
	f.String("side-effect-metric", "", "counter of applied side effects on --metrics-url (default "+verify.DefaultSideEffectMetric+")")
	f.String("prometheus-url", "", "Prometheus to query for side effects (with --side-effect-query)")
	f.String("side-effect-query", "", "PromQL giving the number of applied side effects (with --prometheus-url)")
	f.String("ledger-query", "", "SQL returning (key, count), (merchant, key, count) or (merchant, key, amount, count) rows (with --database-url)")
	f.Duration("reconcile-timeout", attack.DefaultReconcileTimeout, "deadline for re-driving unconfirmed operations")
	f.Duration("drain-timeout", attack.DefaultDrainTimeout, "deadline for the outbox to drain and the consumer to catch up")
	f.StringArray("threshold", nil, "load check METRIC OP VALUE, e.g. 'op_p99 < 800ms', 'attempt_error_rate < 5%', 'confirmed_rate > 990' (repeatable; see --help)")
	f.String("metrics-listen", "", "serve paytest's own client metrics (attempts by outcome, latency histogram, retry budget) on this address while the run lasts, e.g. :9464")
}

// runAttack runs the attack and prints its verdict; a verdict other than
// held is the command's (quiet) error, for the exit code.
func runAttack(cmd *cobra.Command, _ []string) error {
	cfg, out, err := attackConfig(cmd)
	if err != nil {
		return err
	}
	stdout := cmd.OutOrStdout()
	began := time.Now()
	res, err := attack.Run(cmd.Context(), cfg)
	if err != nil {
		return err
	}
	if res.Report == nil {
		return shardDone(stdout, res, out.format)
	}
	rep := res.Report
	if out.junit != "" {
		if err := verify.WriteJUnitFile(out.junit, rep); err != nil {
			return apperr.Wrap(apperr.EINCONCLUSIVE, err, "--junit")
		}
	}
	if out.format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		if err := rep.WriteText(stdout); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "run directory: %s (seed %d, %s)\n", res.Dir, res.Seed, time.Since(began).Round(time.Millisecond))
	}
	if err := rep.Err(); err != nil {
		return &quietError{err}
	}
	return nil
}

// shardDone tells what a shard of several left for the merged verdict:
// its run directory, and how to judge it with the others. A shard that
// stopped early exits 3; otherwise 0, the verdict being the merge's.
func shardDone(w io.Writer, res *attack.Result, format string) error {
	glob := shardGlob(res.Dir)
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"shard": res.Shard.String(), "dir": res.Dir, "seed": res.Seed,
			"plan_fingerprint": res.Fingerprint, "stopped": res.Stopped, "verify": "paytest verify --run '" + glob + "'"}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(w, "shard %s done: run directory %s (seed %d, plan %s)\n", res.Shard, res.Dir, res.Seed, res.Fingerprint)
		fmt.Fprintf(w, "the verdict needs every shard: paytest verify --run '%s'\n", glob)
	}
	if res.Stopped != "" {
		return apperr.Errorf(apperr.EINCONCLUSIVE, "shard %s stopped early: %s", res.Shard, res.Stopped)
	}
	return nil
}

// shardGlob is a --run glob likely to name every shard beside dir:
// runs/x/shard-3 gives runs/x/shard-*.
func shardGlob(dir string) string {
	base := filepath.Base(dir)
	if stem := strings.TrimRight(base, "0123456789"); stem != base {
		return filepath.Join(filepath.Dir(dir), stem+"*")
	}
	return filepath.Join(filepath.Dir(dir), "*")
}

// reportOutput is where the command writes the verdict: stdout's format
// and an optional JUnit file.
type reportOutput struct{ format, junit string }

// attackConfig resolves the attack command's configuration: flag >
// PAYTEST_* environment > --config file > profile > built-in default.
func attackConfig(cmd *cobra.Command) (attack.Config, reportOutput, error) {
	fail := func(err error) (attack.Config, reportOutput, error) { return attack.Config{}, reportOutput{}, err }
	prof, v, err := attackSettings(cmd)
	if err != nil {
		return fail(err)
	}
	log, err := newLogger(cmd, v)
	if err != nil {
		return fail(err)
	}
	output := v.GetString("output")
	if output != "text" && output != "json" {
		return fail(apperr.Errorf(apperr.EUSAGE, "--output %q: want text or json", output))
	}
	cfg := attack.Config{
		Profile: prof, Out: v.GetString("out"),
		Progress: cmd.ErrOrStderr(), Bars: progressBars(cmd, v), Log: log, Settings: recordedSettings(cmd, v),
	}
	if cfg.Plan, err = planConfig(cmd, v); err != nil {
		return fail(err)
	}
	if cfg.Evidence, err = evidenceConfig(v); err != nil {
		return fail(err)
	}
	if err := checkJUnit(v.GetString("junit")); err != nil {
		return fail(err)
	}
	if v.GetString("junit") != "" && cfg.Plan.Shard.Sharded() {
		return fail(apperr.Errorf(apperr.EUSAGE, "--junit writes a verdict, and a shard of several has none of its own: give --junit to paytest verify over every shard"))
	}
	if cfg.Target, err = targetConfig(v); err != nil {
		return fail(err)
	}
	if cfg.Client, err = clientConfig(v); err != nil {
		return fail(err)
	}
	if cfg.Bundled, err = bundledConfig(v, &cfg.Profile); err != nil {
		return fail(err)
	}
	if err := checkTargetOnly(v); err != nil {
		return fail(err)
	}
	if cfg.Faults, err = faultConfig(v); err != nil {
		return fail(err)
	}
	if err := checkEndpointOnly(cmd, v); err != nil {
		return fail(err)
	}
	if cfg.Target.RootCAs, err = rootCAs(v); err != nil {
		return fail(err)
	}
	// One flag, two roles: with --target the database is the team's
	// ledger, evidence; without, the reference system's own.
	if db := v.GetString("database-url"); cfg.Target.URL != "" {
		cfg.Evidence.DatabaseURL = db
	} else {
		cfg.Bundled.DatabaseURL = db
	}
	if err := checkAttack(cfg); err != nil {
		return fail(err)
	}
	return cfg, reportOutput{format: output, junit: v.GetString("junit")}, nil
}

// attackSettings loads the profile and resolves the settings over it.
// The profile's name may itself come from the environment or the config
// file; its values then sit under all of them.
func attackSettings(cmd *cobra.Command) (profiles.Profile, *viper.Viper, error) {
	v0, err := settings(cmd, nil)
	if err != nil {
		return profiles.Profile{}, nil, err
	}
	profile := v0.GetString("profile")
	if !v0.IsSet("profile") && v0.GetString("target") != "" {
		// The bundled default cuts a broker and kills a relay a team's
		// endpoint does not have: unasked, run what acts on the endpoint.
		profile = profiles.DefaultTarget
	}
	prof, err := profiles.Load(profile)
	if err != nil {
		return profiles.Profile{}, nil, err
	}
	v, err := settings(cmd, prof.Values())
	if err != nil {
		return profiles.Profile{}, nil, err
	}
	return prof, v, nil
}

// checkTargetOnly refuses the bundled system's flags with --target and
// the target's without it.
func checkTargetOnly(v *viper.Viper) error {
	if v.GetString("target") != "" {
		for _, n := range []string{"charge-arg", "relay-arg", "consumer-arg"} {
			if len(v.GetStringSlice(n)) > 0 {
				return apperr.Errorf(apperr.EUSAGE, "--%s applies only to the bundled reference system, not with --target", n)
			}
		}
		return nil
	}
	for _, n := range []string{"metrics-url", "side-effect-query", "ledger-query", "kill-cmd", "restart-cmd", "body-template", "ca-cert"} {
		if v.GetString(n) != "" {
			return apperr.Errorf(apperr.EUSAGE, "--%s applies only with --target", n)
		}
	}
	return nil
}

// checkEndpointOnly refuses, without --target, the flags that describe a
// team's endpoint's answers, even when set to their defaults.
func checkEndpointOnly(cmd *cobra.Command, v *viper.Viper) error {
	if v.GetString("target") != "" {
		return nil
	}
	for _, n := range []string{"replay-header", "id-field", "reuse-status"} {
		if cmd.Flags().Changed(n) || v.InConfig(n) || os.Getenv("PAYTEST_"+strings.ToUpper(strings.ReplaceAll(n, "-", "_"))) != "" {
			return apperr.Errorf(apperr.EUSAGE, "--%s describes your endpoint: it applies only with --target", n)
		}
	}
	return nil
}

// progressBars reports whether stdout is a terminal that asked for bars.
func progressBars(cmd *cobra.Command, v *viper.Viper) bool {
	fd, ok := cmd.OutOrStdout().(*os.File)
	return ok && isatty.IsTerminal(fd.Fd()) && !v.GetBool("no-progress")
}

// recordedSettings is every flag's resolved value, for run.yaml.
func recordedSettings(cmd *cobra.Command, v *viper.Viper) map[string]any {
	recorded := map[string]any{}
	cmd.Flags().VisitAll(func(fl *pflag.Flag) {
		if fl.Name != "help" && fl.Name != "config" {
			recorded[fl.Name] = v.Get(fl.Name)
		}
	})
	return recorded
}

// planConfig reads the plan and its pacing: with --rate and --duration,
// ops = rate x duration unless --ops itself was given.
func planConfig(cmd *cobra.Command, v *viper.Viper) (attack.PlanConfig, error) {
	p := attack.PlanConfig{
		Ops: v.GetInt("ops"), Concurrency: v.GetInt("concurrency"),
		DuplicateRate: v.GetFloat64("duplicate-rate"), RaceRate: v.GetFloat64("race-rate"), ReuseRate: v.GetFloat64("reuse-rate"),
		Seed: v.GetInt64("seed"), Duration: v.GetDuration("duration"), MaxInflight: v.GetInt("max-inflight"),
	}
	if err := shardConfig(cmd, v, &p); err != nil {
		return p, err
	}
	if s := v.GetString("rate"); s != "" {
		r, err := load.ParseRate(s)
		if err != nil {
			return p, apperr.Errorf(apperr.EUSAGE, "--%v", err)
		}
		p.Rate = r
		if p.Duration > 0 && !given(cmd, v, "ops") {
			p.Ops = wholeRate(r, p.Shard.N, given(cmd, v, "rate")).Ops(p.Duration)
			if p.Ops > plan.MaxOps {
				return p, apperr.Errorf(apperr.EUSAGE, "--rate %s for --duration %s is %d ops: want at most %d (a shorter --duration, or a lower --rate)", s, p.Duration, p.Ops, plan.MaxOps)
			}
		}
	} else {
		// The closed pool asked for over a profile's open model: the
		// profile's pacing goes with its rate.
		if !given(cmd, v, "duration") {
			p.Duration = 0
		}
		if !given(cmd, v, "max-inflight") {
			p.MaxInflight = 0
		}
	}
	divideForShard(cmd, v, &p)
	return p, nil
}

// shardConfig reads --shard and --fault-shard. A shard needs a fixed
// seed: N processes drawing their own would run N different plans.
func shardConfig(cmd *cobra.Command, v *viper.Viper, p *attack.PlanConfig) error {
	s := v.GetString("shard")
	if s == "" {
		if given(cmd, v, "fault-shard") {
			return apperr.Errorf(apperr.EUSAGE, "--fault-shard applies with --shard K/N")
		}
		return nil
	}
	sh, err := rundir.ParseShard(s)
	if err != nil {
		return apperr.Errorf(apperr.EUSAGE, "--shard %s: %v", s, err)
	}
	p.Shard, p.FaultShard = sh, v.GetInt("fault-shard")
	if sh.Sharded() && p.Seed == 0 {
		return apperr.Errorf(apperr.EUSAGE, "--shard %s needs --seed: every shard must build the same plan", sh)
	}
	return nil
}

// wholeRate is the whole run's rate: a rate given explicitly is one
// shard's of n.
func wholeRate(r load.Rate, n int, explicit bool) load.Rate {
	if explicit && n > 1 {
		r.From, r.To = r.From*float64(n), r.To*float64(n)
	}
	return r
}

// divideForShard gives a shard of N its share of the concurrency, rate and
// in-flight cap that describe the whole run (a profile's or the default);
// a value given by flag, environment or config file is the shard's own.
func divideForShard(cmd *cobra.Command, v *viper.Viper, p *attack.PlanConfig) {
	n := p.Shard.N
	if n <= 1 {
		return
	}
	share := func(x int) int { return max(1, (x+n-1)/n) }
	if !given(cmd, v, "concurrency") {
		p.Concurrency = share(p.Concurrency)
	}
	if p.Rate.From == 0 {
		return
	}
	if !given(cmd, v, "rate") {
		p.Rate.From, p.Rate.To = p.Rate.From/float64(n), p.Rate.To/float64(n)
	}
	if !given(cmd, v, "max-inflight") {
		inflight := p.MaxInflight
		if inflight == 0 {
			inflight = load.DefaultMaxInflight
		}
		p.MaxInflight = share(inflight)
	}
}

// given reports whether a setting was given by flag, environment or
// config file, not left to the profile or the default.
func given(cmd *cobra.Command, v *viper.Viper, name string) bool {
	return cmd.Flags().Changed(name) || v.InConfig(name) || os.Getenv("PAYTEST_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_"))) != ""
}

// checkJUnit refuses a --junit file whose directory does not exist, before
// the run rather than after it.
func checkJUnit(path string) error {
	if path == "" {
		return nil
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || !st.IsDir() {
		return apperr.Errorf(apperr.EUSAGE, "--junit %s: its directory does not exist", path)
	}
	return nil
}

func clientConfig(v *viper.Viper) (attack.ClientConfig, error) {
	header, err := parseHeaders(v.GetStringSlice("header"))
	if err != nil {
		return attack.ClientConfig{}, err
	}
	reuse, err := parseList(v.GetStringSlice("reuse-status"), "--reuse-status", func(s string) (int, error) {
		x, err := strconv.Atoi(s)
		if err == nil && (x < 400 || x > 599) {
			err = fmt.Errorf("not a 4xx or 5xx status")
		}
		return x, err
	})
	if err != nil {
		return attack.ClientConfig{}, err
	}
	return attack.ClientConfig{
		Timeout: v.GetDuration("timeout"), MaxAttempts: v.GetInt("max-attempts"), NoJitter: v.GetBool("no-jitter"),
		NoBudget:       v.GetBool("no-budget") || !v.GetBool("budget"),
		BudgetCapacity: v.GetFloat64("budget-capacity"), MaxRetryAmplification: v.GetFloat64("max-retry-amplification"),
		Header: header, KeyHeader: v.GetString("key-header"),
		ReplayHeader: v.GetString("replay-header"), IDField: v.GetString("id-field"), ReuseStatuses: reuse,
	}, nil
}

// bundledConfig (but its DatabaseURL, which attackConfig places) checks
// --unsafe and adds the components' own flags to
// prof's: the last of a repeated flag wins, so these override the
// profile's.
func bundledConfig(v *viper.Viper, prof *profiles.Profile) (attack.BundledConfig, error) {
	b := attack.BundledConfig{
		NATSURL: v.GetString("nats-url"), RedisURL: v.GetString("redis-url"), Unsafe: v.GetStringSlice("unsafe"),
	}
	if err := b.Validate(); err != nil {
		return b, err
	}
	prof.Charge = append(prof.Charge, v.GetStringSlice("charge-arg")...)
	prof.Relay = append(prof.Relay, v.GetStringSlice("relay-arg")...)
	prof.Consumer = append(prof.Consumer, v.GetStringSlice("consumer-arg")...)
	return b, nil
}

// targetConfig parses --body-template's file (--ca-cert's is read by
// rootCAs once --target is known to be given).
func targetConfig(v *viper.Viper) (attack.TargetConfig, error) {
	t := attack.TargetConfig{URL: v.GetString("target"), KillCmd: v.GetString("kill-cmd"), RestartCmd: v.GetString("restart-cmd")}
	if path := v.GetString("body-template"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return t, apperr.Wrap(apperr.EUSAGE, err, "--body-template")
		}
		if t.BodyTemplate, err = template.New(path).Option("missingkey=error").Parse(string(b)); err != nil {
			return t, apperr.Wrap(apperr.EUSAGE, err, "--body-template %s", path)
		}
	}
	return t, nil
}

// rootCAs reads --ca-cert (nil: the system's roots).
func rootCAs(v *viper.Viper) (*x509.CertPool, error) {
	path := v.GetString("ca-cert")
	if path == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, apperr.Wrap(apperr.EUSAGE, err, "--ca-cert")
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, apperr.Errorf(apperr.EUSAGE, "--ca-cert %s: no PEM certificate in it", path)
	}
	return roots, nil
}

func faultConfig(v *viper.Viper) (attack.FaultConfig, error) {
	killAt, err := parseList(v.GetStringSlice("kill-at"), "--kill-at", func(s string) (float64, error) {
		x, err := strconv.ParseFloat(s, 64)
		if err == nil && (x < 0 || x > 1) {
			err = fmt.Errorf("not within 0..1")
		}
		return x, err
	})
	if err != nil {
		return attack.FaultConfig{}, err
	}
	return attack.FaultConfig{KillAt: killAt, Skip: splitCommas(v.GetStringSlice("skip-fault"))}, nil
}

// evidenceConfig leaves DatabaseURL to attackConfig, which knows whether
// it is evidence or the bundled system's.
func evidenceConfig(v *viper.Viper) (attack.EvidenceConfig, error) {
	ths, err := verify.ParseThresholds(v.GetStringSlice("threshold"))
	if err != nil {
		return attack.EvidenceConfig{}, err
	}
	return attack.EvidenceConfig{
		MetricsURL: v.GetString("metrics-url"), SideEffectMetric: v.GetString("side-effect-metric"),
		PrometheusURL: v.GetString("prometheus-url"), SideEffectQuery: v.GetString("side-effect-query"),
		LedgerQuery:      v.GetString("ledger-query"),
		ReconcileTimeout: v.GetDuration("reconcile-timeout"), DrainTimeout: v.GetDuration("drain-timeout"),
		Thresholds: ths, MetricsListen: v.GetString("metrics-listen"),
	}, nil
}

// splitCommas splits every value on commas too (a list from the
// environment or a config file arrives as one string), dropping blanks.
func splitCommas(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, part := range strings.Split(v, ",") {
			if part = strings.TrimSpace(part); part != "" {
				out = append(out, part)
			}
		}
	}
	return out
}

// parseList parses a comma or repeated list flag, naming the flag and the
// bad value on error (EUSAGE).
func parseList[T any](vals []string, flag string, parse func(string) (T, error)) ([]T, error) {
	var out []T
	for _, s := range splitCommas(vals) {
		x, err := parse(s)
		if err != nil {
			return nil, apperr.Errorf(apperr.EUSAGE, "%s %q: %v", flag, s, unwrapNum(err))
		}
		out = append(out, x)
	}
	return out, nil
}

// unwrapNum drops strconv's "strconv.ParseFloat: parsing "x": " prefix.
func unwrapNum(err error) error {
	var ne *strconv.NumError
	if errors.As(err, &ne) {
		return ne.Err
	}
	return err
}
