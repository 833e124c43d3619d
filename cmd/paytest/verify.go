package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/redact"
	"github.com/paytest/paytest/verify"
)

func newVerifyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check the evidence of a run or of a live system and print a verdict",
		Long: `verify checks that every logical operation moved money exactly once.

Offline, it recomputes the verdict of a saved run directory (--run DIR) from
its plan, history, faults, metrics snapshots and ledger. Live, it first
collects the evidence of a running system into the run directory: each
--metrics-url page (Prometheus text format), PromQL answers from
--prometheus-url, and the per-key effects of --ledger-query on
--database-url. Without --run, live evidence goes to runs/verify-<time>.

A ledger query returns one row per key in one of three forms: (key, effects),
(merchant, key, effects), or (merchant, key, amount, effects), which tells a
changed-body reuse's effects (its own amount) from the original's.

Counters are summed across the resets the metrics timeline saw; the ledger,
when given, is the authority for every per-operation check.

Checks: effects-equal-ops, exactly-once-per-op, race-single-winner,
key-reuse-422, retry-after-honoured, full-jitter, relay-crash-deduped,
outbox-drained, dlq-exact, backlog-paced, no-retry-storm,
no-key-stuck-in-flight, faults-fired, and one "threshold: <expr>" check per
load threshold: --threshold, else those run.yaml recorded from the attack.

A threshold is METRIC OP VALUE with OP one of < <= > >=:
  op_STAT, attempt_STAT   latency of confirmed operations (first due attempt to
                          confirmation) or of attempts (due to answer); STAT is
                          p50 p90 p95 p99 p99.9 min mean max; VALUE a duration
  attempt_error_rate      attempts sent not answered 2xx or the declared reuse
                          refusal: a fraction (0.05) or a percentage (5%)
  confirmed_rate, attempt_rate   per second over the run
  dropped_arrivals        open-model arrivals dropped at --max-inflight

Shards (attack --shard K/N): give every shard's run directory (--run DIR
repeated, or a glob such as --run 'runs/x/shard-*', expanded by paytest) and
verify judges them as one run of the whole plan, writing the verdict to
--out (default merged/ beside the first shard). Shards of different seeds or
plans, mixed shard counts or a shard given twice are refused (exit 2). A
missing shard's ops, or those a shard that did not finish never sent, are
not judged: the verdict is then inconclusive at best, naming the shard and
its ops. Live evidence flags are collected once, into --out; without them the
system's evidence (metrics, ledger) is that of the shard with a ledger.jsonl
that ended last, else of the shard that ended last: the latest collection
holds every shard's effects. Each shard's own figures are printed beside the
merged ones (report.json "shards").

Exit codes: 0 held, 1 violated, 2 usage, 3 inconclusive (evidence missing or
unreachable). --junit FILE also writes every check as JUnit XML.`,
		Example: `  paytest verify --run runs/2026-11-28T12-00-00
  paytest verify --metrics-url consumer=http://127.0.0.1:9102/metrics --database-url postgres://...
  paytest verify --metrics-url http://shop.internal/metrics --side-effect-metric shop_charges_applied_total
  paytest verify --prometheus-url http://127.0.0.1:9090 --output json
  paytest verify --run runs/demo --threshold 'op_p99 < 800ms' --threshold 'attempt_error_rate < 5%' --junit junit.xml
  paytest verify --run 'runs/big/shard-*' --junit runs/big/junit.xml`,
		Args: cobra.NoArgs,
		RunE: runVerify,
	}
	f := cmd.Flags()
	f.StringArray("run", nil, "run directory to verify (and, live, to save the evidence in); repeat it, or give a glob such as 'runs/x/shard-*' (expanded by paytest), to merge the shards of one plan")
	f.String("out", "", "with several --run shards: where the merged verdict (and live evidence) goes (default: merged/ beside the first shard)")
	f.StringArray("metrics-url", nil, "a component's metrics page as name=URL (repeatable; a bare URL is named \"target\")")
	f.String("prometheus-url", "", "Prometheus server to query (PromQL instant queries) instead of or besides the pages")
	f.Duration("prometheus-wait", 0, "wait up to this long for Prometheus to scrape every target after verify starts (0: query at once)")
	f.String("side-effect-metric", verify.DefaultSideEffectMetric, "counter of applied side effects on the metrics pages (summed over series and pages)")
	f.String("side-effect-query", "", "PromQL for the side effects at --prometheus-url (default: sum(<--side-effect-metric>))")
	f.String("database-url", "", "Postgres holding the ledger")
	f.String("ledger-query", verify.DefaultLedgerQuery, "SQL returning (key, effects), (merchant, key, effects) or (merchant, key, amount, effects) rows")
	f.Int("expect-ops", 0, "number of logical charges, for a live system without a plan.jsonl")
	f.String("output", "text", "verdict format on stdout: text or json")
	f.StringArray("threshold", nil, "load check METRIC OP VALUE, e.g. 'op_p99 < 800ms' (repeatable; replaces run.yaml's; see above)")
	f.String("junit", "", "also write every check (thresholds included) as JUnit XML to this file")
	return cmd
}

var metricsName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

// parseMetricsURLs turns name=URL (or a bare URL, named "target") flags
// into a map.
func parseMetricsURLs(vals []string) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range vals {
		name, u := "target", v
		if i := strings.IndexByte(v, '='); i > 0 && metricsName.MatchString(v[:i]) && !strings.Contains(v[:i], ":") {
			name, u = v[:i], v[i+1:]
		}
		if err := httpURL("metrics-url", u); err != nil {
			return nil, apperr.Errorf(apperr.EUSAGE, "--metrics-url %q: want name=http(s)://... or a URL with a host", redact.String(v))
		}
		if _, dup := out[name]; dup {
			return nil, apperr.Errorf(apperr.EUSAGE, "--metrics-url: %q given twice", name)
		}
		out[name] = u
	}
	return out, nil
}

func runVerify(cmd *cobra.Command, _ []string) error {
	v, err := settings(cmd, nil)
	if err != nil {
		return err
	}
	log, err := newLogger(cmd, v)
	if err != nil {
		return err
	}
	output := v.GetString("output")
	if output != "text" && output != "json" {
		return apperr.Errorf(apperr.EUSAGE, "--output %q: want text or json", output)
	}
	src, err := verifySources(cmd, v)
	if err != nil {
		return err
	}
	opts, err := verifyOptions(cmd, v, src)
	if err != nil {
		return err
	}
	runs, err := runDirs(cmd, v)
	if err != nil {
		return err
	}
	var rep *verify.Report
	var runDir string
	if len(runs) > 1 {
		rep, runDir, err = verifyShards(cmd.Context(), log, src, runs, v.GetString("out"), opts)
	} else {
		if runDir, err = evidenceDir(cmd.Context(), log, src, strings.Join(runs, "")); err == nil {
			rep, err = verify.Verify(cmd.Context(), runDir, opts)
		}
	}
	if err != nil {
		return err
	}
	if junit := v.GetString("junit"); junit != "" {
		if err := verify.WriteJUnitFile(junit, rep); err != nil {
			return apperr.Wrap(apperr.EINCONCLUSIVE, err, "--junit")
		}
	}
	if err := printReport(cmd.OutOrStdout(), rep, output, runDir); err != nil {
		return apperr.Wrap(apperr.EINTERNAL, err, "writing the verdict")
	}
	if err := rep.Err(); err != nil {
		return &quietError{err}
	}
	return nil
}

// verifySources reads and vets the flags that name a live system's
// evidence.
func verifySources(cmd *cobra.Command, v *viper.Viper) (verify.Sources, error) {
	urls := v.GetStringSlice("metrics-url")
	if cmd.Flags().Changed("metrics-url") {
		urls, _ = cmd.Flags().GetStringArray("metrics-url")
	}
	pages, err := parseMetricsURLs(urls)
	if err != nil {
		return verify.Sources{}, err
	}
	src := verify.Sources{
		MetricsURLs:      pages,
		PrometheusURL:    v.GetString("prometheus-url"),
		PrometheusWait:   v.GetDuration("prometheus-wait"),
		SideEffectMetric: v.GetString("side-effect-metric"),
		SideEffectQuery:  v.GetString("side-effect-query"),
		DatabaseURL:      v.GetString("database-url"),
		LedgerQuery:      v.GetString("ledger-query"),
	}
	if src.PrometheusURL != "" {
		if err := httpURL("prometheus-url", src.PrometheusURL); err != nil {
			return src, err
		}
	}
	if src.DatabaseURL != "" {
		if err := checkDatabaseURL("database-url", src.DatabaseURL); err != nil {
			return src, err
		}
	}
	if src.PrometheusWait < 0 {
		return src, apperr.Errorf(apperr.EUSAGE, "--prometheus-wait %s: must not be negative", src.PrometheusWait)
	}
	return src, nil
}

// verifyOptions reads and vets the flags that shape the verdict.
func verifyOptions(cmd *cobra.Command, v *viper.Viper, src verify.Sources) (verify.Options, error) {
	opts := verify.Options{SideEffectMetric: src.SideEffectMetric, ExpectedOps: v.GetInt("expect-ops")}
	if !cmd.Flags().Changed("side-effect-metric") && v.GetString("side-effect-metric") == verify.DefaultSideEffectMetric {
		opts.SideEffectMetric = "" // what the run's own collection recorded
	}
	if opts.ExpectedOps < 0 {
		return opts, apperr.Errorf(apperr.EUSAGE, "--expect-ops %d: want 0 or more", opts.ExpectedOps)
	}
	if given(cmd, v, "threshold") {
		ths, err := verify.ParseThresholds(v.GetStringSlice("threshold"))
		if err != nil {
			return opts, err
		}
		opts.Thresholds = append([]verify.Threshold{}, ths...) // non-nil: run.yaml's are replaced
	}
	return opts, checkJUnit(v.GetString("junit"))
}

// runDirs are the --run values, globs expanded (by paytest: a Kubernetes
// Job's arguments see no shell). A glob that matches no directory is
// refused.
func runDirs(cmd *cobra.Command, v *viper.Viper) ([]string, error) {
	vals, _ := cmd.Flags().GetStringArray("run")
	if !cmd.Flags().Changed("run") {
		vals = nil
		if s := v.GetString("run"); s != "" {
			vals = []string{s}
		}
	}
	var out []string
	for _, val := range vals {
		if !strings.ContainsAny(val, "*?[") {
			out = append(out, val)
			continue
		}
		matches, err := filepath.Glob(val)
		if err != nil {
			return nil, apperr.Wrap(apperr.EUSAGE, err, "--run %s", val)
		}
		n := 0
		for _, m := range matches {
			if st, err := os.Stat(m); err == nil && st.IsDir() {
				out = append(out, m)
				n++
			}
		}
		if n == 0 {
			return nil, apperr.Errorf(apperr.EUSAGE, "--run %s matches no directory", val)
		}
	}
	return out, nil
}

// verifyShards merges the shards in runs into one verdict written to out
// (default: merged/ beside the first shard). Live evidence flags are
// collected once, into out; without them the evidence of one shard stands
// for all (verify.ShardSet.EvidenceDir says which).
func verifyShards(ctx context.Context, log *slog.Logger, src verify.Sources, runs []string, out string, opts verify.Options) (*verify.Report, string, error) {
	set, err := verify.OpenShards(runs)
	if err != nil {
		return nil, "", err
	}
	if out == "" {
		out = filepath.Join(filepath.Dir(filepath.Clean(set.Shards[0].Dir)), "merged")
	}
	evDir, why := set.EvidenceDir()
	if live := len(src.MetricsURLs) > 0 || src.PrometheusURL != "" || src.DatabaseURL != ""; live {
		if evDir, err = evidenceDir(ctx, log, src, out); err != nil {
			return nil, "", err
		}
		why = "collected once into " + out
	}
	log.Info("merging shards", "shards", len(set.Shards), "of", set.N, "evidence", why, "out", out)
	rep, err := verify.VerifyShards(ctx, set, out, evDir, opts)
	return rep, out, err
}

// evidenceDir is the run directory to verify: runDir as given for a saved
// run; for a live system, runDir (default runs/verify-<time>) once the
// evidence was collected into it.
func evidenceDir(ctx context.Context, log *slog.Logger, src verify.Sources, runDir string) (string, error) {
	live := len(src.MetricsURLs) > 0 || src.PrometheusURL != "" || src.DatabaseURL != ""
	if !live {
		if runDir == "" {
			return "", apperr.Errorf(apperr.EUSAGE, "give --run DIR to recompute a saved run, or --metrics-url, --prometheus-url or --database-url to verify a live system")
		}
		if st, err := os.Stat(runDir); err != nil || !st.IsDir() {
			if err == nil {
				err = fmt.Errorf("not a directory")
			}
			return "", apperr.Wrap(apperr.EUSAGE, err, "--run %s", runDir)
		}
		return runDir, nil
	}
	if runDir == "" {
		runDir = filepath.Join("runs", "verify-"+time.Now().UTC().Format("2006-01-02T15-04-05Z"))
	}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return "", apperr.Wrap(apperr.EUSAGE, err, "--run %s", runDir)
	}
	log.Info("collecting evidence", "run", runDir, "pages", len(src.MetricsURLs), "prometheus", src.PrometheusURL != "", "database", src.DatabaseURL != "")
	if err := verify.Collect(ctx, src, runDir); err != nil {
		// What was collected is still judged: a violation in partial
		// evidence stands; a partial collection is never "held".
		log.Warn("evidence incomplete", "err", redact.String(err.Error()))
	}
	return runDir, nil
}

func printReport(w io.Writer, rep *verify.Report, output, runDir string) error {
	if output == "json" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '\n'))
		return err
	}
	if err := rep.WriteText(w); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "evidence and reports: %s (report.json, report.html, transcript.txt)\n", runDir)
	return err
}
