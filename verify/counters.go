package verify

import (
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
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
	// series' values at the snapshot before and at that one.
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

// seriesState follows one series through the snapshots.
type seriesState struct {
	seen           bool
	last, offset   float64
	lastT          time.Time
	prevLast       float64
	prevT          time.Time
	start          float64
	unseenEstimate float64 // increments a reset may have hidden
}

// counterTotals is what the timeline says of one page's counters.
type counterTotals struct {
	totals map[string]float64 // metric -> summed across series and resets
	resets []CounterReset
	// hidden estimates, per metric, the increments made between a reset's
	// last snapshot and the process's end (lost with it): the rate just
	// before the reset times the gap. +Inf when no rate could be measured.
	hidden map[string]float64
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
	fams, err := parsePage(b)
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
// the final page) and sums each counter per series across its resets: a
// value below the one before, or a new process start time, means the
// process restarted and counted from zero; what it had counted is kept.
func sumCounters(page string, snaps []*counterSnapshot) counterTotals {
	out := counterTotals{totals: map[string]float64{}, hidden: map[string]float64{}}
	state := map[string]map[string]*seriesState{}
	for _, sn := range snaps {
		if sn == nil {
			continue
		}
		for metric, series := range sn.series {
			if state[metric] == nil {
				state[metric] = map[string]*seriesState{}
			}
			for labels, v := range series {
				st := state[metric][labels]
				if st == nil {
					st = &seriesState{}
					state[metric][labels] = st
				}
				restarted := st.seen && st.start != 0 && sn.start != 0 && sn.start != st.start
				if st.seen && (v < st.last || restarted) {
					out.resets = append(out.resets, CounterReset{Page: page, Metric: metric + labels, Time: sn.t, Before: st.last, After: v})
					st.offset += st.last
					st.unseenEstimate += unseen(st, sn.t)
				}
				if st.seen {
					st.prevLast, st.prevT = st.last, st.lastT
				}
				st.seen, st.last, st.lastT, st.start = true, v, sn.t, sn.start
			}
		}
	}
	for metric, series := range state {
		for _, st := range series {
			out.totals[metric] += st.last + st.offset
			out.hidden[metric] += st.unseenEstimate
		}
	}
	sort.Slice(out.resets, func(i, j int) bool {
		if !out.resets[i].Time.Equal(out.resets[j].Time) {
			return out.resets[i].Time.Before(out.resets[j].Time)
		}
		return out.resets[i].Metric < out.resets[j].Metric
	})
	return out
}

// unseen estimates the increments a series made after its last snapshot
// before a reset at t: its rate over the interval before, times the gap.
func unseen(st *seriesState, t time.Time) float64 {
	if st.prevT.IsZero() || !st.lastT.After(st.prevT) {
		return math.Inf(1)
	}
	rate := (st.last - st.prevLast) / st.lastT.Sub(st.prevT).Seconds()
	return math.Ceil(math.Max(0, rate) * t.Sub(st.lastT).Seconds())
}

// applyTimeline replaces the final pages' counters by their sums across the
// resets the timeline saw (final page included), for every page that has
// both a final page and a timeline. A series the final page lacks (a
// restarted process that has not created it yet) keeps what it counted.
func (ev *evidence) applyTimeline(mdir string) {
	ev.hidden = map[string]float64{}
	final := time.Time{}
	if ev.sources != nil {
		final = ev.sources.Time
	}
	withTimeline := 0
	for _, name := range ev.pageNames {
		files := ev.timeline[name]
		if len(files) == 0 {
			continue
		}
		withTimeline++
		snaps := make([]*counterSnapshot, 0, len(files)+1)
		for _, f := range files {
			snaps = append(snaps, readCounterSnapshot(f.path, f.t, ev.sideMetric))
		}
		t := final
		if last := files[len(files)-1].t; !t.After(last) {
			t = last.Add(time.Millisecond)
		}
		snaps = append(snaps, readCounterSnapshot(filepath.Join(mdir, name+".prom"), t, ev.sideMetric))
		ct := sumCounters(name, snaps)
		for metric, v := range ct.totals {
			ev.pages[name][metric] = v
		}
		for metric, h := range ct.hidden {
			ev.hidden[metric] += h
		}
		for _, x := range ct.resets {
			if ev.readsCounter(x.Metric) && (x.Before > 0 || x.After > 0) {
				ev.resets = append(ev.resets, x)
			}
		}
	}
	switch {
	case withTimeline > 0 && withTimeline == len(ev.pageNames):
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
