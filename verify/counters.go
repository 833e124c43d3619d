package verify

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/paytest/paytest/internal/promtext"
	"github.com/paytest/paytest/internal/rundir"
)

// CounterReset is one reset seen in a counter's series: the process that
// exports it restarted and counted from zero again. Verify adds Before to
// the counter from then on, as Prometheus's increase() does.
type CounterReset struct {
	// Page is the metrics page (charge, relay, consumer, target...).
	Page string `json:"page"`
	// Metric is the series: the metric's name and its labels.
	Metric string `json:"metric"`
	// Time is the first snapshot after the reset; Before and After the
	// series' values at the snapshot before and at that one (Before is 0
	// for a process killed before the series' first snapshot: nothing it
	// counted was seen).
	Time   time.Time `json:"time"`
	Before float64   `json:"before"`
	After  float64   `json:"after"`
}

// metricProcessStart is the standard gauge of a process's start time: when
// it changes between two snapshots of a page, the process restarted, even
// if a counter grew past its old value before the next snapshot.
const metricProcessStart = "process_start_time_seconds"

// counterSnapshot is one page's counter series at one time.
type counterSnapshot struct {
	t      time.Time
	series map[string]map[string]float64 // metric -> series labels -> value
	start  float64                       // process_start_time_seconds, 0 unknown
}

// point is one sample of one series.
type point struct {
	t        time.Time
	v, start float64 // start: the process's start time, 0 unknown
}

// killWindow is when a page's process was down: from its kill to its
// restart (to is zero when no restart was recorded).
type killWindow struct{ from, to time.Time }

// counterTotals is what the timeline says of one page's counters.
type counterTotals struct {
	totals map[string]float64 // metric -> summed across series and resets
	resets []CounterReset
}

// isCounter says whether a family is summed across resets: a counter, or
// an untyped metric named like one or named as the side-effect metric (a
// count of applied effects). A gauge never is: its drops are real.
func isCounter(f *dto.MetricFamily, sideMetric string) bool {
	switch f.GetType() {
	case dto.MetricType_COUNTER:
		return true
	case dto.MetricType_UNTYPED:
		return strings.HasSuffix(f.GetName(), "_total") || f.GetName() == sideMetric
	}
	return false
}

// readCounterSnapshot parses one page into its counter series; an
// unreadable page reads as nil.
func readCounterSnapshot(path string, t time.Time, sideMetric string) *counterSnapshot {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	fams, err := promtext.Parse(b)
	if err != nil {
		return nil
	}
	s := &counterSnapshot{t: t, series: map[string]map[string]float64{}}
	if f, ok := fams[metricProcessStart]; ok && len(f.GetMetric()) > 0 {
		if g := f.GetMetric()[0].GetGauge(); g != nil {
			s.start = g.GetValue()
		} else if u := f.GetMetric()[0].GetUntyped(); u != nil {
			s.start = u.GetValue()
		}
	}
	for name, f := range fams {
		if !isCounter(f, sideMetric) {
			continue
		}
		m := map[string]float64{}
		for _, x := range f.GetMetric() {
			var v float64
			switch {
			case x.Counter != nil:
				v = x.GetCounter().GetValue()
			case x.Untyped != nil:
				v = x.GetUntyped().GetValue()
			case x.Gauge != nil:
				v = x.GetGauge().GetValue()
			default:
				continue
			}
			m[labelString(x.GetLabel())] += v
		}
		s.series[name] = m
	}
	return s
}

func labelString(ls []*dto.LabelPair) string {
	if len(ls) == 0 {
		return ""
	}
	parts := make([]string, len(ls))
	for i, l := range ls {
		parts[i] = l.GetName() + "=" + quote(l.GetValue())
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

// sumCounters walks one page's snapshots in time order (the timeline, then
// the final page) and sums each counter per series across its resets (see
// sumSeries); down lists the scrapes the page did not answer.
func sumCounters(page string, snaps []*counterSnapshot, kills []killWindow, down []time.Time) counterTotals {
	out := counterTotals{totals: map[string]float64{}}
	series := map[string][]point{} // metric + "\x00" + labels -> samples
	for _, sn := range snaps {
		if sn == nil {
			continue
		}
		for metric, byLabels := range sn.series {
			for labels, v := range byLabels {
				id := metric + "\x00" + labels
				series[id] = append(series[id], point{sn.t, v, sn.start})
			}
		}
	}
	for id, pts := range series {
		metric, labels, _ := strings.Cut(id, "\x00")
		total, resets := sumSeries(page, metric+labels, pts, kills, down)
		out.totals[metric] += total
		out.resets = append(out.resets, resets...)
	}
	sort.Slice(out.resets, func(i, j int) bool {
		if !out.resets[i].Time.Equal(out.resets[j].Time) {
			return out.resets[i].Time.Before(out.resets[j].Time)
		}
		return out.resets[i].Metric < out.resets[j].Metric
	})
	return out
}

// sumSeries sums one counter series across the restarts of its process: a
// value below the one before, or a new process start time, means the
// process counted from zero again; what it had counted is kept. What it
// counted after its last sample is lost with it: the total is a lower
// bound. A kill (faults.jsonl) after which the value does not drop is not
// taken for a reset: a --kill-cmd may stop a process other than the one
// serving the page, and counting the old value twice would invent
// charges; the kill still makes the total a lower bound (sideKills), which
// a ledger can excuse. A kill after which the page did not answer a scrape
// (down) did stop the process serving it: the next sample is a restarted
// process's, even when its counter grew past the old value before it.
func sumSeries(page, name string, pts []point, kills []killWindow, down []time.Time) (total float64, resets []CounterReset) {
	offset := 0.0
	if killedBeforeFirst(pts, kills) {
		resets = append(resets, CounterReset{Page: page, Metric: name, Time: pts[0].t, After: pts[0].v})
	}
	for i := 1; i < len(pts); i++ {
		prev, cur := pts[i-1], pts[i]
		restarted := (prev.start != 0 && cur.start != 0 && cur.start != prev.start) || downAfterKill(prev.t, cur.t, kills, down)
		if cur.v < prev.v || restarted {
			resets = append(resets, CounterReset{Page: page, Metric: name, Time: cur.t, Before: prev.v, After: cur.v})
			offset += prev.v
		}
	}
	if len(pts) > 0 {
		total = pts[len(pts)-1].v + offset
	}
	return total, resets
}

// downAfterKill says whether the page failed a scrape between two samples
// (from, to) after one of its process's kills.
func downAfterKill(from, to time.Time, kills []killWindow, down []time.Time) bool {
	for _, d := range down {
		if !d.After(from) || !d.Before(to) {
			continue
		}
		for _, w := range kills {
			if !d.Before(w.from) {
				return true
			}
		}
	}
	return false
}

// killedBeforeFirst says whether the page's process was killed before the
// series' first sample: the process that was sampled counted from zero
// again, and what the killed one counted was never seen (a slow page still
// answering the first scrape when the process died).
func killedBeforeFirst(pts []point, kills []killWindow) bool {
	for _, w := range kills {
		if len(pts) > 0 && w.from.Before(pts[0].t) {
			return true
		}
	}
	return false
}

// killWindows are the kills of target's process in faults.jsonl, each with
// the restart recorded after it.
func killWindows(faults []rundir.Fault, target string) []killWindow {
	var out []killWindow
	for _, f := range faults {
		if f.Fault != rundir.FaultKill || f.Target != target {
			continue
		}
		switch {
		case f.Injected():
			out = append(out, killWindow{from: f.Time})
		case f.Action == rundir.ActionStop && len(out) > 0 && out[len(out)-1].to.IsZero() && !f.Time.Before(out[len(out)-1].from):
			out[len(out)-1].to = f.Time
		}
	}
	return out
}

// applyTimeline replaces the final pages' counters by their sums across the
// resets the timeline saw (final page included), for every page that has
// both a final page and a timeline. A series the final page lacks (a
// restarted process that has not created it yet) keeps what it counted.
func (ev *evidence) applyTimeline(mdir string) {
	final := time.Time{}
	if ev.sources != nil {
		final = ev.sources.Time
	}
	withTimeline, system := 0, 0
	for _, name := range ev.pageNames {
		if name != rundir.ClientPage {
			system++
		}
		files := ev.timeline[name].Snapshots
		if len(files) == 0 {
			continue
		}
		withTimeline++
		snaps := make([]*counterSnapshot, 0, len(files)+1)
		for _, f := range files {
			snaps = append(snaps, readCounterSnapshot(f.Path, f.Time, ev.sideMetric))
		}
		t := final
		if last := files[len(files)-1].Time; !t.After(last) {
			t = last.Add(time.Millisecond)
		}
		snaps = append(snaps, readCounterSnapshot(filepath.Join(mdir, name+".prom"), t, ev.sideMetric))
		ct := sumCounters(name, snaps, killWindows(ev.faults, name), ev.timeline[name].Down)
		for metric, v := range ct.totals {
			ev.pages[name][metric] = v
		}
		for _, x := range ct.resets {
			if ev.readsCounter(x.Metric) {
				ev.resets = append(ev.resets, x)
			}
		}
	}
	switch {
	case withTimeline > 0 && withTimeline >= system:
		ev.countersFrom = "timeline"
	case withTimeline > 0:
		ev.countersFrom = "timeline for some pages, last page for the others"
	case len(ev.pageNames) > 0:
		ev.countersFrom = "last page"
	}
}

// readsCounter says whether series (name{labels}) is of a counter verify
// reads: the resets of those are listed in the report (a process's own
// counters, go_memstats_* and the like, are summed but not listed).
func (ev *evidence) readsCounter(series string) bool {
	name, _, _ := strings.Cut(series, "{")
	switch name {
	case ev.sideMetric, MetricInboxDuplicates, MetricDLQMessages, MetricChargesCreated, MetricRelayPublished,
		MetricConsumerRedeliveries, MetricRetryBudgetExhausted:
		return true
	}
	return false
}

// applyPromSeries replaces Prometheus's side-effect answer by its series
// summed across their resets, when Collect saved them and no page has the
// metric (the pages, with their timeline, come first).
func (ev *evidence) applyPromSeries() {
	if ev.prom == nil || len(ev.prom.SideEffectSeries) == 0 {
		return
	}
	for _, n := range ev.pageNames {
		if _, ok := ev.pages[n][ev.sideMetric]; ok {
			return
		}
	}
	total := 0.0
	for _, s := range ev.prom.SideEffectSeries {
		pts := make([]point, len(s.Values))
		for i, v := range s.Values {
			pts[i] = point{t: time.UnixMilli(int64(v[0] * 1000)).UTC(), v: v[1]}
		}
		labels := make([]*dto.LabelPair, 0, len(s.Metric))
		for _, k := range sortedKeys(s.Metric) {
			if k != "__name__" {
				labels = append(labels, &dto.LabelPair{Name: ptr(k), Value: ptr(s.Metric[k])})
			}
		}
		// Kills are not applied: which of Prometheus's series a kill
		// restarted is not known.
		t, resets := sumSeries("prometheus", ev.sideMetric+labelString(labels), pts, nil, nil)
		total += t
		ev.resets = append(ev.resets, resets...)
	}
	if ev.prom.Answers == nil {
		ev.prom.Answers = map[string]rundir.PromAnswer{}
	}
	a := ev.prom.Answers[promSideEffects]
	a.Value = &total
	ev.prom.Answers[promSideEffects] = a
	if ev.countersFrom == "" {
		ev.countersFrom = "prometheus range"
	}
}

func ptr[T any](v T) *T { return &v }

// sideKills counts the kills (faults.jsonl) of the processes whose pages
// carry the side-effect metric: whenever they came, what such a process
// counted after its last scrape died with it, so the count is a lower
// bound. page names the killed page when there is one.
func (ev *evidence) sideKills() (n int, page string) {
	for _, name := range ev.pageNames {
		if _, ok := ev.pages[name][ev.sideMetric]; !ok {
			continue
		}
		if k := len(killWindows(ev.faults, name)); k > 0 {
			n += k
			page = name
		}
	}
	return n, page
}

// resetsOf counts the resets seen in metric's series.
func (ev *evidence) resetsOf(metric string) int {
	n := 0
	for _, r := range ev.resets {
		if r.Metric == metric || strings.HasPrefix(r.Metric, metric+"{") {
			n++
		}
	}
	return n
}
