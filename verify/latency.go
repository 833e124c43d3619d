package verify

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/paytest/paytest/internal/rundir"
)

// Latency is report.json's "latency": what the client waited, from HDR
// histograms (microsecond resolution, 3 significant digits), in
// milliseconds. An attempt is timed from when it was due (the open
// model's arrival; in the closed pool, its send) to its answer; an
// operation from its first due attempt to the answer that confirmed it
// (retries, Retry-After waits and reconciliation included: what the
// customer waits). Ops dropped at the in-flight cap are not timed.
type Latency struct {
	// Model is "open" (arrivals on a schedule: the latency includes every
	// queue the target built) or "closed" (a pool of workers: a slow
	// target slowed the sending too, so queueing is hidden).
	Model string `json:"model"`
	// Attempts are every attempt sent; Ops every confirmed operation.
	Attempts LatencyStats `json:"attempts"`
	Ops      LatencyStats `json:"ops"`
	// AttemptsByOutcome splits the attempts by the client's outcome.
	AttemptsByOutcome map[string]LatencyStats `json:"attempts_by_outcome,omitempty"`
	// Phases splits both by when they were due: "steady" before the first
	// fault window, each window, and "after" each (until the next).
	Phases []PhaseLatency `json:"phases,omitempty"`
}

// LatencyStats are one histogram's figures.
type LatencyStats struct {
	Count  int64   `json:"count"`
	MinMS  float64 `json:"min_ms"`
	MeanMS float64 `json:"mean_ms"`
	P50MS  float64 `json:"p50_ms"`
	P90MS  float64 `json:"p90_ms"`
	P95MS  float64 `json:"p95_ms"`
	P99MS  float64 `json:"p99_ms"`
	P999MS float64 `json:"p99_9_ms"`
	MaxMS  float64 `json:"max_ms"`
}

// PhaseLatency is one phase's latency.
type PhaseLatency struct {
	Phase    string       `json:"phase"`
	From     time.Time    `json:"from"`
	To       time.Time    `json:"to,omitzero"`
	Attempts LatencyStats `json:"attempts"`
	Ops      LatencyStats `json:"ops"`
}

// Throughput is report.json's "throughput": attempts sent and operations
// confirmed per second, overall (from the first due attempt to the last
// answer) and for each second of the run. Ops whose arrival was dropped
// count when the reconciliation confirms them (their latency does not:
// their wait is the cap's, not the target's).
type Throughput struct {
	DurationSeconds       float64 `json:"duration_seconds"`
	AttemptsPerSecond     float64 `json:"attempts_per_second"`
	ConfirmedOpsPerSecond float64 `json:"confirmed_ops_per_second"`
	// DroppedArrivals are the open model's arrivals that found the
	// in-flight cap full and were not sent then (k6's dropped_iterations).
	DroppedArrivals int                `json:"dropped_arrivals"`
	PerSecond       []ThroughputSecond `json:"per_second,omitempty"`
}

// ThroughputSecond is one second of the run (Second from its start).
type ThroughputSecond struct {
	Second    int `json:"second"`
	Attempts  int `json:"attempts"`
	Confirmed int `json:"confirmed"`
}

// Latency histograms span 1 µs to an hour.
const (
	histMinUS = 1
	histMaxUS = int64(time.Hour / time.Microsecond)
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMinUS, histMaxUS, 3) }

func statsOf(h *hdrhistogram.Histogram) LatencyStats {
	if h == nil || h.TotalCount() == 0 {
		return LatencyStats{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return LatencyStats{
		Count: h.TotalCount(), MinMS: ms(h.Min()), MeanMS: h.Mean() / 1000,
		P50MS: ms(h.ValueAtQuantile(50)), P90MS: ms(h.ValueAtQuantile(90)), P95MS: ms(h.ValueAtQuantile(95)),
		P99MS: ms(h.ValueAtQuantile(99)), P999MS: ms(h.ValueAtQuantile(99.9)), MaxMS: ms(h.Max()),
	}
}

// latencyPoint is one attempt for report.html's latency plot.
type latencyPoint struct {
	due     int64 // unix nanos
	us      int32 // latency, microseconds (capped)
	outcome string
}

// maxLatencyPoints bounds the points kept for the plot: past it, every
// other point is kept (a deterministic thinning that keeps the shape).
const maxLatencyPoints = 50000

// latencyAcc gathers latency and throughput while the history streams by,
// holding per op only its first due time and confirmation time.
type latencyAcc struct {
	open      bool
	attempts  []attemptSample // (due, latency) of every attempt sent, for the phases
	firstDue  []int64         // by op id: unix nanos of its first due attempt; 0 none
	confirmed []int64         // by op id: unix nanos of its confirmation; 0 none
	dropped   []bool          // by op id: its first arrival was dropped
	nDropped  int
	byOutcome map[string]*hdrhistogram.Histogram
	points    []latencyPoint
	stride    int
	seen      int
	sentAt    []int64 // unix nanos each sent attempt started, for throughput

	// finished holds finish's answer: the report and the plots both ask.
	finished bool
	lat      *Latency
	tp       *Throughput
}

type attemptSample struct {
	due int64
	us  int64
}

// newLatencyAcc sizes its per-op and per-attempt state for ops operations
// (0: unknown), so a large run's slices are not grown by copying.
func newLatencyAcc(ops int) *latencyAcc {
	return &latencyAcc{byOutcome: map[string]*hdrhistogram.Histogram{}, stride: 1,
		firstDue: make([]int64, 0, ops+1), confirmed: make([]int64, 0, ops+1), dropped: make([]bool, 0, ops+1),
		attempts: make([]attemptSample, 0, ops), sentAt: make([]int64, 0, ops)}
}

func grow[T any](s []T, i int) []T {
	if i < len(s) {
		return s
	}
	if i < cap(s) {
		return s[:cap(s)]
	}
	return append(s, make([]T, i+1-len(s)+len(s)/2)...)
}

// add folds one attempt in; confirms says whether its answer confirmed
// its op (a complete 2xx for a charge, the declared refusal for a reuse).
func (l *latencyAcc) add(at *rundir.Attempt, outcome string, confirms bool) {
	if at.Op < 0 {
		return
	}
	if !at.Intended.IsZero() {
		l.open = true
	}
	due := at.Due()
	if due.IsZero() {
		return
	}
	op := at.Op
	l.firstDue, l.confirmed, l.dropped = grow(l.firstDue, op), grow(l.confirmed, op), grow(l.dropped, op)
	if at.Outcome == rundir.OutcomeDropped {
		l.nDropped++
		if l.firstDue[op] == 0 || due.UnixNano() <= l.firstDue[op] {
			l.dropped[op] = true
		}
		return
	}
	if !at.Sent() {
		return
	}
	if d := due.UnixNano(); l.firstDue[op] == 0 || d < l.firstDue[op] {
		l.firstDue[op] = d
	}
	l.sentAt = append(l.sentAt, at.Start.UnixNano())
	if at.End.IsZero() {
		return
	}
	us := max(histMinUS, at.End.Sub(due).Microseconds())
	l.attempts = append(l.attempts, attemptSample{due.UnixNano(), us})
	h := l.byOutcome[outcome]
	if h == nil {
		h = newHist()
		l.byOutcome[outcome] = h
	}
	_ = h.RecordValue(min(us, histMaxUS))
	if confirms {
		if e := at.End.UnixNano(); l.confirmed[op] == 0 || e < l.confirmed[op] {
			l.confirmed[op] = e
		}
	}
	l.keepPoint(due.UnixNano(), us, outcome)
}

func (l *latencyAcc) keepPoint(due, us int64, outcome string) {
	l.seen++
	if l.seen%l.stride != 0 {
		return
	}
	if len(l.points) >= maxLatencyPoints {
		kept := l.points[:0]
		for i, p := range l.points {
			if i%2 == 0 {
				kept = append(kept, p)
			}
		}
		l.points = kept
		l.stride *= 2
	}
	l.points = append(l.points, latencyPoint{due: due, us: int32(min(us, 1<<31-1)), outcome: outcome})
}

// window is a fault's window for the phases.
type window struct {
	name     string
	from, to int64 // unix nanos; to 0: until the end
}

// faultPhases are the fault windows of faults.jsonl in time order: a
// start and its stop, a kill and its restart. One-off injections with no
// end (an eaten response, poison) are not windows.
func faultPhases(faults []rundir.Fault) []window {
	var out []window
	open := map[string]int{} // kind+target -> index in out
	for _, f := range faults {
		k := f.Fault + " " + f.Target
		switch {
		case f.Action == rundir.ActionStart, f.Fault == rundir.FaultKill && f.Injected():
			if f.Fault == rundir.FaultEatResponse {
				continue
			}
			open[k] = len(out)
			out = append(out, window{name: strings.TrimSpace(k), from: f.Time.UnixNano()})
		case f.Action == rundir.ActionStop:
			if i, ok := open[k]; ok {
				out[i].to = f.Time.UnixNano()
				delete(open, k)
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].from < out[j].from })
	return out
}

// phaseOf names the phase a due time falls in: the first window holding
// it, else "steady" before any window, else "after" the last window that
// ended before it. idx orders the phases for the report.
func phaseOf(ws []window, t int64) (name string, idx int) {
	after := -1
	for i, w := range ws {
		if t >= w.from && (w.to == 0 || t < w.to) {
			return w.name, 2*i + 1
		}
		if w.to != 0 && t >= w.to {
			after = i
		}
	}
	if after < 0 {
		return "steady", 0
	}
	return "after " + ws[after].name, 2*after + 2
}

// finish computes the report's latency and throughput, once: the attempts
// are all in by the time the report or a plot asks.
func (l *latencyAcc) finish(faults []rundir.Fault) (*Latency, *Throughput) {
	if !l.finished {
		l.lat, l.tp = l.compute(faults)
		l.finished = true
	}
	return l.lat, l.tp
}

func (l *latencyAcc) compute(faults []rundir.Fault) (*Latency, *Throughput) {
	if len(l.attempts) == 0 && l.nDropped == 0 {
		return nil, nil
	}
	ws := faultPhases(faults)
	type phaseHists struct {
		name     string
		from, to int64
		att, ops *hdrhistogram.Histogram
	}
	phases := map[int]*phaseHists{}
	phase := func(t int64) *phaseHists {
		name, idx := phaseOf(ws, t)
		p := phases[idx]
		if p == nil {
			p = &phaseHists{name: name, att: newHist(), ops: newHist()}
			switch {
			case idx == 0:
			case idx%2 == 1:
				p.from, p.to = ws[idx/2].from, ws[idx/2].to
			default:
				p.from = ws[idx/2-1].to
				if idx/2 < len(ws) {
					p.to = ws[idx/2].from
				}
			}
			phases[idx] = p
		}
		return p
	}
	all, ops := newHist(), newHist()
	for _, s := range l.attempts {
		_ = all.RecordValue(min(s.us, histMaxUS))
		_ = phase(s.due).att.RecordValue(min(s.us, histMaxUS))
	}
	for op, c := range l.confirmed {
		if c == 0 || l.firstDue[op] == 0 || l.dropped[op] {
			continue
		}
		us := min(histMaxUS, max(histMinUS, (c-l.firstDue[op])/1000))
		_ = ops.RecordValue(us)
		_ = phase(l.firstDue[op]).ops.RecordValue(us)
	}
	lat := &Latency{Model: "closed", Attempts: statsOf(all), Ops: statsOf(ops), AttemptsByOutcome: map[string]LatencyStats{}}
	if l.open {
		lat.Model = "open"
	}
	for o, h := range l.byOutcome {
		lat.AttemptsByOutcome[o] = statsOf(h)
	}
	for _, idx := range slices.Sorted(maps.Keys(phases)) {
		p := phases[idx]
		pl := PhaseLatency{Phase: p.name, Attempts: statsOf(p.att), Ops: statsOf(p.ops)}
		if p.from != 0 {
			pl.From = time.Unix(0, p.from).UTC()
		}
		if p.to != 0 {
			pl.To = time.Unix(0, p.to).UTC()
		}
		lat.Phases = append(lat.Phases, pl)
	}
	return lat, l.throughput()
}

// throughput counts attempts sent and ops confirmed per second, from the
// first due attempt.
func (l *latencyAcc) throughput() *Throughput {
	var start, end int64
	for op, d := range l.firstDue {
		if d != 0 && (start == 0 || d < start) {
			start = d
		}
		if c := l.confirmed[op]; c > end {
			end = c
		}
	}
	for _, s := range l.attempts {
		end = max(end, s.due+s.us*1000)
	}
	tp := &Throughput{DroppedArrivals: l.nDropped}
	if start == 0 || end <= start {
		return tp
	}
	secs := float64(end-start) / 1e9
	confirmed := 0
	per := make([]ThroughputSecond, int((end-start)/1e9)+1)
	for i := range per {
		per[i].Second = i
	}
	bucket := func(t int64) int { return min(len(per)-1, max(0, int((t-start)/1e9))) }
	for _, s := range l.sentAt {
		per[bucket(s)].Attempts++
	}
	// Every confirmation counts, an op whose arrival was dropped too (it
	// is confirmed when the reconciliation sends it): the span runs to it,
	// and a rate that left it out would undercount every run with drops.
	for _, c := range l.confirmed {
		if c != 0 {
			confirmed++
			per[bucket(c)].Confirmed++
		}
	}
	tp.DurationSeconds = secs
	tp.AttemptsPerSecond = float64(len(l.sentAt)) / secs
	tp.ConfirmedOpsPerSecond = float64(confirmed) / secs
	tp.PerSecond = per
	return tp
}

// latencyLine is the text verdict's vegeta-style latency line.
func (lat *Latency) textLines() []string {
	if lat == nil {
		return nil
	}
	row := func(s LatencyStats) string {
		return fmt.Sprintf("%s, %s, %s, %s, %s, %s, %s, %s", fmtLatMS(s.MinMS), fmtLatMS(s.MeanMS), fmtLatMS(s.P50MS),
			fmtLatMS(s.P90MS), fmtLatMS(s.P95MS), fmtLatMS(s.P99MS), fmtLatMS(s.P999MS), fmtLatMS(s.MaxMS))
	}
	return []string{
		fmt.Sprintf("latencies (%s model)  [min, mean, 50, 90, 95, 99, 99.9, max]", lat.Model),
		fmt.Sprintf("  attempts  %s  (%d)", row(lat.Attempts), lat.Attempts.Count),
		fmt.Sprintf("  ops       %s  (%d)", row(lat.Ops), lat.Ops.Count),
	}
}

func fmtLatMS(ms float64) string {
	d := time.Duration(ms * float64(time.Millisecond))
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}

// textLine is the text verdict's throughput line.
func (tp *Throughput) textLine() string {
	if tp == nil {
		return ""
	}
	s := fmt.Sprintf("throughput  [attempts/s, confirmed ops/s]  %.2f, %.2f over %.2f s", tp.AttemptsPerSecond, tp.ConfirmedOpsPerSecond, tp.DurationSeconds)
	if tp.DroppedArrivals > 0 {
		s += fmt.Sprintf("; %d arrivals dropped at the in-flight cap", tp.DroppedArrivals)
	}
	return s
}

// dropWarning is the text verdict's warning when the open model dropped a
// tenth or more of the ops it timed or dropped: the target fell behind the
// rate, so the run drove it at the cap (a closed loop of --max-inflight)
// for much of its length, and the ops latency describes only the ops sent
// on schedule. k6 warns alike when it runs out of VUs.
func dropWarning(lat *Latency, tp *Throughput) string {
	if lat == nil || tp == nil || tp.DroppedArrivals == 0 {
		return ""
	}
	share := float64(tp.DroppedArrivals) / (float64(tp.DroppedArrivals) + float64(lat.Ops.Count))
	if share < 0.1 {
		return ""
	}
	return fmt.Sprintf("warning: %d arrivals (%.0f%% of the ops timed or dropped) found the in-flight cap full: the target fell behind the rate, "+
		"so the ops latency describes only the %d sent on schedule; lower --rate or raise --max-inflight to measure it at this rate",
		tp.DroppedArrivals, 100*share, lat.Ops.Count)
}
