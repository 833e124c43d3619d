package verify

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/paytest/paytest/internal/rundir"
)

// Metric names the backlog figures are read from (the relay's and the
// consumer's pages, in the metrics timeline).
const (
	MetricConsumerInflightMax  = "paytest_consumer_inflight_max"
	MetricConsumerRedeliveries = "paytest_consumer_redeliveries_total"
	MetricRelayPublishLimit    = "paytest_relay_publish_rate_limit"
)

// BacklogFigures is one entry of report.json's "backlog": how the outbox
// backlog built while the broker was cut drained once it came back. It is
// read from the metrics timeline (metrics/timeline/, one snapshot of every
// page per ResolutionSeconds) and faults.jsonl's broker-cut window, so its
// times are as precise as ResolutionSeconds.
type BacklogFigures struct {
	// CutSeconds is how long the broker was cut.
	CutSeconds float64 `json:"cut_seconds"`
	// PeakPending is the most outbox rows seen waiting (paytest_outbox_pending).
	PeakPending float64 `json:"peak_pending"`
	// Published is how many events the relay published from the broker's
	// return until the outbox was drained.
	Published float64 `json:"published"`
	// DrainSeconds runs from the broker's return until the relay had
	// published the backlog; ApplySeconds until the consumer's side
	// effects stopped growing.
	DrainSeconds float64 `json:"drain_seconds"`
	ApplySeconds float64 `json:"apply_seconds"`
	// PublishRate is the relay's measured rate while draining, in events
	// per second; PublishRateLimit its configured --publish-rate (0:
	// unlimited), when the relay exports it.
	PublishRate      float64  `json:"publish_rate"`
	PublishRateLimit *float64 `json:"publish_rate_limit,omitempty"`
	// ConsumerInflightPeak is the consumer's peak of delivered, unacked
	// events (paytest_consumer_inflight_max).
	ConsumerInflightPeak float64 `json:"consumer_inflight_peak"`
	// Redeliveries counts the events the broker redelivered to the consumer
	// during the drain (AckWait expiry: the herd's signature).
	Redeliveries float64 `json:"redeliveries"`
	// ResolutionSeconds is the timeline's sampling interval.
	ResolutionSeconds float64 `json:"resolution_seconds"`
	// RelayKilled is true when the relay was killed during the cut or the
	// drain: the increments of paytest_relay_published_total it made after
	// its last scrape are lost, so Published and PublishRate are lower
	// bounds and DrainSeconds may read long.
	RelayKilled bool `json:"relay_killed,omitempty"`
}

// sample is one metric value at one snapshot time.
type sample struct {
	t time.Time
	v float64
}

// pageSeries is metric over time from the first timeline page that has it.
func (ev *evidence) pageSeries(metric string) []sample {
	for _, name := range sortedKeys(ev.timeline) {
		var out []sample
		for _, f := range ev.timeline[name].Snapshots {
			if v, ok := ev.snapshot(f)[metric]; ok {
				out = append(out, sample{f.Time, v})
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	return nil
}

// at is the last value at or before t (the first value when none is).
func at(s []sample, t time.Time) float64 {
	i := sort.Search(len(s), func(i int) bool { return s[i].t.After(t) })
	if i == 0 {
		return s[0].v
	}
	return s[i-1].v
}

// counter returns a counter's samples with its resets undone: a value
// below the one before means the process restarted and counted from zero
// again, so everything counted before the reset is added from then on.
func counter(s []sample) []sample {
	out := make([]sample, len(s))
	offset := 0.0
	for i, x := range s {
		if i > 0 && x.v < s[i-1].v {
			offset += s[i-1].v
		}
		out[i] = sample{x.t, x.v + offset}
	}
	return out
}

// atOrAfter is the first value at or after t (the last value when none is).
func atOrAfter(s []sample, t time.Time) float64 {
	i := sort.Search(len(s), func(i int) bool { return !s[i].t.Before(t) })
	if i == len(s) {
		return s[len(s)-1].v
	}
	return s[i].v
}

// faultWindow is one start/stop pair of a windowed fault on one target.
type faultWindow struct {
	Target     string
	Start, End time.Time
	// Open is true when no stop record followed the start.
	Open bool
}

// faultWindows pairs each start record of kind with the next stop record of
// the same target, in time order; a window that never stopped is Open.
func faultWindows(faults []rundir.Fault, kind string) []faultWindow {
	var recs []rundir.Fault
	for _, f := range faults {
		if f.Fault == kind && (f.Action == rundir.ActionStart || f.Action == rundir.ActionStop) {
			recs = append(recs, f)
		}
	}
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Time.Before(recs[j].Time) })
	var out []faultWindow
	open := map[string]int{} // target -> index of its open window
	for _, f := range recs {
		i, isOpen := open[f.Target]
		switch {
		case f.Action == rundir.ActionStart && !isOpen:
			open[f.Target] = len(out)
			out = append(out, faultWindow{Target: f.Target, Start: f.Time, Open: true})
		case f.Action == rundir.ActionStop && isOpen:
			out[i].End, out[i].Open = f.Time, false
			delete(open, f.Target)
		}
	}
	return out
}

// backlogSeries is the timeline series the backlog figures are read from.
// Counters restart from zero when their process does (the relay-crash
// fault kills the relay): they are read as Prometheus's increase() does.
type backlogSeries struct {
	published, created, effects, redeliveries []sample // counters
	pending, inflight, limit                  []sample // gauges
}

// backlogFigures computes one BacklogFigures per broker-cut window, when the
// timeline holds the relay's published counter.
func (ev *evidence) backlogFigures() []BacklogFigures {
	wins := closedWindows(ev.faults, rundir.FaultBrokerCut)
	if len(wins) == 0 {
		return nil
	}
	published := counter(ev.pageSeries(MetricRelayPublished))
	if len(published) < 2 {
		return nil
	}
	s := backlogSeries{
		published:    published,
		created:      counter(ev.pageSeries(MetricChargesCreated)),
		effects:      counter(ev.pageSeries(ev.sideMetric)),
		redeliveries: counter(ev.pageSeries(MetricConsumerRedeliveries)),
		pending:      ev.pageSeries(MetricOutboxPending),
		inflight:     ev.pageSeries(MetricConsumerInflightMax),
		limit:        ev.pageSeries(MetricRelayPublishLimit),
	}
	res := resolution(published)
	out := make([]BacklogFigures, 0, len(wins))
	for i, w := range wins {
		// The window ends at the next cut or at the end of the evidence.
		winEnd := published[len(published)-1].t
		if i+1 < len(wins) {
			winEnd = wins[i+1].Start
		}
		out = append(out, ev.backlogFigure(s, w, winEnd, res))
	}
	return out
}

// closedWindows is faultWindows without the windows that never stopped: a
// cut that never ended has no drain.
func closedWindows(faults []rundir.Fault, kind string) []faultWindow {
	var out []faultWindow
	for _, w := range faultWindows(faults, kind) {
		if !w.Open {
			out = append(out, w)
		}
	}
	return out
}

// backlogFigure is the figures of the cut w, whose window of evidence runs
// until winEnd.
func (ev *evidence) backlogFigure(s backlogSeries, w faultWindow, winEnd time.Time, res float64) BacklogFigures {
	b := BacklogFigures{
		CutSeconds:        w.End.Sub(w.Start).Seconds(),
		ResolutionSeconds: res,
		PeakPending:       peak(s.pending, w.Start, winEnd),
		// The consumer's gauge is its high-water mark since it started.
		ConsumerInflightPeak: peak(s.inflight, time.Time{}, winEnd),
	}
	p0 := at(s.published, w.End)
	end, createdBy := s.drainEnd(w.End, winEnd, p0)
	b.RelayKilled = ev.relayKilledIn(w.Start, end)
	b.measureDrain(s.published, w.End, end, p0)
	b.ApplySeconds = s.applySeconds(w.End, winEnd, createdBy)
	if len(s.redeliveries) > 0 {
		b.Redeliveries = at(s.redeliveries, winEnd) - at(s.redeliveries, w.End)
	}
	if len(s.limit) > 0 {
		v := at(s.limit, w.End)
		b.PublishRateLimit = &v
	}
	return b
}

// peak is the largest value in [from, to], or 0.
func peak(s []sample, from, to time.Time) float64 {
	m := 0.0
	for _, x := range s {
		if !x.t.Before(from) && !x.t.After(to) {
			m = math.Max(m, x.v)
		}
	}
	return m
}

// drainEnd is when the relay had published the backlog of a broker that
// returned at ret, p0 its published count then. With the charge service's
// counter in the evidence, the backlog is what it had created by the return
// and the relay had not published (charges written after the return, by a
// load that goes on, do not stretch the drain); without it, everything
// published until winEnd. The created count is the first snapshot's at or
// after the return: the one before may miss the charges of the last
// interval, while the one after adds at most an interval's worth of new
// ones. createdBy is that count (0 without the counter).
func (s backlogSeries) drainEnd(ret, winEnd time.Time, p0 float64) (end time.Time, createdBy float64) {
	if len(s.created) == 0 {
		return winEnd, 0
	}
	createdBy = atOrAfter(s.created, ret)
	if createdBy <= p0 {
		return ret, createdBy
	}
	if t, ok := firstReach(s.published, ret, winEnd, createdBy); ok {
		return t, createdBy
	}
	return winEnd, createdBy
}

// relayKilledIn says whether the relay was killed in (from, to].
func (ev *evidence) relayKilledIn(from, to time.Time) bool {
	for _, f := range ev.faults {
		if relayKill(f) && f.Time.After(from) && !f.Time.After(to) {
			return true
		}
	}
	return false
}

// measureDrain sets Published, DrainSeconds and PublishRate from the relay's
// published counter between the broker's return ret and the drain's end,
// p0 being the count at ret.
func (b *BacklogFigures) measureDrain(published []sample, ret, end time.Time, p0 float64) {
	pEnd := at(published, end)
	b.Published = pEnd - p0
	if b.Published <= 0 {
		b.Published = 0
		return // nothing to drain: no drain window either
	}
	var first, last *sample
	for j := range published {
		s := &published[j]
		if !s.t.After(ret) || s.t.After(end) {
			continue
		}
		if s.v >= pEnd {
			b.DrainSeconds = s.t.Sub(ret).Seconds()
			break
		}
		if s.v > p0 && first == nil {
			first = s
		}
		last = s
	}
	switch {
	case first != nil && last != nil && last.t.After(first.t):
		// Both ends strictly inside the drain: the rate between them is
		// exact to the counter, whatever the resolution.
		b.PublishRate = (last.v - first.v) / last.t.Sub(first.t).Seconds()
	case b.DrainSeconds > 0:
		b.PublishRate = b.Published / b.DrainSeconds
	}
}

// applySeconds is how long after the broker's return ret the consumer's
// side effects reached createdBy (every charge created by the return), or
// else stopped growing before winEnd; 0 without side effects or when
// neither happened.
func (s backlogSeries) applySeconds(ret, winEnd time.Time, createdBy float64) float64 {
	if len(s.effects) == 0 {
		return 0
	}
	apply := math.NaN()
	if len(s.created) > 0 {
		apply = firstAfter(s.effects, ret, winEnd, createdBy)
	}
	if math.IsNaN(apply) {
		apply = firstAfter(s.effects, ret, winEnd, at(s.effects, winEnd))
	}
	if math.IsNaN(apply) {
		return 0
	}
	return apply
}

// firstReach is the time of the first sample in (start, end] whose value
// reaches v; false when none does.
func firstReach(s []sample, start, end time.Time, v float64) (time.Time, bool) {
	for _, x := range s {
		if x.t.After(start) && !x.t.After(end) && x.v >= v {
			return x.t, true
		}
	}
	return time.Time{}, false
}

// firstAfter is the seconds from start to firstReach, or NaN when no
// sample reaches v.
func firstAfter(s []sample, start, end time.Time, v float64) float64 {
	if t, ok := firstReach(s, start, end, v); ok {
		return t.Sub(start).Seconds()
	}
	return math.NaN()
}

// resolution is the median gap between snapshots, in seconds.
func resolution(s []sample) float64 {
	if len(s) < 2 {
		return 0
	}
	gaps := make([]float64, 0, len(s)-1)
	for i := 1; i < len(s); i++ {
		gaps = append(gaps, s[i].t.Sub(s[i-1].t).Seconds())
	}
	sort.Float64s(gaps)
	return math.Round(gaps[len(gaps)/2]*1000) / 1000
}

// Summary is the figures in one line.
func (b BacklogFigures) Summary() string {
	limit := ""
	if b.PublishRateLimit != nil {
		if *b.PublishRateLimit > 0 {
			limit = fmt.Sprintf(" (limit %.0f/s)", *b.PublishRateLimit)
		} else {
			limit = " (no limit)"
		}
	}
	killed := ""
	if b.RelayKilled {
		killed = "; the relay was killed meanwhile, so the published figures are lower bounds"
	}
	return fmt.Sprintf("broker cut %.1f s, peak %.0f pending; %.0f published in %.2f s at %.0f events/s%s, applied in %.2f s; consumer in-flight peak %.0f, %.0f redeliveries (timeline every %.2f s)%s",
		b.CutSeconds, b.PeakPending, b.Published, b.DrainSeconds, b.PublishRate, limit, b.ApplySeconds,
		b.ConsumerInflightPeak, b.Redeliveries, b.ResolutionSeconds, killed)
}

// CheckBacklogPaced is the check that a rate-limited relay drained each
// broker cut's backlog at its pace, without the consumer's broker
// redelivering (AckWait expiring: a herd the consumer could not absorb).
const CheckBacklogPaced = "backlog-paced"

// pacedTolerance is how far above its --publish-rate a drain may measure
// (timeline sampling and the token bucket's burst).
const pacedTolerance = 1.1

// checkBacklog judges the drains of a relay that runs with a publish-rate
// limit: measured rate at most pacedTolerance times the limit and no
// redeliveries. A drain without a limit is shown, not judged.
func checkBacklog(r *Report) Check {
	const name = CheckBacklogPaced
	if len(r.Backlog) == 0 {
		return nothing(name, "no backlog", "no broker cut with the relay's "+MetricRelayPublished+" in the metrics timeline")
	}
	var figs []string
	var bad []string
	judged := 0
	for _, b := range r.Backlog {
		if b.Published <= 0 || b.PublishRateLimit == nil || *b.PublishRateLimit <= 0 {
			continue
		}
		judged++
		limit := *b.PublishRateLimit
		figs = append(figs, fmt.Sprintf("%.0f drained at %.0f/s (limit %.0f/s), %.0f redeliveries", b.Published, b.PublishRate, limit, b.Redeliveries))
		if b.PublishRate > pacedTolerance*limit {
			bad = append(bad, fmt.Sprintf("published at %.0f/s, above %.1fx its limit of %.0f/s", b.PublishRate, pacedTolerance, limit))
		}
		if b.Redeliveries > 0 {
			bad = append(bad, fmt.Sprintf("the broker redelivered %.0f events to the consumer while the backlog drained (AckWait expired: the consumer was handed more than it could apply)", b.Redeliveries))
		}
	}
	if judged == 0 {
		return nothing(name, fmt.Sprintf("%d backlog(s), no publish-rate limit", len(r.Backlog)),
			"the relay drained without --publish-rate (or does not export "+MetricRelayPublishLimit+")")
	}
	figure := strings.Join(figs, "; ")
	if len(bad) > 0 {
		return failed(name, figure, strings.Join(bad, "; "), cxList{})
	}
	return held(name, figure, "")
}
