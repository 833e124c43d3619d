package verify

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/paytest/paytest/internal/promtext"
	"github.com/paytest/paytest/internal/rundir"
)

// Names of the PromQL answers in prometheus.json.
const (
	promSideEffects     = "side_effects"
	promInboxDuplicates = "inbox_duplicates"
	promDLQ             = "dlq_messages"
	promOutboxPending   = "outbox_pending"
	promOutboxLag       = "outbox_lag_seconds"
	promChargesCreated  = "charges_created"
	promRelayPublished  = "relay_published"
)

// promQueries are the other metrics (README.md lists them) Collect asks Prometheus for.
var promQueries = map[string]string{
	promInboxDuplicates: "sum(" + MetricInboxDuplicates + ")",
	promDLQ:             "sum(" + MetricDLQMessages + ")",
	promOutboxPending:   "max(" + MetricOutboxPending + ")",
	promOutboxLag:       "max(" + MetricOutboxLag + ")",
	promChargesCreated:  "sum(" + MetricChargesCreated + ")",
	promRelayPublished:  "sum(" + MetricRelayPublished + ")",
}

// evidence is everything in a run directory except plan and history, which
// are streamed.
type evidence struct {
	run        rundir.Run
	hasRun     bool
	sources    *rundir.Collected
	sideMetric string

	pageNames []string                      // sorted
	pages     map[string]map[string]float64 // page -> metric -> sum over series
	prom      *rundir.PromAnswers
	cache     *CacheFigures // from the charge page, nil without the metric

	hasLedger       bool
	ledger          map[string]int // mkey(merchant, key) -> effects
	scratch         []byte         // ledgerEffects' key
	ledgerMerchants bool           // some row names a merchant
	ledgerTotal     int
	// ledgerAmounts is the effects per (merchant, key, amount), from a
	// four-column ledger query (hasAmounts).
	ledgerAmounts map[string]int
	hasAmounts    bool
	// ledgerMatch says how ledger rows were matched to ops.
	ledgerMatch string

	// Events applied more than once, from events.jsonl (hasEvents).
	hasEvents    bool
	eventRepeats []rundir.EventRow
	repeatsByKey map[string][]rundir.EventRow // mkey(merchant, key)

	// Counters summed across resets (see applyTimeline).
	resets       []CounterReset
	countersFrom string

	faults        []rundir.Fault
	partialFaults string // a partial last line of faults.jsonl, skipped

	timeline map[string]rundir.Timeline    // page -> snapshots and down markers in time order
	parsed   map[string]map[string]float64 // snapshot path -> its page, read once
}

// snapshot is one timeline snapshot's metrics, parsed on first use; an
// unreadable snapshot reads as empty.
func (ev *evidence) snapshot(f rundir.Snapshot) map[string]float64 {
	if m, ok := ev.parsed[f.Path]; ok {
		return m
	}
	m, err := readPage(f.Path)
	if err != nil {
		m = nil
	}
	if ev.parsed == nil {
		ev.parsed = map[string]map[string]float64{}
	}
	ev.parsed[f.Path] = m
	return m
}

func mkey(merchant, key string) string { return merchant + "\x00" + key }

// inputs are the files a verdict is judged from: one run directory's, or
// several shards' (see ShardSet.inputs).
type inputs struct {
	// dir holds the system's evidence: metrics/, ledger.jsonl,
	// events.jsonl (and run.yaml when run is nil).
	dir string
	// run, when set, stands for dir's run.yaml (the shards' merged).
	run *rundir.Run
	// plan is plan.jsonl; histories and faults each shard's files (one
	// of each for a run directory).
	plan      string
	histories []shardFile
	faults    []shardFile
	// shards, for a sharded plan, says which ops each shard owned.
	shards *shardLayout
}

// shardFile is one shard's history or faults (shard 0 of a whole run).
type shardFile struct {
	shard int
	path  string
}

// dirInputs are the inputs of one run directory.
func dirInputs(runDir string) inputs {
	return inputs{
		dir: runDir, plan: filepath.Join(runDir, rundir.PlanFile),
		histories: []shardFile{{0, filepath.Join(runDir, rundir.HistoryFile)}},
		faults:    []shardFile{{0, filepath.Join(runDir, rundir.FaultsFile)}},
	}
}

func readEvidence(in inputs, opts Options) (*evidence, error) {
	runDir := in.dir
	ev := &evidence{pages: map[string]map[string]float64{}}
	if in.run != nil {
		ev.run, ev.hasRun = *in.run, true
	} else if r, err := rundir.ReadRun(filepath.Join(runDir, rundir.RunFile)); err == nil {
		ev.run, ev.hasRun = r, true
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	mdir := filepath.Join(runDir, rundir.MetricsDir)
	if b, err := os.ReadFile(filepath.Join(mdir, rundir.SourcesFile)); err == nil {
		var c rundir.Collected
		if err := json.Unmarshal(b, &c); err != nil {
			return nil, fmt.Errorf("%s: %w", rundir.SourcesFile, err)
		}
		ev.sources = &c
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	ev.sideMetric = opts.SideEffectMetric
	if ev.sideMetric == "" && ev.sources != nil {
		ev.sideMetric = ev.sources.SideEffectMetric
	}
	if ev.sideMetric == "" {
		ev.sideMetric = DefaultSideEffectMetric
	}
	pages, err := filepath.Glob(filepath.Join(mdir, "*.prom"))
	if err != nil {
		return nil, err
	}
	for _, p := range pages {
		name := strings.TrimSuffix(filepath.Base(p), ".prom")
		m, err := readPage(p)
		if err != nil {
			return nil, err
		}
		ev.pages[name] = m
		ev.pageNames = append(ev.pageNames, name)
		if name == "charge" {
			ev.cache = readCacheFigures(p)
		}
	}
	sort.Strings(ev.pageNames)
	if b, err := os.ReadFile(filepath.Join(mdir, rundir.PrometheusFile)); err == nil {
		var pa rundir.PromAnswers
		if err := json.Unmarshal(b, &pa); err != nil {
			return nil, fmt.Errorf("%s: %w", rundir.PrometheusFile, err)
		}
		ev.prom = &pa
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if ev.timeline, err = rundir.ReadTimelines(runDir); err != nil {
		return nil, err
	}
	// The kills in faults.jsonl tell the timeline where processes restarted.
	if err := ev.readFaults(in); err != nil {
		return nil, err
	}
	ev.applyTimeline(mdir)
	ev.applyPromSeries()
	if err := ev.readLedger(runDir); err != nil {
		return nil, err
	}
	if err := ev.readEvents(runDir); err != nil {
		return nil, err
	}
	return ev, nil
}

// readFaults reads every faults.jsonl of in, in time order (the shards'
// records interleave by wall-clock time).
func (ev *evidence) readFaults(in inputs) error {
	var notes []string
	for _, f := range in.faults {
		note, err := rundir.ReadJournal(f.path, func(x rundir.Fault) error {
			ev.faults = append(ev.faults, x)
			return nil
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if note != "" {
			notes = append(notes, in.shards.label(f.shard)+note)
		}
	}
	if len(in.faults) > 1 {
		sort.SliceStable(ev.faults, func(i, j int) bool { return ev.faults[i].Time.Before(ev.faults[j].Time) })
	}
	ev.partialFaults = strings.Join(notes, "; ")
	return nil
}

// readLedger reads ledger.jsonl, per key and, from a four-column query,
// per amount.
func (ev *evidence) readLedger(runDir string) error {
	// run.yaml's ops size the ledger's map: one key per charge.
	hint := 0
	if ev.hasRun && ev.run.Ops > 0 && ev.run.Ops <= 1<<24 {
		hint = ev.run.Ops
	}
	ev.ledger, ev.ledgerAmounts = make(map[string]int, hint), map[string]int{}
	err := rundir.ReadFile(filepath.Join(runDir, rundir.LedgerFile), func(r rundir.LedgerRow) error {
		if r.Merchant != "" {
			ev.ledgerMerchants = true
		}
		ev.ledger[mkey(r.Merchant, r.Key)] += int(r.Effects)
		if r.Amount != nil {
			ev.hasAmounts = true
			ev.ledgerAmounts[akey(r.Merchant, r.Key, *r.Amount)] += int(r.Effects)
		}
		ev.ledgerTotal += int(r.Effects)
		return nil
	})
	switch {
	case err == nil:
		ev.hasLedger = true
		ev.ledgerMatch = "key"
		if ev.ledgerMerchants {
			ev.ledgerMatch = "merchant and key"
		}
		if ev.hasAmounts {
			ev.ledgerMatch += ", amount"
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		return err
	}
	return nil
}

// readEvents reads events.jsonl (after the ledger, whose form it follows).
func (ev *evidence) readEvents(runDir string) error {
	ev.repeatsByKey = map[string][]rundir.EventRow{}
	err := rundir.ReadFile(filepath.Join(runDir, rundir.EventsFile), func(r rundir.EventRow) error {
		if r.Applied > 1 {
			ev.eventRepeats = append(ev.eventRepeats, r)
			if r.Key != "" {
				m := r.Merchant
				if !ev.ledgerMerchants { // a ledger by key alone: events match by key too
					m = ""
				}
				k := mkey(m, r.Key)
				ev.repeatsByKey[k] = append(ev.repeatsByKey[k], r)
			}
		}
		return nil
	})
	switch {
	case err == nil:
		ev.hasEvents = true
	case errors.Is(err, fs.ErrNotExist):
	default:
		return err
	}
	return nil
}

// akey is the ledgerAmounts key of (merchant, key, amount).
func akey(merchant, key string, amount int64) string {
	return mkey(merchant, key) + "\x00" + strconv.FormatInt(amount, 10)
}

// targetRun is true for a run against a team's endpoint.
func (ev *evidence) targetRun() bool {
	return ev.hasRun && ev.run.Target != "" && ev.run.Target != "bundled"
}

// matchMerchants decides how ledger rows are matched to ops. Against a
// team's endpoint the ledger's merchant column holds the endpoint's own
// names, not the plan's ("target"): unless some of the plan's merchants are
// in the ledger, keys are matched whatever the merchant column says.
func (ev *evidence) matchMerchants(planMerchants map[string]bool) {
	if !ev.ledgerMerchants || !ev.targetRun() {
		return
	}
	for k := range ev.ledger {
		if m, _, _ := strings.Cut(k, "\x00"); planMerchants[m] {
			return
		}
	}
	collapse := func(in map[string]int) map[string]int {
		out := make(map[string]int, len(in))
		for k, v := range in {
			_, rest, _ := strings.Cut(k, "\x00")
			out[mkey("", rest)] += v
		}
		return out
	}
	ev.ledger, ev.ledgerAmounts = collapse(ev.ledger), collapse(ev.ledgerAmounts)
	byKey := map[string][]rundir.EventRow{}
	for k, rows := range ev.repeatsByKey {
		_, key, _ := strings.Cut(k, "\x00")
		byKey[mkey("", key)] = append(byKey[mkey("", key)], rows...)
	}
	ev.repeatsByKey = byKey
	ev.ledgerMerchants = false
	ev.ledgerMatch = strings.Replace(ev.ledgerMatch, "merchant and key", "key (the ledger's merchants are the endpoint's own, not the plan's)", 1)
}

// readPage parses a Prometheus text page and sums each metric's counter,
// gauge and untyped samples over its series.
func readPage(path string) (map[string]float64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sums, err := promtext.Sums(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return sums, nil
}

// metricSum sums metric over every page that has it; with no page having
// it, the Prometheus answer named promName is used. ok is false when the
// evidence has neither.
func (ev *evidence) metricSum(metric, promName string) (v float64, source string, ok bool) {
	var srcs []string
	for _, n := range ev.pageNames {
		if x, has := ev.pages[n][metric]; has {
			v += x
			srcs = append(srcs, filepath.Join(rundir.MetricsDir, n+".prom"))
			ok = true
		}
	}
	if ok {
		return v, strings.Join(srcs, "+"), true
	}
	return ev.promValue(promName)
}

// metricMax is the largest value of metric over the pages that have it,
// preferring the page named prefer (the relay's, for the outbox).
func (ev *evidence) metricMax(metric, prefer, promName string) (v float64, source string, ok bool) {
	if x, has := ev.pages[prefer][metric]; has {
		return x, filepath.Join(rundir.MetricsDir, prefer+".prom"), true
	}
	v = math.Inf(-1)
	var srcs []string
	for _, n := range ev.pageNames {
		if x, has := ev.pages[n][metric]; has {
			v = math.Max(v, x)
			srcs = append(srcs, filepath.Join(rundir.MetricsDir, n+".prom"))
			ok = true
		}
	}
	if ok {
		return v, strings.Join(srcs, "+"), true
	}
	return ev.promValue(promName)
}

func (ev *evidence) promValue(name string) (float64, string, bool) {
	if ev.prom == nil {
		return 0, "", false
	}
	a, has := ev.prom.Answers[name]
	if !has || a.Value == nil {
		return 0, "", false
	}
	return *a.Value, "prometheus", true
}

// expectsMetrics and expectsLedger say whether the run was meant to have
// each kind of evidence: what Collect was asked for, or, for a run
// directory without sources.json, both.
func (ev *evidence) expectsMetrics() bool {
	return ev.sources == nil || len(ev.sources.Pages) > 0 || ev.sources.PrometheusURL != ""
}

func (ev *evidence) expectsLedger() bool {
	return ev.sources == nil || ev.sources.Database != ""
}

// expectsPage says whether Collect scraped a page of that name.
func (ev *evidence) expectsPage(name string) bool {
	if ev.sources == nil {
		return false
	}
	_, ok := ev.sources.Pages[name]
	return ok
}

// ledgerEffects returns the ledger's effects for one op's key. A ledger
// without merchants (a two-column query) is looked up by key alone.
func (ev *evidence) ledgerEffects(merchant, key string) int {
	if !ev.ledgerMerchants {
		merchant = ""
	}
	// mkey without a string per look-up: a million ops look theirs up.
	ev.scratch = append(append(append(ev.scratch[:0], merchant...), 0), key...)
	return ev.ledger[string(ev.scratch)]
}

// ledgerAmount returns the ledger's effects for one (merchant, key, amount);
// 0 without a four-column ledger.
func (ev *evidence) ledgerAmount(merchant, key string, amount int64) int {
	if !ev.ledgerMerchants {
		merchant = ""
	}
	return ev.ledgerAmounts[akey(merchant, key, amount)]
}

// repeats returns the events of one op's key the consumer applied more
// than once.
func (ev *evidence) repeats(merchant, key string) []rundir.EventRow {
	if !ev.ledgerMerchants {
		merchant = ""
	}
	return ev.repeatsByKey[mkey(merchant, key)]
}
