// Package verify turns a run's evidence into a verdict a user can defend in
// a postmortem: every check has a name, a figure and the operations that
// break it.
//
// verify reads a system — the bundled reference or a team's own — only
// through its evidence: Prometheus text pages (or a Prometheus server's HTTP
// API), a ledger query over SQL, and the run directory's files written by
// attack (run.yaml, plan.jsonl, history.jsonl, faults.jsonl). Collect gathers
// the live evidence into the run directory (metrics/*.prom,
// metrics/prometheus.json, metrics/sources.json, ledger.jsonl,
// events.jsonl); Verify is offline and reads only the run directory, so
// `paytest verify --run DIR` recomputes a verdict long after the system is
// gone. The run directory's file names, record types and their codecs, and
// the fault vocabulary of faults.jsonl, live in internal/rundir, which
// attack writes with and verify reads with.
//
// The checks, by name (each names the evidence it was judged from):
//
//   - effects-equal-ops: side effects from metrics == logical charges in
//     the plan == effects in the ledger ("1000 of 1000 (ledger 1000 of
//     1000)"); effects under keys no op used count against it. Counters
//     are summed across resets as Prometheus's increase() does, from the
//     metrics timeline (metrics/timeline/, every 250 ms) and the final
//     pages, or from Prometheus's samples of the side-effect counter since
//     the run began; a drop or a new process_start_time_seconds marks a
//     restart (and a kill of the page's process before the first snapshot),
//     and report.json lists the resets. A kill with no drop after it is not
//     taken for one (it may have stopped another process: counting the old
//     value twice would invent charges), but makes the count a lower
//     bound. Effects a process counted after its last snapshot before a
//     restart are never seen: a shortfall after a reset or a kill holds
//     when the ledger shows no charge lost (the figure counts the never
//     scraped from the ledger), and is inconclusive without a ledger.
//   - exactly-once-per-op: Jepsen's model. An op the client saw succeed
//     (a complete 2xx) was applied exactly once; one with only definite
//     rejections (409, 422, other 4xx, never sent) zero times; an
//     indeterminate one (timeouts, network errors, a 2xx whose body was cut
//     off, 5xx, 429/503) at most once; none twice. The ledger decides: per
//     op when it has amounts ((merchant, key, amount, effects): a reuse's
//     effects are its own), else per key (a key's extra effects are "op X
//     or its reuse op Y" when the reuse's answers were lost). Without a
//     ledger, 2xx answers with the same resource id (else body) are one
//     charge replayed, marked or not; distinct resource ids fail the op;
//     answers it cannot tell apart (bodies differ, no id at --id-field)
//     leave it inconclusive, never failed. When events.jsonl can tell, a
//     failure says whether the consumer applied one event twice or the
//     charge service made two charges.
//   - race-single-winner: each race op has one winner: one ledger effect
//     for it, or without a ledger one distinct resource id among the
//     senders' 2xx answers (the others 409, replays or lost; answers that
//     cannot be told apart leave the race inconclusive).
//   - key-reuse-422: each changed-body reuse got a declared rejection
//     status (422, or --reuse-status) and no charge of its own (a 2xx with
//     a new resource id, or ledger effects at its amount). Another status,
//     or a 2xx replaying the original's charge (the changed body
//     acknowledged), is named in the counterexample; a double charge of
//     the original op is exactly-once-per-op's, not the reuse's.
//   - retry-after-honoured: no sender's next attempt came sooner than the
//     Retry-After its previous attempt carried (by recorded delay and clock).
//   - full-jitter: per attempt number, backoff delays/cap against
//     Uniform(0,1) (Kolmogorov-Smirnov, alpha 0.001, never below 0.05) and
//     the fullest 10 ms slot against the binomial maximum chance allows;
//     retries after a Retry-After are judged the same way above it.
//   - relay-crash-deduped: after relay kills (only kills of the relay), no
//     event was applied twice (events.jsonl). It holds when no repeat
//     reached the consumer (the broker's publish dedup absorbed it, or the
//     kill hit no batch in flight: the detail says which) or when the
//     inbox deduped the repeats; a charge service that double-charges is
//     not this check's failure.
//   - outbox-drained: outbox pending rows and lag are 0.
//   - dlq-exact: the DLQ counter equals the poison injected.
//   - backlog-paced: a relay with --publish-rate drained each broker cut's
//     backlog at its pace (at most 1.1 times the limit) without the broker
//     redelivering to the consumer.
//   - no-retry-storm: during each outage window (the charge service's
//     database cut), the attempts the client sent are at most
//     max-retry-amplification (the outage profile: 1.2) times its first
//     attempts. A run that sets no bound shows the figure unjudged.
//   - no-key-stuck-in-flight: no key was still answered 409 (in progress)
//     when the run ended without ever getting a definite answer; each
//     stuck key is listed with how long it was seen stuck.
//   - faults-fired: every fault fired; one that failed while running
//     (faults.jsonl action "error") or a crash point armed and never
//     reached makes the run inconclusive, naming it.
//
// Besides these, each threshold (Options.Thresholds, else run.yaml's) is a
// check named "threshold: <expr>" ("threshold: op_p99 < 800ms") judged
// against the run's latency, throughput or error rate; see Threshold.
//
// A check with nothing to look at says so (status nothing-to-check).
//
// Verdicts: held (exit 0), violated (exit 1) and inconclusive (exit 3,
// evidence missing, a fault that failed, or a run stopped early: never a
// false "held"). A run stopped early (Options.Stopped) still gets a report,
// at best inconclusive.
package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/paytest/paytest/internal/rundir"

	"github.com/paytest/paytest/internal/apperr"
)

// Verdicts.
const (
	VerdictHeld         = "held"
	VerdictViolated     = "violated"
	VerdictInconclusive = "inconclusive"
)

// Exit codes for each verdict (README.md).
const (
	ExitHeld         = 0
	ExitViolated     = 1
	ExitInconclusive = 3
)

// Check statuses. Held is true for StatusHeld and StatusNothing.
const (
	// StatusHeld: the property was checked and held.
	StatusHeld = "held"
	// StatusFailed: the property was violated; counterexamples say where.
	StatusFailed = "failed"
	// StatusInconclusive: the evidence the check needs is missing.
	StatusInconclusive = "inconclusive"
	// StatusNothing: the run gave the check nothing to look at (no races
	// in the plan, no relay killed...). It holds, and says so.
	StatusNothing = "nothing-to-check"
)

// Check names: part of the product (tests and users refer to them).
const (
	CheckEffectsEqualOps    = "effects-equal-ops"
	CheckExactlyOncePerOp   = "exactly-once-per-op"
	CheckRaceSingleWinner   = "race-single-winner"
	CheckKeyReuse422        = "key-reuse-422"
	CheckRetryAfterHonoured = "retry-after-honoured"
	CheckFullJitter         = "full-jitter"
	CheckRelayCrashDeduped  = "relay-crash-deduped"
	CheckOutboxDrained      = "outbox-drained"
	CheckDLQExact           = "dlq-exact"
	// CheckNoKeyStuck fails when a key was still answered "in progress"
	// (409) at the end of the run, after every definite answer was sought.
	CheckNoKeyStuck = "no-key-stuck-in-flight"
	// CheckFaultsFired is inconclusive when a fault failed while running
	// (faults.jsonl has an "error" record) or a crash point was armed and
	// never reached: the run did not do what its profile said, so its
	// verdict cannot read "held".
	CheckFaultsFired = "faults-fired"
)

// Metric names verify reads (README.md lists them).
const (
	DefaultSideEffectMetric = "paytest_side_effects_applied_total"
	DefaultSideEffectQuery  = "sum(paytest_side_effects_applied_total)"
	MetricInboxDuplicates   = "paytest_inbox_duplicates_total"
	MetricDLQMessages       = "paytest_dlq_messages_total"
	MetricOutboxPending     = "paytest_outbox_pending"
	MetricOutboxLag         = "paytest_outbox_lag_seconds"
	MetricChargesCreated    = "paytest_charges_created_total"
	MetricRelayPublished    = "paytest_relay_published_total"
)

// Options are expectations and tunables for Verify; the zero value is the
// default everywhere.
type Options struct {
	// SideEffectMetric names the counter of applied side effects in the
	// metrics pages. Default: what Collect recorded in metrics/sources.json,
	// else DefaultSideEffectMetric.
	SideEffectMetric string
	// ExpectedOps, when positive, is the number of logical charges for a
	// run without a plan (live verify of a system attack did not drive).
	// Without a plan and without it, every key in the ledger is one op.
	ExpectedOps int
	// MaxCounterexamples caps each check's list (default 20); the total is
	// always reported.
	MaxCounterexamples int
	// KSAlpha is the significance level of the full-jitter tests (default
	// 0.001): a check fails only when chance explains the delays with
	// probability below it.
	KSAlpha float64
	// MinJitterSamples is the fewest retries of one attempt number that
	// the jitter tests judge (default 30).
	MinJitterSamples int
	// SlotMS is the width of the synchronisation slots (default 10 ms).
	SlotMS float64
	// MaxRetryAmplification bounds the attempts sent during an outage per
	// first attempt, for no-retry-storm. 0 takes run.yaml's
	// max-retry-amplification (the outage profile sets 1.2); without
	// either, the figure is shown and not judged.
	MaxRetryAmplification float64
	// ReuseStatuses are the statuses that count as the correct rejection
	// of a changed body under a used key. Empty takes run.yaml's
	// reuse_statuses, else [422].
	ReuseStatuses []int
	// Stopped, when set, says why attack stopped before the end (a failed
	// reconcile, a dependency gone, evidence not collected). The report is
	// written from what there is, its verdict at best inconclusive (a
	// failed check still makes it violated), and carries the reason.
	Stopped string
	// Thresholds are load checks judged against the run's latency and
	// throughput; nil takes run.yaml's (an empty, non-nil list: none).
	Thresholds []Threshold
	// NoHTML skips report.html and its plots.
	NoHTML bool
}

func (o Options) withDefaults() Options {
	if o.MaxCounterexamples <= 0 {
		o.MaxCounterexamples = 20
	}
	if o.KSAlpha <= 0 || o.KSAlpha >= 1 {
		o.KSAlpha = 0.001
	}
	if o.MinJitterSamples <= 0 {
		o.MinJitterSamples = 30
	}
	if o.SlotMS <= 0 {
		o.SlotMS = 10
	}
	return o
}

// Report is the verdict and everything it was computed from; its JSON is
// report.json.
type Report struct {
	Verdict  string `json:"verdict"`
	ExitCode int    `json:"exit_code"`
	// Stopped is why attack stopped early (Options.Stopped), if it did.
	Stopped         string         `json:"stopped,omitempty"`
	Seed            int64          `json:"seed"`
	Profile         string         `json:"profile,omitempty"`
	Target          string         `json:"target,omitempty"`
	Unsafe          []string       `json:"unsafe,omitempty"`
	NoJitter        bool           `json:"no_jitter,omitempty"`
	DurationSeconds float64        `json:"duration_seconds"`
	Ops             int            `json:"ops"`
	SideEffects     int            `json:"side_effects"`
	LedgerEffects   int            `json:"ledger_effects"`
	Faults          map[string]int `json:"faults"`
	Checks          []Check        `json:"checks"`

	// OpsSource says where Ops came from: "plan", "expected" or "ledger keys".
	OpsSource string `json:"ops_source"`
	// SideEffectsSource is the evidence SideEffects was read from
	// ("metrics/consumer.prom", "prometheus"), empty when missing.
	SideEffectsSource string `json:"side_effects_source"`
	// LedgerSource is ledger.jsonl when the ledger was read, else empty;
	// LedgerMatch how its rows were matched to ops ("merchant and key",
	// "key", with ", amount" for a four-column query).
	LedgerSource string `json:"ledger_source"`
	LedgerMatch  string `json:"ledger_match,omitempty"`
	// EventRepeats counts the events the consumer applied more than once
	// (events.jsonl), nil without that evidence.
	EventRepeats *int `json:"event_repeats,omitempty"`
	// CountersFrom says how counters were read: "timeline" (summed across
	// the resets the metrics timeline saw, final page included) or "last
	// page" (no timeline: a reset cannot be seen).
	CountersFrom string `json:"counters_from,omitempty"`
	// CounterResets lists the resets seen in the timeline of the counters
	// verify reads (a process's own go_* and process_* counters are summed
	// the same way but not listed).
	CounterResets []CounterReset `json:"counter_resets,omitempty"`
	// ReuseStatuses are the statuses counted as a reuse's correct rejection.
	ReuseStatuses []int `json:"reuse_statuses,omitempty"`
	// Reuses counts the key-reuse operations of the plan, Races the race ops.
	Reuses int `json:"reuses"`
	Races  int `json:"races"`
	// Attempts counts client attempts in history.jsonl, by outcome in Outcomes.
	Attempts int            `json:"attempts"`
	Outcomes map[string]int `json:"outcomes"`
	// Latency and Throughput are what the client waited and achieved
	// (from history.jsonl; nil without attempts).
	Latency    *Latency    `json:"latency,omitempty"`
	Throughput *Throughput `json:"throughput,omitempty"`
	// PlotErrors are the plots report.html could not draw (the report is
	// whole without them).
	PlotErrors []string `json:"plot_errors,omitempty"`
	// AttemptsPerOp is a histogram: attempts (all senders) -> ops.
	AttemptsPerOp map[int]int `json:"attempts_per_op"`
	// LedgerKeys is the number of distinct keys in the ledger;
	// UnplannedLedgerEffects the effects under keys no op of the plan used.
	LedgerKeys             int `json:"ledger_keys"`
	UnplannedLedgerEffects int `json:"unplanned_ledger_effects"`
	// Metric figures, nil when absent from the evidence.
	InboxDuplicates  *float64 `json:"inbox_duplicates"`
	DLQMessages      *float64 `json:"dlq_messages"`
	OutboxPending    *float64 `json:"outbox_pending"`
	OutboxLagSeconds *float64 `json:"outbox_lag_seconds"`
	// IdempotencyCache is the charge service's cache tiers, when it ran
	// with Redis (metrics/charge.prom has paytest_idempotency_cache_total).
	IdempotencyCache *CacheFigures `json:"idempotency_cache,omitempty"`
	// Backlog is how each broker cut's outbox backlog drained, when the
	// metrics timeline has the relay's counter.
	Backlog []BacklogFigures `json:"backlog,omitempty"`
	// Outage is what the client sent while the charge service's database
	// was cut, when the run had an outage fault.
	Outage *OutageFigures `json:"outage,omitempty"`
	// Jitter holds the full-jitter statistics per group of retries.
	Jitter []JitterGroup `json:"jitter"`
	// EvidenceErrors is what Collect could not gather (metrics/sources.json).
	EvidenceErrors []string `json:"evidence_errors,omitempty"`
	// Plots names the plots of report.html.
	Plots []string `json:"plots,omitempty"`
	// ShardCount is N for a verdict merged from the shards of one plan
	// (VerifyShards); Shards are each shard's own figures, by K.
	ShardCount int            `json:"shard_count,omitempty"`
	Shards     []ShardFigures `json:"shards,omitempty"`
	// EvidenceFrom says whose evidence of the system a merged verdict
	// used (a shard's, by EvidenceDir's rule, or one collection for all).
	EvidenceFrom string `json:"evidence_from,omitempty"`
}

// Check is one named property with its figure.
type Check struct {
	Name   string `json:"name"`
	Held   bool   `json:"held"`
	Status string `json:"status"`
	Figure string `json:"figure"`
	Detail string `json:"detail"`
	// Evidence names what the check was judged from ("ledger", "client
	// history: resource ids", "metrics", "faults.jsonl"...).
	Evidence string `json:"evidence,omitempty"`
	// Counterexamples lists (at most Options.MaxCounterexamples of) the
	// operations that break the check; CounterexamplesTotal counts all.
	Counterexamples      []Counterexample `json:"counterexamples,omitempty"`
	CounterexamplesTotal int              `json:"counterexamples_total,omitempty"`
}

// Counterexample is one operation that breaks a check.
type Counterexample struct {
	// Op is the plan's op id, -1 for a ledger key no op of the plan used.
	Op       int    `json:"op"`
	Key      string `json:"key"`
	Merchant string `json:"merchant,omitempty"`
	// Sender and Attempt locate one attempt, for the retry checks.
	Sender  int `json:"sender,omitempty"`
	Attempt int `json:"attempt,omitempty"`
	// Attempts is how many attempts all senders made for the op.
	Attempts int `json:"attempts"`
	// LedgerEffects is the ledger's count for the op's key, nil without a ledger.
	LedgerEffects *int   `json:"ledger_effects,omitempty"`
	Why           string `json:"why"`
}

// JitterGroup is the full-jitter test of one group of retries: the backoff
// retries of one attempt number, or all retries after a Retry-After.
type JitterGroup struct {
	Reason  string  `json:"reason"`
	Attempt int     `json:"attempt,omitempty"`
	N       int     `json:"n"`
	CapMS   float64 `json:"cap_ms"`
	// KS is the Kolmogorov-Smirnov statistic of delay/cap against
	// Uniform(0,1); KSCritical its critical value at Options.KSAlpha.
	KS         float64 `json:"ks"`
	KSCritical float64 `json:"ks_critical"`
	// KSThreshold is what KS is judged against: the critical value, but
	// never below 0.05 (timer resolution in a client's recorded sleeps).
	KSThreshold float64 `json:"ks_threshold"`
	// Alpha is the significance level both tests use.
	Alpha float64 `json:"alpha"`
	// Slots is the number of SlotMS-wide slots in the window; MaxSlot the
	// most retries landing in one; MaxSlotExpected the typical (median)
	// maximum under Uniform and MaxSlotCritical the count chance reaches
	// with probability below Options.KSAlpha. 0 when the window has fewer
	// than two slots.
	Slots           int  `json:"slots"`
	MaxSlot         int  `json:"max_slot"`
	MaxSlotExpected int  `json:"max_slot_expected"`
	MaxSlotCritical int  `json:"max_slot_critical"`
	Insufficient    bool `json:"insufficient,omitempty"`
	Held            bool `json:"held"`
	// Hist is a 10-bin histogram of delay/cap over [0, 1].
	Hist []int `json:"hist"`
}

// Err returns nil for a held verdict and an apperr error coded EVIOLATED or
// EINCONCLUSIVE otherwise, naming the failed (or unjudged) checks.
func (r *Report) Err() error {
	switch r.Verdict {
	case VerdictHeld:
		return nil
	case VerdictViolated:
		return apperr.Errorf(apperr.EVIOLATED, "verdict violated: %s failed", strings.Join(r.names(StatusFailed), ", "))
	default:
		if r.Stopped != "" {
			return apperr.Errorf(apperr.EINCONCLUSIVE, "verdict inconclusive: the run stopped early: %s", r.Stopped)
		}
		if len(r.EvidenceErrors) > 0 {
			return apperr.Errorf(apperr.EINCONCLUSIVE, "verdict inconclusive: evidence missing: %s", strings.Join(r.EvidenceErrors, "; "))
		}
		return apperr.Errorf(apperr.EINCONCLUSIVE, "verdict inconclusive: %s", strings.Join(r.names(StatusInconclusive), ", "))
	}
}

// Check returns the named check, or nil.
func (r *Report) Check(name string) *Check {
	for i := range r.Checks {
		if r.Checks[i].Name == name {
			return &r.Checks[i]
		}
	}
	return nil
}

func (r *Report) names(status string) []string {
	var out []string
	for _, c := range r.Checks {
		if c.Status == status {
			out = append(out, c.Name)
		}
	}
	if len(out) == 0 {
		out = append(out, "evidence missing")
	}
	return out
}

// decide sets the verdict from the checks: violated when any failed;
// inconclusive when the run stopped early, a fault failed while running
// (faults-fired), effects-equal-ops could not be judged or Collect could
// not gather some evidence; else held. Other inconclusive checks (a per-op
// judgement without a ledger) are reported as such without withholding the
// verdict.
func (r *Report) decide() {
	r.Verdict, r.ExitCode = VerdictHeld, ExitHeld
	for _, c := range r.Checks {
		if c.Status == StatusFailed {
			r.Verdict, r.ExitCode = VerdictViolated, ExitViolated
			return
		}
	}
	c := r.Check(CheckEffectsEqualOps)
	f := r.Check(CheckFaultsFired)
	if c == nil || c.Status == StatusInconclusive || len(r.EvidenceErrors) > 0 || r.Stopped != "" ||
		(f != nil && f.Status == StatusInconclusive) {
		r.Verdict, r.ExitCode = VerdictInconclusive, ExitInconclusive
	}
}

// Verify reads the evidence in runDir, computes the checks and writes
// report.json, report.html (unless opts.NoHTML) and the verify section of
// transcript.txt. A violated or inconclusive verdict is not an error: it is
// in the report (see Report.Err). The error is for evidence that cannot be
// read or reports that cannot be written, and is coded EINCONCLUSIVE.
func Verify(ctx context.Context, runDir string, opts Options) (*Report, error) {
	opts = opts.withDefaults()
	if st, err := os.Stat(runDir); err != nil || !st.IsDir() {
		if err == nil {
			err = fmt.Errorf("not a directory")
		}
		return nil, apperr.Wrap(apperr.EINCONCLUSIVE, err, "run directory %s", runDir)
	}
	if set, ok, err := shardOf(runDir); err != nil {
		return nil, err
	} else if ok {
		return VerifyShards(ctx, set, runDir, runDir, opts)
	}
	return verifyInputs(ctx, dirInputs(runDir), runDir, opts)
}

// verifyInputs judges in and writes the reports into out.
func verifyInputs(ctx context.Context, in inputs, out string, opts Options) (*Report, error) {
	defer tightGC()()
	ev, err := readEvidence(in, opts)
	if err != nil {
		return nil, apperr.Wrap(apperr.EINCONCLUSIVE, err, "reading evidence in %s", in.dir)
	}
	a, err := analyse(ctx, in, ev, opts)
	if err != nil {
		return nil, apperr.Wrap(apperr.EINCONCLUSIVE, err, "reading history in %s", in.dir)
	}
	rep := a.report(ev, opts)
	rep.Stopped = opts.Stopped
	in.shards.describe(rep, a)
	rep.Latency, rep.Throughput = a.latency.finish(ev.faults)
	rep.Checks = append(rep.Checks, thresholdChecks(ev, opts, rep)...)
	rep.decide()
	// The verdict is judged: the plots need neither the ledger nor the
	// events, a large run's biggest maps after the ops themselves.
	ev.ledger, ev.ledgerAmounts, ev.repeatsByKey = nil, nil, nil
	if !opts.NoHTML {
		plots, err := a.plots(ev)
		if err != nil {
			return nil, apperr.Wrap(apperr.EINCONCLUSIVE, err, "plotting")
		}
		for _, p := range plots {
			rep.Plots = append(rep.Plots, p.ID)
		}
		rep.PlotErrors = a.plotErrors
		if err := writeHTML(filepath.Join(out, rundir.HTMLFile), rep, plots); err != nil {
			return nil, apperr.Wrap(apperr.EINCONCLUSIVE, err, "writing %s", rundir.HTMLFile)
		}
	}
	if err := writeJSON(filepath.Join(out, rundir.ReportFile), rep); err != nil {
		return nil, apperr.Wrap(apperr.EINCONCLUSIVE, err, "writing %s", rundir.ReportFile)
	}
	if err := appendTranscript(filepath.Join(out, rundir.TranscriptFile), rep); err != nil {
		return nil, apperr.Wrap(apperr.EINCONCLUSIVE, err, "writing %s", rundir.TranscriptFile)
	}
	return rep, nil
}

// tightGC lowers the garbage collector's goal to half the live heap (from
// all of it) while a verdict is judged, and returns what restores it.
// Verify keeps every op's state for its whole length while it streams
// records that die at once: the peak RSS is then about 1.5 times that
// state, not twice (a million-op verdict in a pod of 1 GiB). A setting
// already lower, or the collector turned off, is left as it is.
func tightGC() (restore func()) {
	const percent = 50
	old := debug.SetGCPercent(percent)
	if old < percent {
		debug.SetGCPercent(old)
		return func() {}
	}
	return func() { debug.SetGCPercent(old) }
}

// ReadReport reads a report.json written by Verify.
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'))
}

// writeFileAtomic writes through a temporary file and a rename, so a reader
// never sees half a report.
func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
