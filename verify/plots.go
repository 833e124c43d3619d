package verify

import (
	"bytes"
	"fmt"
	"image/color"
	"math"
	"sort"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/paytest/paytest/internal/rundir"
)

// plotImage is one rendered plot of report.html.
type plotImage struct {
	ID, Title, Caption string
	PNG                []byte
}

// maxScatterPoints bounds the scatter plot: a 100,000-op run is drawn from
// an even stride of its retries.
const maxScatterPoints = 6000

var (
	colBackoff    = color.NRGBA{R: 31, G: 119, B: 180, A: 210}
	colRetryAfter = color.NRGBA{R: 255, G: 127, B: 14, A: 210}
	colOther      = color.NRGBA{R: 127, G: 127, B: 127, A: 160}
	colBar        = color.RGBA{R: 44, G: 160, B: 44, A: 255}
)

// plots renders every plot the evidence allows, in a fixed order.
func (a *analysis) plots(ev *evidence) ([]plotImage, error) {
	var out []plotImage
	type maker func() (*plotImage, error)
	lat := func() (*plotImage, error) { return a.latency.plotLatency(ev.faults) }
	thr := func() (*plotImage, error) {
		_, tp := a.latency.finish(ev.faults)
		return a.latency.plotThroughput(ev.faults, tp)
	}
	for _, mk := range []maker{a.plotDelayScatter, a.plotDelayHist, a.plotAttempts, a.plotOutcomes, func() (*plotImage, error) { return a.plotOverTime(ev) }, func() (*plotImage, error) { return plotOutboxLag(ev) }, lat, thr} {
		p, err := mk()
		if err != nil {
			// One plot that cannot be drawn costs that plot, not the
			// report.
			a.plotErrors = append(a.plotErrors, err.Error())
			continue
		}
		if p != nil {
			out = append(out, *p)
		}
	}
	return out, nil
}

func render(p *plot.Plot, id, title, caption string) (img *plotImage, err error) {
	defer func() {
		// gonum/plot panics on some degenerate axes.
		if r := recover(); r != nil {
			img, err = nil, fmt.Errorf("plot %s: %v", id, r)
		}
	}()
	p.Title.Text = title
	wt, err := p.WriterTo(9*vg.Inch, 4*vg.Inch, "png")
	if err != nil {
		return nil, fmt.Errorf("plot %s: %w", id, err)
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("plot %s: %w", id, err)
	}
	return &plotImage{ID: id, Title: title, Caption: caption, PNG: buf.Bytes()}, nil
}

// jitterX spreads points of one attempt number sideways, deterministically.
func jitterX(i int) float64 {
	h := uint32(i)*2654435761 + 12345
	return (float64(h%1000)/1000 - 0.5) * 0.6
}

func (a *analysis) plotDelayScatter() (*plotImage, error) {
	if len(a.delays) == 0 {
		return nil, nil
	}
	stride := max(1, (len(a.delays)+maxScatterPoints-1)/maxScatterPoints)
	var groups [3]plotter.XYs
	for i := 0; i < len(a.delays); i += stride {
		d := a.delays[i]
		groups[d.reason] = append(groups[d.reason], plotter.XY{X: float64(d.attempt) + jitterX(i), Y: float64(d.delay)})
	}
	p := plot.New()
	p.X.Label.Text = "attempt number (points spread sideways)"
	p.Y.Label.Text = "delay before the attempt (ms)"
	p.Add(plotter.NewGrid())
	names := [3]string{"backoff", "after Retry-After", "other (reconcile)"}
	cols := [3]color.Color{colBackoff, colRetryAfter, colOther}
	maxAttempt := 2.0
	for i, xys := range groups {
		if len(xys) == 0 {
			continue
		}
		s, err := plotter.NewScatter(xys)
		if err != nil {
			return nil, err
		}
		s.GlyphStyle.Color = cols[i]
		s.GlyphStyle.Radius = vg.Points(1.5)
		s.GlyphStyle.Shape = draw.CircleGlyph{}
		p.Add(s)
		p.Legend.Add(names[i], s)
		for _, xy := range xys {
			maxAttempt = math.Max(maxAttempt, math.Round(xy.X))
		}
	}
	// Each backoff window's cap, as a short dashed bar over its column.
	var capLine *plotter.Line
	for _, k := range a.sortedJitterKeys() {
		if k.reason != rundir.ReasonBackoff {
			continue
		}
		js := a.jitter[k]
		capMS := js.capSum / float64(len(js.u))
		x := float64(k.attempt)
		l, err := plotter.NewLine(plotter.XYs{{X: x - 0.4, Y: capMS}, {X: x + 0.4, Y: capMS}})
		if err != nil {
			return nil, err
		}
		l.Color = color.NRGBA{R: 214, G: 39, B: 40, A: 255}
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(l)
		capLine = l
	}
	if capLine != nil {
		p.Legend.Add("backoff cap", capLine)
	}
	p.Legend.Top = true
	p.X.Min, p.X.Max = 1.5, maxAttempt+0.5
	p.Y.Min = 0
	p.X.Tick.Marker = intTicks{}
	caption := fmt.Sprintf("%d retries", len(a.delays))
	if stride > 1 {
		caption += fmt.Sprintf(", every %dth drawn", stride)
	}
	return render(p, "retry-delays-scatter", "Retry delays per attempt", caption+". Full jitter fills each column from 0 to its cap; --no-jitter stacks every retry at the cap.")
}

func (a *analysis) plotDelayHist() (*plotImage, error) {
	var u []float64
	for _, k := range a.sortedJitterKeys() {
		if k.reason == rundir.ReasonBackoff {
			u = append(u, a.jitter[k].u...)
		}
	}
	if len(u) == 0 {
		return nil, nil
	}
	// Fixed bins over [0, 1], so a --no-jitter run shows one full bin at
	// the cap rather than a zero-width range.
	const bins = 20
	h := &plotter.Histogram{Width: 1.0 / bins, FillColor: colBackoff, LineStyle: plotter.DefaultLineStyle}
	for i := 0; i < bins; i++ {
		h.Bins = append(h.Bins, plotter.HistogramBin{Min: float64(i) / bins, Max: float64(i+1) / bins})
	}
	for _, x := range u {
		h.Bins[min(bins-1, int(x*bins))].Weight++
	}
	p := plot.New()
	p.X.Label.Text = "delay / cap (backoff retries, all attempt numbers)"
	p.Y.Label.Text = "retries"
	p.Add(plotter.NewGrid(), h)
	expect := float64(len(u)) / bins
	line, err := plotter.NewLine(plotter.XYs{{X: 0, Y: expect}, {X: 1, Y: expect}})
	if err != nil {
		return nil, err
	}
	line.Color = color.RGBA{R: 214, G: 39, B: 40, A: 255}
	line.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(line)
	p.Legend.Add("uniform expectation", line)
	p.Legend.Top = true
	p.X.Min, p.X.Max = 0, 1
	p.Y.Min = 0
	return render(p, "retry-delays-hist", "Retry delays over their window", fmt.Sprintf("%d backoff retries in %d bins; the dashed line is what full jitter gives.", len(u), bins))
}

func barPlot(labels []string, values []float64, xlabel, ylabel string) (*plot.Plot, error) {
	p := plot.New()
	bars, err := plotter.NewBarChart(plotter.Values(values), vg.Points(math.Max(6, math.Min(40, 500/float64(len(values))))))
	if err != nil {
		return nil, err
	}
	bars.Color = colBar
	bars.LineStyle.Width = 0
	p.Add(plotter.NewGrid(), bars)
	p.NominalX(labels...)
	p.X.Min, p.X.Max = -0.6, float64(len(values))-0.4
	p.X.Label.Text = xlabel
	p.Y.Label.Text = ylabel
	p.Y.Min = 0
	return p, nil
}

func (a *analysis) plotAttempts() (*plotImage, error) {
	counts := map[int]int{}
	maxN := 0
	for i := range a.ops {
		o := &a.ops[i]
		if o.kind == kindCharge || o.kind == kindReuse {
			counts[int(o.attempts)]++
			maxN = max(maxN, int(o.attempts))
		}
	}
	if len(counts) == 0 {
		return nil, nil
	}
	var labels []string
	var values []float64
	for n := 0; n <= maxN; n++ {
		if n == 0 && counts[0] == 0 {
			continue
		}
		labels = append(labels, strconv.Itoa(n))
		values = append(values, float64(counts[n]))
	}
	p, err := barPlot(labels, values, "attempts per operation (all senders)", "operations")
	if err != nil {
		return nil, err
	}
	return render(p, "attempts-per-op", "Attempts per operation", "How many requests each logical operation took, duplicates and retries included.")
}

func (a *analysis) plotOutcomes() (*plotImage, error) {
	if len(a.outcomes) == 0 {
		return nil, nil
	}
	type kv struct {
		k string
		v int
	}
	var xs []kv
	for k, v := range a.outcomes {
		xs = append(xs, kv{k, v})
	}
	sort.Slice(xs, func(i, j int) bool {
		if xs[i].v != xs[j].v {
			return xs[i].v > xs[j].v
		}
		return xs[i].k < xs[j].k
	})
	labels := make([]string, len(xs))
	values := make([]float64, len(xs))
	for i, x := range xs {
		labels[i], values[i] = x.k, float64(x.v)
	}
	p, err := barPlot(labels, values, "outcome as the client saw it", "attempts")
	if err != nil {
		return nil, err
	}
	return render(p, "outcomes", "Outcomes by count", "Every attempt's outcome: new, replay (Idempotent-Replayed), conflict (409), mismatch (422), timeouts and the rest.")
}

// plotOverTime draws the side effects over time from timeline snapshots
// when attack saved them, else the operations confirmed over time from the
// history.
func (a *analysis) plotOverTime(ev *evidence) (*plotImage, error) {
	if xys := ev.series(ev.sideMetric, false); len(xys) >= 2 {
		p := plot.New()
		l, err := plotter.NewLine(xys)
		if err != nil {
			return nil, err
		}
		l.Color = colBackoff
		p.Add(plotter.NewGrid(), l)
		p.X.Label.Text = "seconds since the first snapshot"
		p.Y.Label.Text = ev.sideMetric
		p.Y.Min = 0
		return render(p, "effects-over-time", "Side effects over time", "From the metrics snapshots saved during the run.")
	}
	var ts []int64
	for i := range a.ops {
		if o := &a.ops[i]; o.kind == kindCharge && o.firstOK != 0 {
			ts = append(ts, o.firstOK)
		}
	}
	if len(ts) < 2 || a.histStart.IsZero() {
		return nil, nil
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	t0 := a.histStart.UnixNano()
	stride := max(1, len(ts)/2000)
	xys := plotter.XYs{{X: 0, Y: 0}}
	for i := 0; i < len(ts); i += stride {
		xys = append(xys, plotter.XY{X: float64(ts[i]-t0) / 1e9, Y: float64(i + 1)})
	}
	xys = append(xys, plotter.XY{X: float64(ts[len(ts)-1]-t0) / 1e9, Y: float64(len(ts))})
	p := plot.New()
	l, err := plotter.NewLine(xys)
	if err != nil {
		return nil, err
	}
	l.Color = colBackoff
	p.Add(plotter.NewGrid(), l)
	for _, f := range ev.faults {
		// Windows and one-off faults; each eaten response would be a line.
		if f.Time.IsZero() || !(f.Action == rundir.ActionStart || (f.Injected() && f.Fault != rundir.FaultEatResponse)) {
			continue
		}
		x := float64(f.Time.UnixNano()-t0) / 1e9
		if v, err := plotter.NewLine(plotter.XYs{{X: x, Y: 0}, {X: x, Y: float64(len(ts))}}); err == nil {
			v.Color = color.NRGBA{R: 214, G: 39, B: 40, A: 90}
			p.Add(v)
		}
	}
	p.X.Label.Text = "seconds since the first attempt (red: faults)"
	p.Y.Label.Text = "charges acknowledged"
	p.Y.Min = 0
	return render(p, "effects-over-time", "Charges acknowledged over time", "Each charge's first 2xx as the client saw it (no metrics snapshots were saved during the run).")
}

func plotOutboxLag(ev *evidence) (*plotImage, error) {
	xys := ev.series(MetricOutboxLag, true)
	if len(xys) < 2 {
		return nil, nil
	}
	p := plot.New()
	l, err := plotter.NewLine(xys)
	if err != nil {
		return nil, err
	}
	l.Color = colRetryAfter
	p.Add(plotter.NewGrid(), l)
	p.X.Label.Text = "seconds since the first snapshot"
	p.Y.Label.Text = "outbox lag (s)"
	p.Y.Min = 0
	return render(p, "outbox-lag", "Outbox lag over time", "Age of the oldest unpublished outbox row, from the metrics snapshots.")
}

// series reads metric from the timeline snapshots: summed over pages per
// snapshot time (or the max, for gauges like lag).
func (ev *evidence) series(metric string, useMax bool) plotter.XYs {
	type point struct {
		t int64
		v float64
	}
	var pts []point
	for _, name := range sortedKeys(ev.timeline) {
		for _, f := range ev.timeline[name].Snapshots {
			if v, ok := ev.snapshot(f)[metric]; ok {
				pts = append(pts, point{f.Time.UnixNano(), v})
			}
		}
	}
	if len(pts) == 0 {
		return nil
	}
	sort.Slice(pts, func(i, j int) bool { return pts[i].t < pts[j].t })
	t0 := pts[0].t
	var xys plotter.XYs
	for _, p := range pts {
		x := float64(p.t-t0) / 1e9
		if n := len(xys); n > 0 && xys[n-1].X == x {
			if useMax {
				xys[n-1].Y = math.Max(xys[n-1].Y, p.v)
			} else {
				xys[n-1].Y += p.v
			}
			continue
		}
		xys = append(xys, plotter.XY{X: x, Y: p.v})
	}
	return xys
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// intTicks marks whole numbers only.
type intTicks struct{}

func (intTicks) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	step := math.Max(1, math.Ceil((hi-lo)/15))
	for v := math.Ceil(lo); v <= hi; v += step {
		ts = append(ts, plot.Tick{Value: v, Label: strconv.Itoa(int(v))})
	}
	return ts
}
