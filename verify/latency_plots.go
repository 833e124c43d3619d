package verify

import (
	"image/color"
	"math"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/paytest/paytest/internal/rundir"
)

// colBand shades a fault window, as Jepsen's plots shade the nemesis.
var colBand = color.NRGBA{R: 214, G: 39, B: 40, A: 38}

// outcomeGroups colour the latency scatter: what the customer would feel.
var outcomeGroups = []struct {
	name     string
	col      color.Color
	outcomes []string
}{
	{"2xx", color.NRGBA{R: 44, G: 160, B: 44, A: 170}, []string{rundir.OutcomeNew, rundir.OutcomeReplay}},
	{"422 / refused reuse", color.NRGBA{R: 23, G: 190, B: 207, A: 170}, []string{rundir.OutcomeMismatch}},
	{"409 in flight", color.NRGBA{R: 255, G: 127, B: 14, A: 170}, []string{rundir.OutcomeConflict}},
	{"429 / 503", color.NRGBA{R: 148, G: 103, B: 189, A: 170}, []string{rundir.OutcomeUnavailable}},
	{"5xx, 4xx", color.NRGBA{R: 214, G: 39, B: 40, A: 170}, []string{rundir.OutcomeServerError, rundir.OutcomeRejected}},
	{"timeout, network", color.NRGBA{R: 60, G: 60, B: 60, A: 170}, []string{rundir.OutcomeTimeout, rundir.OutcomeNetwork}},
}

// bands shades each fault window between y0 and y1, x in seconds since t0
// (unix nanos).
func bands(p *plot.Plot, ws []window, t0, end int64, y0, y1 float64) {
	for _, w := range ws {
		to := w.to
		if to == 0 {
			to = end
		}
		x0, x1 := float64(w.from-t0)/1e9, float64(to-t0)/1e9
		if poly, err := plotter.NewPolygon(plotter.XYs{{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1}}); err == nil {
			poly.Color = colBand
			poly.LineStyle.Width = 0
			p.Add(poly)
		}
	}
}

// plotLatency draws every attempt (or an even thinning of them) at its due
// time and latency, coloured by outcome, over the shaded fault windows.
func (l *latencyAcc) plotLatency(faults []rundir.Fault) (*plotImage, error) {
	if len(l.points) < 2 {
		return nil, nil
	}
	t0, end := l.points[0].due, l.points[0].due
	lo, hi := math.Inf(1), 0.0
	for _, pt := range l.points {
		t0, end = min(t0, pt.due), max(end, pt.due)
		ms := float64(pt.us) / 1000
		lo, hi = min(lo, ms), max(hi, ms)
	}
	// A log axis needs a positive range, even when every latency is the
	// same (or rounds to 0).
	lo, hi = max(lo, 0.001)/2, max(hi, 0.001)*2
	p := plot.New()
	p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	p.Y.Min, p.Y.Max = lo, hi
	bands(p, faultPhases(faults), t0, end, lo, hi)
	for _, g := range outcomeGroups {
		var xys plotter.XYs
		for _, pt := range l.points {
			if slices.Contains(g.outcomes, pt.outcome) {
				xys = append(xys, plotter.XY{X: float64(pt.due-t0) / 1e9, Y: float64(pt.us) / 1000})
			}
		}
		if len(xys) == 0 {
			continue
		}
		s, err := plotter.NewScatter(xys)
		if err != nil {
			return nil, err
		}
		s.GlyphStyle = draw.GlyphStyle{Color: g.col, Radius: vg.Points(1.2), Shape: draw.CircleGlyph{}}
		p.Add(s)
		p.Legend.Add(g.name, s)
	}
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	p.X.Label.Text = "seconds since the first attempt was due (shaded: fault windows)"
	p.Y.Label.Text = "latency from due time (ms, log)"
	caption := "Each attempt at the time it was due and how long its answer took from then"
	if l.open {
		caption += " (open model: the wait for a late send counts)"
	}
	if l.stride > 1 {
		caption += "; one attempt in " + strconv.Itoa(l.stride) + " is drawn"
	}
	return render(p, "latency-over-time", "Latency over time", caption+".")
}

// plotThroughput draws attempts sent and ops confirmed per second over the
// shaded fault windows.
func (l *latencyAcc) plotThroughput(faults []rundir.Fault, tp *Throughput) (*plotImage, error) {
	if tp == nil || len(tp.PerSecond) < 2 {
		return nil, nil
	}
	var t0 int64
	for _, d := range l.firstDue {
		if d != 0 && (t0 == 0 || d < t0) {
			t0 = d
		}
	}
	att, conf := make(plotter.XYs, len(tp.PerSecond)), make(plotter.XYs, len(tp.PerSecond))
	hi := 1.0
	for i, s := range tp.PerSecond {
		att[i] = plotter.XY{X: float64(s.Second) + 0.5, Y: float64(s.Attempts)}
		conf[i] = plotter.XY{X: float64(s.Second) + 0.5, Y: float64(s.Confirmed)}
		hi = max(hi, float64(s.Attempts), float64(s.Confirmed))
	}
	p := plot.New()
	bands(p, faultPhases(faults), t0, t0+int64(len(tp.PerSecond))*1e9, 0, hi)
	for _, line := range []struct {
		name string
		xys  plotter.XYs
		col  color.Color
	}{{"attempts sent", att, colBackoff}, {"ops confirmed", conf, colBar}} {
		l, err := plotter.NewLine(line.xys)
		if err != nil {
			return nil, err
		}
		l.Color = line.col
		p.Add(l)
		p.Legend.Add(line.name, l)
	}
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	p.Y.Min = 0
	p.X.Label.Text = "second of the run (shaded: fault windows)"
	p.Y.Label.Text = "per second"
	return render(p, "throughput-over-time", "Throughput over time", "Attempts sent and operations confirmed in each second of the run.")
}
