package verify

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/rundir"
)

// writeBacklogTimeline writes a relay and a consumer page every 250 ms for
// 12 s: the broker is cut from 1 s to 5 s while 500 rows/s pile up (2000),
// then the relay publishes them at 1000/s (5 s to 7 s) and the consumer
// applies each 0.5 s later; redeliveries grow by extraRedeliveries during
// the drain. The relay exports limit as its publish-rate limit (negative:
// it exports none).
func writeBacklogTimeline(tb testing.TB, dir string, extraRedeliveries, limit float64) {
	tb.Helper()
	writeTimeline(tb, dir, timelineSpec{redeliveries: extraRedeliveries, limit: limit, writes: 2000})
}

// timelineSpec shapes writeTimeline's run: writes rows are written at
// 500/s from 1 s (2000: until the broker returns at 5 s; more: the load
// goes on after it), and with charge the charge service's page, with its
// created counter, is in the timeline too.
type timelineSpec struct {
	redeliveries, limit, writes float64
	charge                      bool
}

func writeTimeline(tb testing.TB, dir string, spec timelineSpec) {
	tb.Helper()
	for i := 0; i <= 48; i++ {
		s := float64(i) / 4
		at := t0.Add(time.Duration(i) * 250 * time.Millisecond)
		written := math.Min(spec.writes, math.Max(0, s-1)*500)
		published := math.Min(written, math.Max(0, s-5)*1000)
		applied := math.Min(written, math.Max(0, s-5.5)*1000)
		redeliveries := 3.0
		if s > 5 {
			redeliveries += math.Min(spec.redeliveries, (s-5)*spec.redeliveries)
		}
		pages := map[string]map[string]float64{
			"relay": {MetricRelayPublished: published, MetricOutboxPending: written - published},
			"consumer": {DefaultSideEffectMetric: applied, MetricConsumerInflightMax: math.Min(64, applied),
				MetricConsumerRedeliveries: redeliveries},
		}
		if spec.charge {
			pages["charge"] = map[string]float64{MetricChargesCreated: written}
		}
		if spec.limit >= 0 {
			pages["relay"][MetricRelayPublishLimit] = spec.limit
		}
		for name, vals := range pages {
			p := rundir.TimelinePath(dir, name, at)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				tb.Fatal(err)
			}
			if err := os.WriteFile(p, []byte(page(vals)), 0o644); err != nil {
				tb.Fatal(err)
			}
		}
	}
}

// oneBacklog verifies spec's run with tl's timeline and returns its one
// backlog figure.
func oneBacklog(t *testing.T, spec *runSpec, tl timelineSpec) BacklogFigures {
	t.Helper()
	dir := spec.write(t, t.TempDir())
	writeTimeline(t, dir, tl)
	rep, err := Verify(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Backlog) != 1 {
		t.Fatalf("%d backlog figures, want 1", len(rep.Backlog))
	}
	return rep.Backlog[0]
}

func backlogRun(n int) *runSpec {
	s := cleanRun(n)
	s.faults = []rundir.Fault{
		{Time: t0.Add(time.Second), Fault: rundir.FaultBrokerCut, Action: "start", Target: "nats"},
		{Time: t0.Add(5 * time.Second), Fault: rundir.FaultBrokerCut, Action: "stop", Target: "nats"},
	}
	return s
}

func TestBacklogFiguresFromTheTimeline(t *testing.T) {
	tests := []struct {
		name         string
		spec         *runSpec
		timeline     bool
		redeliveries float64
		limit        float64 // the relay's publish-rate limit; negative: not exported
		want         int     // backlog entries
		status       string  // of backlog-paced
		detail       string  // in its detail
	}{
		{"paced, no redeliveries", backlogRun(200), true, 0, 1000, 1, StatusHeld, ""},
		{"paced, but a herd of redeliveries", backlogRun(200), true, 40, 1000, 1, StatusFailed, "redelivered 40 events"},
		{"faster than its limit", backlogRun(200), true, 0, 500, 1, StatusFailed, "above 1.1x its limit of 500/s"},
		{"no limit: shown, not judged", backlogRun(200), true, 40, 0, 1, StatusNothing, "without --publish-rate"},
		{"limit not exported: shown, not judged", backlogRun(200), true, 0, -1, 1, StatusNothing, "does not export"},
		{"no broker cut: no backlog figure", func() *runSpec { s := backlogRun(200); s.faults = nil; return s }(), true, 0, 1000, 0, StatusNothing, "no broker cut"},
		{"no timeline: no backlog figure", backlogRun(200), false, 0, 1000, 0, StatusNothing, "no broker cut"},
		{"a cut that never ended: no backlog figure", func() *runSpec { s := backlogRun(200); s.faults = s.faults[:1]; return s }(), true, 0, 1000, 0, StatusNothing, "no broker cut"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.spec.write(t, t.TempDir())
			if tc.timeline {
				writeBacklogTimeline(t, dir, tc.redeliveries, tc.limit)
			}
			rep, err := Verify(context.Background(), dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			c := rep.Check(CheckBacklogPaced)
			if c == nil {
				t.Fatalf("report has no check %s", CheckBacklogPaced)
			}
			if c.Status != tc.status || !strings.Contains(c.Detail, tc.detail) {
				t.Errorf("%s: %s %q (%s), want %s with %q", c.Name, c.Status, c.Figure, c.Detail, tc.status, tc.detail)
			}
			if tc.status == StatusFailed && rep.ExitCode != 1 {
				t.Errorf("exit code %d with %s failed, want 1", rep.ExitCode, c.Name)
			}
			if len(rep.Backlog) != tc.want {
				t.Fatalf("%d backlog figures, want %d: %+v", len(rep.Backlog), tc.want, rep.Backlog)
			}
			if tc.want == 0 {
				return
			}
			b := rep.Backlog[0]
			near := func(what string, got, want, tol float64) {
				t.Helper()
				if math.Abs(got-want) > tol {
					t.Errorf("%s = %v, want %v +- %v", what, got, want, tol)
				}
			}
			near("cut_seconds", b.CutSeconds, 4, 0)
			near("peak_pending", b.PeakPending, 2000, 0)
			near("published", b.Published, 2000, 0)
			near("drain_seconds", b.DrainSeconds, 2, 0.25)
			near("publish_rate", b.PublishRate, 1000, 10)
			near("apply_seconds", b.ApplySeconds, 2.5, 0.25)
			near("consumer_inflight_peak", b.ConsumerInflightPeak, 64, 0)
			near("redeliveries", b.Redeliveries, tc.redeliveries, 0)
			near("resolution_seconds", b.ResolutionSeconds, 0.25, 0)
			switch {
			case tc.limit < 0 && b.PublishRateLimit != nil:
				t.Errorf("publish_rate_limit = %v, want none", *b.PublishRateLimit)
			case tc.limit >= 0 && (b.PublishRateLimit == nil || *b.PublishRateLimit != tc.limit):
				t.Errorf("publish_rate_limit = %v, want %v", b.PublishRateLimit, tc.limit)
			}
			text, err := os.ReadFile(filepath.Join(dir, rundir.TranscriptFile))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(text), "backlog: broker cut 4.0 s, peak 2000 pending") {
				t.Errorf("transcript lacks the backlog line:\n%s", text)
			}
		})
	}
}

// When the load goes on after the broker returns, the drain is the backlog
// the charge service had created by then, not everything published later:
// here 2000 rows wait at 5 s, the relay has published them by 7 s while
// 2000 more keep arriving until 9 s, and the consumer has applied the
// backlog by 7.5 s. Without the charge service's counter the figure can
// only take everything published in the window.
func TestBacklogDrainEndsWithTheBacklogWhileTheLoadGoesOn(t *testing.T) {
	for _, tc := range []struct {
		name                         string
		charge                       bool
		published, drain, apply, eps float64
	}{
		{"with the created counter", true, 2000, 2, 2.5, 0.25},
		{"without it", false, 4000, 4, 4.5, 0.25},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := oneBacklog(t, backlogRun(200), timelineSpec{limit: 1000, writes: 4000, charge: tc.charge})
			if b.Published != tc.published || math.Abs(b.DrainSeconds-tc.drain) > tc.eps || math.Abs(b.ApplySeconds-tc.apply) > tc.eps {
				t.Errorf("published %v in %v s, applied in %v s; want %v in %v s, applied in %v s (+- %v)",
					b.Published, b.DrainSeconds, b.ApplySeconds, tc.published, tc.drain, tc.apply, tc.eps)
			}
			if math.Abs(b.PublishRate-1000) > 10 {
				t.Errorf("publish rate %v, want 1000", b.PublishRate)
			}
		})
	}
}

func TestCounterUndoesResets(t *testing.T) {
	var in []sample
	for i, v := range []float64{0, 5, 9, 2, 4, 1} {
		in = append(in, sample{t0.Add(time.Duration(i) * time.Second), v})
	}
	want := []float64{0, 5, 9, 11, 13, 14}
	for i, x := range counter(in) {
		if x.v != want[i] || !x.t.Equal(in[i].t) {
			t.Errorf("sample %d: %v at %v, want %v", i, x.v, x.t, want[i])
		}
	}
}

// A relay killed during the drain loses its last counts: the figure says
// its published counts are lower bounds; a kill outside the window does not.
func TestBacklogFigureFlagsARelayKilledDuringTheDrain(t *testing.T) {
	for _, tc := range []struct {
		name   string
		at     time.Duration
		killed bool
	}{
		{"killed during the drain", 6 * time.Second, true},
		{"killed after it", 11 * time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := backlogRun(200)
			spec.faults = append(spec.faults, rundir.Fault{Time: t0.Add(tc.at), Fault: "kill", Action: "inject", Target: "relay", Count: 1})
			b := oneBacklog(t, spec, timelineSpec{limit: 1000, writes: 2000, charge: true})
			if b.RelayKilled != tc.killed || strings.Contains(b.Summary(), "lower bounds") != tc.killed {
				t.Errorf("relay_killed %v, summary %q: want %v", b.RelayKilled, b.Summary(), tc.killed)
			}
		})
	}
}

// The drain's edge cases, on a relay counter sampled every second after
// the broker returns at 5 s: a backlog already published by the return, a
// created count the relay never reaches, and a drain shorter than one
// interval (its rate from its length, not between two inner samples).
func TestBacklogDrainEdges(t *testing.T) {
	series := func(vals ...float64) []sample {
		var out []sample
		for i, v := range vals {
			out = append(out, sample{t0.Add(time.Duration(4+i) * time.Second), v})
		}
		return out
	}
	ret, winEnd := t0.Add(5*time.Second), t0.Add(9*time.Second)
	for _, tc := range []struct {
		name               string
		published, created []sample
		end                time.Duration // the drain's end, from t0
		want               BacklogFigures
	}{
		{"published before the return: nothing to drain",
			series(100, 100, 100, 100, 100, 100), series(100, 100, 100, 100, 100, 100),
			5 * time.Second, BacklogFigures{}},
		{"never reaches what was created: drains until the window ends",
			series(0, 0, 100, 200, 300, 300), series(500, 500, 500, 500, 500, 500),
			9 * time.Second, BacklogFigures{Published: 300, DrainSeconds: 3, PublishRate: 100}},
		{"no created counter: everything published in the window",
			series(0, 0, 100, 200, 300, 300), nil,
			9 * time.Second, BacklogFigures{Published: 300, DrainSeconds: 3, PublishRate: 100}},
		{"drained within one interval",
			series(0, 0, 300, 300, 300, 300), series(300, 300, 300, 300, 300, 300),
			6 * time.Second, BacklogFigures{Published: 300, DrainSeconds: 1, PublishRate: 300}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := backlogSeries{published: tc.published, created: tc.created}
			p0 := at(s.published, ret)
			end, _ := s.drainEnd(ret, winEnd, p0)
			if want := t0.Add(tc.end); !end.Equal(want) {
				t.Errorf("drain ends at %v, want %v", end.Sub(t0), tc.end)
			}
			var b BacklogFigures
			b.measureDrain(s.published, ret, end, p0)
			if b.Published != tc.want.Published || b.DrainSeconds != tc.want.DrainSeconds || b.PublishRate != tc.want.PublishRate {
				t.Errorf("published %v in %v s at %v/s, want %v in %v s at %v/s",
					b.Published, b.DrainSeconds, b.PublishRate, tc.want.Published, tc.want.DrainSeconds, tc.want.PublishRate)
			}
		})
	}
}

// With two cuts, the first one's window of evidence ends where the second
// begins: what is published during the second cut's drain is not the
// first's.
func TestBacklogFiguresPerCut(t *testing.T) {
	spec := backlogRun(200)
	spec.faults = append(spec.faults,
		rundir.Fault{Time: t0.Add(6 * time.Second), Fault: rundir.FaultBrokerCut, Action: "start", Target: "nats"},
		rundir.Fault{Time: t0.Add(8 * time.Second), Fault: rundir.FaultBrokerCut, Action: "stop", Target: "nats"},
	)
	dir := spec.write(t, t.TempDir())
	writeTimeline(t, dir, timelineSpec{limit: 1000, writes: 2000})
	rep, err := Verify(context.Background(), dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Backlog) != 2 {
		t.Fatalf("%d backlog figures, want 2", len(rep.Backlog))
	}
	// The relay publishes 1000/s from 5 s: 1000 by the second cut at 6 s.
	if first := rep.Backlog[0]; first.CutSeconds != 4 || first.Published != 1000 {
		t.Errorf("first cut: %v s, %v published; want 4 s, 1000", first.CutSeconds, first.Published)
	}
	if second := rep.Backlog[1]; second.CutSeconds != 2 || second.Published != 0 {
		t.Errorf("second cut: %v s, %v published; want 2 s, 0", second.CutSeconds, second.Published)
	}
}
