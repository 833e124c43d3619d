// Package rundir owns the run directory: the name of every file in it, every
// record written there with its encoder and decoder, and the fault
// vocabulary those records and the profiles speak. attack writes through it,
// verify reads through it, and neither needs the other to know the format
// (as vegeta's lib/results.go is neither the attacker's nor the reporter's).
//
// A run directory holds (README.md, "Reference interface", is the user's
// copy of this list):
//
//	run.yaml                       Run: what was asked for, when it ran
//	plan.jsonl                     Op: the logical operations
//	history.jsonl                  Attempt: one line per client attempt
//	faults.jsonl                   Fault: one line per injection or healing
//	transcript.txt                 the run as a person reads it
//	components.log                 the bundled components' output
//	metrics/<page>.prom            each /metrics page at the end (client.prom is paytest's own)
//	metrics/timeline/<page>/<ms>.prom   snapshots over time; <ms>.down a scrape not answered
//	metrics/sources.json           Collected: what the evidence was gathered from
//	metrics/prometheus.json        PromAnswers: PromQL answers
//	ledger.jsonl                   LedgerRow: effects per key from the ledger query
//	events.jsonl                   EventRow: events applied more than once
//	report.json, report.html       the verdict (package verify)
//
// Writers stream to disk and readers stream from it, so a 100,000-operation
// run never sits in memory as a whole.
package rundir

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// File names inside a run directory.
const (
	RunFile        = "run.yaml"
	PlanFile       = "plan.jsonl"
	HistoryFile    = "history.jsonl"
	FaultsFile     = "faults.jsonl"
	TranscriptFile = "transcript.txt"
	ComponentsLog  = "components.log"
	LedgerFile     = "ledger.jsonl"
	EventsFile     = "events.jsonl"
	ReportFile     = "report.json"
	HTMLFile       = "report.html"

	MetricsDir     = "metrics"
	SourcesFile    = "sources.json"    // in MetricsDir: what Collect gathered
	PrometheusFile = "prometheus.json" // in MetricsDir: PromQL answers
	TimelineDir    = "timeline"        // in MetricsDir: snapshots over time
)

// ClientPage is the metrics page of paytest's own client
// (metrics/client.prom): its process runs the whole attack, so its counters
// never reset and it needs no timeline.
const ClientPage = "client"

// Files lists what a run leaves at the top of its directory, MetricsDir
// included: what a new run in the same directory replaces.
func Files() []string {
	return []string{RunFile, PlanFile, HistoryFile, FaultsFile, TranscriptFile, ComponentsLog,
		LedgerFile, EventsFile, ReportFile, HTMLFile, MetricsDir}
}

// PagePath is where the last snapshot of metrics page name is saved:
// metrics/<name>.prom.
func PagePath(runDir, name string) string {
	return filepath.Join(runDir, MetricsDir, name+".prom")
}

// TimelinePath is where a snapshot of page name taken at t is saved, so
// report.html can plot effects and outbox lag over time and verify can sum
// counters across restarts: metrics/timeline/<name>/<unix-millis>.prom.
func TimelinePath(runDir, name string, t time.Time) string {
	return filepath.Join(runDir, MetricsDir, TimelineDir, name, strconv.FormatInt(t.UnixMilli(), 10)+".prom")
}

// TimelineDownPath marks a scrape of page name, begun at t, that the page
// did not answer (metrics/timeline/<name>/<unix-millis>.down, holding the
// error): a page that was down inside a kill of its process and answers
// again is a restarted process, even when its counters grew past their old
// values before the next snapshot.
func TimelineDownPath(runDir, name string, t time.Time) string {
	return filepath.Join(runDir, MetricsDir, TimelineDir, name, strconv.FormatInt(t.UnixMilli(), 10)+".down")
}

// Timeline is one page's entries under metrics/timeline/<page>/, in time
// order.
type Timeline struct {
	// Snapshots are the pages saved (.prom files).
	Snapshots []Snapshot
	// Down are the times of scrapes the page did not answer.
	Down []time.Time
}

// Snapshot is one saved page of the timeline.
type Snapshot struct {
	Time time.Time
	Path string
}

// ReadTimelines reads metrics/timeline/: each page's snapshots and down
// markers, in time order. A run without a timeline has none; files not
// named by a time are ignored.
func ReadTimelines(runDir string) (map[string]Timeline, error) {
	dir := filepath.Join(runDir, MetricsDir, TimelineDir)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]Timeline{}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		files, err := os.ReadDir(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		var tl Timeline
		for _, f := range files {
			stem, ext := strings.TrimSuffix(f.Name(), filepath.Ext(f.Name())), filepath.Ext(f.Name())
			ms, err := strconv.ParseInt(stem, 10, 64)
			if err != nil {
				continue
			}
			t := time.UnixMilli(ms).UTC()
			switch ext {
			case ".prom":
				tl.Snapshots = append(tl.Snapshots, Snapshot{Time: t, Path: filepath.Join(dir, e.Name(), f.Name())})
			case ".down":
				tl.Down = append(tl.Down, t)
			}
		}
		slices.SortFunc(tl.Snapshots, func(a, b Snapshot) int { return a.Time.Compare(b.Time) })
		slices.SortFunc(tl.Down, time.Time.Compare)
		out[e.Name()] = tl
	}
	return out, nil
}
