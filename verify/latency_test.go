package verify

import (
	"bytes"
	"image/png"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/rundir"
	"gonum.org/v1/plot"
)

func TestLatencyFromTheDueTimeSplitByPhase(t *testing.T) {
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	l := newLatencyAcc(0)
	add := func(a rundir.Attempt, outcome string, confirms bool) { l.add(&a, outcome, confirms) }
	// op 1: due at 0, answered at 10 ms.
	add(rundir.Attempt{Op: 1, Kind: rundir.KindCharge, Attempt: 1, Outcome: rundir.OutcomeNew, Status: 200,
		Intended: ms(0), Start: ms(0), End: ms(10)}, rundir.OutcomeNew, true)
	// op 2: due at 100 ms but sent at 400 (the open model's clock was
	// late: the wait counts), 503 at 1000, retried at 1200, 200 at 1250.
	add(rundir.Attempt{Op: 2, Kind: rundir.KindCharge, Attempt: 1, Outcome: rundir.OutcomeUnavailable, Status: 503,
		Intended: ms(100), Start: ms(400), End: ms(1000)}, rundir.OutcomeUnavailable, false)
	add(rundir.Attempt{Op: 2, Kind: rundir.KindCharge, Attempt: 2, Outcome: rundir.OutcomeNew, Status: 200,
		Start: ms(1200), End: ms(1250)}, rundir.OutcomeNew, true)
	// op 3: dropped at the in-flight cap, then sent by reconciliation much
	// later: not timed.
	add(rundir.Attempt{Op: 3, Kind: rundir.KindCharge, Attempt: 1, Outcome: rundir.OutcomeDropped,
		Intended: ms(200), Start: ms(200), End: ms(200)}, rundir.OutcomeDropped, false)
	add(rundir.Attempt{Op: 3, Kind: rundir.KindCharge, Attempt: 2, Outcome: rundir.OutcomeNew, Status: 200,
		DelayReason: rundir.ReasonReconcile, Start: ms(5000), End: ms(5010)}, rundir.OutcomeNew, true)
	// op 4: a reuse refused at 1650 ms, after the cut.
	add(rundir.Attempt{Op: 4, Kind: rundir.KindReuse, Attempt: 1, Outcome: rundir.OutcomeMismatch, Status: 422,
		Intended: ms(1600), Start: ms(1600), End: ms(1650)}, rundir.OutcomeMismatch, true)
	// A budget refusal is not an attempt sent.
	add(rundir.Attempt{Op: 2, Kind: rundir.KindCharge, Attempt: 3, Outcome: rundir.OutcomeBudget, Start: ms(1300), End: ms(1300)}, rundir.OutcomeBudget, false)

	faults := []rundir.Fault{
		{Time: ms(500), Fault: rundir.FaultBrokerCut, Action: rundir.ActionStart, Target: "nats"},
		{Time: ms(300), Fault: rundir.FaultEatResponse, Action: rundir.ActionInject, Target: "charge"},
		{Time: ms(1500), Fault: rundir.FaultBrokerCut, Action: rundir.ActionStop, Target: "nats"},
	}
	lat, tp := l.finish(faults)
	if lat == nil || tp == nil {
		t.Fatal("no latency or throughput")
	}
	near := func(got, want float64) bool { return math.Abs(got-want) <= want*0.002+0.002 }
	if lat.Model != "open" || lat.Attempts.Count != 5 || lat.Ops.Count != 3 {
		t.Fatalf("model %s, %d attempts, %d ops timed; want open, 5 (the dropped and the refused not), 3 (op 3 dropped)", lat.Model, lat.Attempts.Count, lat.Ops.Count)
	}
	// Op 2 waited from 100 ms to 1250 ms: 1150 ms, the most of any op.
	if !near(lat.Ops.MaxMS, 1150) || !near(lat.Ops.MinMS, 10) {
		t.Fatalf("ops min %v max %v ms, want 10 and 1150", lat.Ops.MinMS, lat.Ops.MaxMS)
	}
	// Its first attempt: due at 100, answered at 1000: 900 ms.
	if s := lat.AttemptsByOutcome[rundir.OutcomeUnavailable]; s.Count != 1 || !near(s.MaxMS, 900) {
		t.Fatalf("503 attempts %+v, want one of 900 ms", s)
	}
	var names []string
	for _, p := range lat.Phases {
		names = append(names, p.Phase)
	}
	if len(names) != 3 || names[0] != "steady" || names[1] != "broker-cut nats" || names[2] != "after broker-cut nats" {
		t.Fatalf("phases %q, want steady, the cut, after it", names)
	}
	// In the cut: op 2's retry (due at 1200).
	if c := lat.Phases[1]; c.Attempts.Count != 1 || !near(c.Attempts.MaxMS, 50) || !c.From.Equal(ms(500)) || !c.To.Equal(ms(1500)) {
		t.Fatalf("cut phase %+v", c)
	}
	// Op 3, dropped, is confirmed in second 5 by its reconciliation.
	if tp.DroppedArrivals != 1 || len(tp.PerSecond) != 6 || tp.PerSecond[0].Attempts != 2 || tp.PerSecond[5].Confirmed != 1 {
		t.Fatalf("throughput %+v", tp)
	}
	// 5 attempts sent and 4 ops confirmed (3 timed, and op 3 whose
	// reconciliation at 5010 ms ends the span).
	if !near(tp.DurationSeconds, 5.01) || !near(tp.AttemptsPerSecond, 5/5.01) || !near(tp.ConfirmedOpsPerSecond, 4/5.01) {
		t.Fatalf("throughput %.3f s, %.3f attempts/s, %.3f confirmed/s", tp.DurationSeconds, tp.AttemptsPerSecond, tp.ConfirmedOpsPerSecond)
	}
}

func TestLatencyClosedModel(t *testing.T) {
	l := newLatencyAcc(0)
	a := rundir.Attempt{Op: 1, Attempt: 1, Outcome: rundir.OutcomeNew, Status: 200, Start: t0, End: t0.Add(3 * time.Millisecond)}
	l.add(&a, rundir.OutcomeNew, true)
	lat, _ := l.finish(nil)
	if lat.Model != "closed" || lat.Ops.Count != 1 || lat.Phases[0].Phase != "steady" {
		t.Fatalf("%+v", lat)
	}
	if empty, _ := newLatencyAcc(0).finish(nil); empty != nil {
		t.Fatalf("no attempts gave %+v, want no latency section", empty)
	}
}

func TestLatencyPointsAreThinnedNotTruncated(t *testing.T) {
	l := newLatencyAcc(0)
	n := 3 * maxLatencyPoints
	for i := range n {
		a := rundir.Attempt{Op: i + 1, Attempt: 1, Outcome: rundir.OutcomeNew, Start: t0.Add(time.Duration(i) * time.Millisecond), End: t0.Add(time.Duration(i+1) * time.Millisecond)}
		l.add(&a, rundir.OutcomeNew, true)
	}
	if len(l.points) > maxLatencyPoints || len(l.points) < maxLatencyPoints/2 {
		t.Fatalf("%d points kept of %d", len(l.points), n)
	}
	last := l.points[len(l.points)-1].due
	if want := t0.Add(time.Duration(n-4) * time.Millisecond).UnixNano(); last < want {
		t.Fatalf("the last point kept is at %v: the end of the run was dropped", time.Unix(0, last))
	}
}

func TestLatencyAndThroughputPlots(t *testing.T) {
	l := newLatencyAcc(0)
	for i := range 3000 {
		due := t0.Add(time.Duration(i) * time.Millisecond)
		out, lat := rundir.OutcomeNew, 5*time.Millisecond
		if i >= 1000 && i < 2000 { // a cut: slow, some 503s
			lat = time.Duration(2000-i) * time.Millisecond
			if i%10 == 0 {
				out = rundir.OutcomeUnavailable
			}
		}
		a := rundir.Attempt{Op: i + 1, Attempt: 1, Outcome: out, Intended: due, Start: due, End: due.Add(lat)}
		l.add(&a, out, out == rundir.OutcomeNew)
	}
	faults := []rundir.Fault{
		{Time: t0.Add(time.Second), Fault: rundir.FaultBrokerCut, Action: rundir.ActionStart, Target: "nats"},
		{Time: t0.Add(2 * time.Second), Fault: rundir.FaultBrokerCut, Action: rundir.ActionStop, Target: "nats"},
	}
	_, tp := l.finish(faults)
	for _, mk := range []func() (*plotImage, error){
		func() (*plotImage, error) { return l.plotLatency(faults) },
		func() (*plotImage, error) { return l.plotThroughput(faults, tp) },
	} {
		img, err := mk()
		if err != nil || img == nil {
			t.Fatalf("plot: %v, %v", img, err)
		}
		cfg, err := png.DecodeConfig(bytes.NewReader(img.PNG))
		if err != nil || cfg.Width < 600 {
			t.Fatalf("%s: not a PNG of a plot: %v %+v", img.ID, err, cfg)
		}
	}
	if img, _ := newLatencyAcc(0).plotLatency(nil); img != nil {
		t.Fatal("a plot of nothing")
	}
	// Every latency the same, 0 among them: a log axis still has a range.
	same := newLatencyAcc(0)
	for i := range 10 {
		a := rundir.Attempt{Op: i + 1, Attempt: 1, Outcome: rundir.OutcomeNew, Start: t0, End: t0.Add(time.Duration(i%2) * time.Millisecond)}
		same.add(&a, rundir.OutcomeNew, true)
	}
	if img, err := same.plotLatency(nil); err != nil || img == nil {
		t.Fatalf("equal latencies: %v, %v", img, err)
	}
}

// A plot gonum cannot draw is an error for that plot, never a panic that
// would cost the report.
func TestRenderTurnsAPanicIntoAnError(t *testing.T) {
	p := plot.New()
	p.Y.Scale, p.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{}
	p.Y.Min, p.Y.Max = 0, 1
	img, err := render(p, "broken", "Broken", "")
	if err == nil || img != nil || !strings.Contains(err.Error(), "plot broken") {
		t.Fatalf("render = %v, %v; want an error naming the plot", img, err)
	}
}

// The text verdict warns when a tenth or more of the open model's ops were
// dropped at the cap: the ops latency then leaves most of the load out.
func TestDropWarning(t *testing.T) {
	for _, tc := range []struct {
		name    string
		dropped int
		timed   int64
		want    string // a part of the warning; "" for none
	}{
		{"none dropped", 0, 100, ""},
		{"a few dropped in a stall", 10, 100, ""},
		{"a tenth dropped", 12, 100, "12 arrivals (11% of the ops timed or dropped)"},
		{"most dropped", 7016, 3184, "7016 arrivals (69% of the ops timed or dropped) found the in-flight cap full: the target fell behind the rate, so the ops latency describes only the 3184 sent on schedule"},
		{"every op dropped", 5, 0, "5 arrivals (100%"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lat := &Latency{Model: "open", Ops: LatencyStats{Count: tc.timed}}
			got := dropWarning(lat, &Throughput{DroppedArrivals: tc.dropped})
			if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
				t.Fatalf("dropWarning = %q, want it to contain %q", got, tc.want)
			}
		})
	}
	if got := dropWarning(nil, &Throughput{DroppedArrivals: 5}); got != "" {
		t.Fatalf("without latency: %q", got)
	}
}
