package attack

import (
	"bufio"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paytest/paytest/attack/load"
	"github.com/paytest/paytest/internal/promtext"
	"github.com/paytest/paytest/internal/rundir"
	"github.com/paytest/paytest/verify"
)

// The default profile driven as an open model holds every check; the run
// reports its latency and throughput, judges its thresholds, records them
// in run.yaml, and serves the client's metrics while it lasts.
func TestOpenModelDefaultProfileHoldsWithThresholdsAndLiveMetrics(t *testing.T) {
	cfg := bundled(t, "default")
	cfg.Plan.Ops, cfg.Plan.Seed = 600, 5
	cfg.Plan.Rate = load.Rate{From: 300, To: 300}
	ths, err := verify.ParseThresholds([]string{"op_p99 < 60s", "dropped_arrivals <= 0", "attempt_p50 < 1ms"})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Evidence.Thresholds = ths
	cfg.Evidence.MetricsListen = "127.0.0.1:0"
	pr, pw := io.Pipe()
	cfg.Progress = pw
	scraped := make(chan string, 1)
	var wg sync.WaitGroup
	wg.Go(func() { scrapeWhileRunning(pr, scraped) })
	res := run(t, cfg)
	pw.Close()
	wg.Wait()

	rep := res.Report
	// The last threshold cannot hold on a real stack: it fails, and alone.
	for _, c := range rep.Checks {
		want := verify.StatusHeld
		switch {
		case c.Name == "threshold: attempt_p50 < 1ms":
			want = verify.StatusFailed
		case c.Status == verify.StatusNothing:
			continue
		}
		if c.Status != want {
			t.Errorf("%s: %s %q (%s), want %s", c.Name, c.Status, c.Figure, c.Detail, want)
		}
	}
	if rep.Verdict != verify.VerdictViolated || rep.Check("threshold: op_p99 < 60s") == nil || rep.Check("threshold: dropped_arrivals <= 0") == nil {
		t.Fatalf("verdict %s; want violated by the one failing threshold, the others present", rep.Verdict)
	}
	if l := rep.Latency; l == nil || l.Model != "open" || l.Ops.Count < 590 || l.Attempts.P99MS <= 0 || len(l.Phases) < 3 {
		t.Fatalf("latency %+v: want the open model's figures for every op and phases around the faults", l)
	}
	if tp := rep.Throughput; tp == nil || tp.DroppedArrivals != 0 || tp.ConfirmedOpsPerSecond <= 0 {
		t.Fatalf("throughput %+v", tp)
	}
	r, err := rundir.ReadRun(filepath.Join(res.Dir, rundir.RunFile))
	if err != nil {
		t.Fatal(err)
	}
	if r.Rate != "300/s" || !slices.Equal(r.Thresholds, []string{"op_p99 < 60s", "dropped_arrivals <= 0", "attempt_p50 < 1ms"}) {
		t.Fatalf("run.yaml rate %q thresholds %q", r.Rate, r.Thresholds)
	}
	// Every first attempt says when it was due.
	n := 0
	if err := rundir.ReadFile(filepath.Join(res.Dir, rundir.HistoryFile), func(a rundir.Attempt) error {
		if a.Attempt == 1 && a.Sender == 0 && a.DelayReason == rundir.ReasonFirst && a.Intended.IsZero() {
			n++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n > 0 {
		t.Fatalf("%d first attempts without their intended send time", n)
	}
	select {
	case page := <-scraped:
		if v, found, err := promtext.Sum([]byte(page), "paytest_client_attempt_outcomes_total"); err != nil || !found || v <= 0 {
			t.Fatalf("live client metrics: outcomes %v found %v err %v", v, found, err)
		}
	default:
		t.Fatal("the client metrics were never served while the run lasted")
	}
}

var metricsAt = regexp.MustCompile(`client metrics at (http://\S+/metrics)`)

// scrapeWhileRunning reads the run's progress lines, notes the client
// metrics address when it is announced, and fetches the page once the
// chaos phase is over (the run, and the server, go on).
func scrapeWhileRunning(r io.Reader, out chan<- string) {
	sc := bufio.NewScanner(r)
	url := ""
	for sc.Scan() {
		if m := metricsAt.FindStringSubmatch(sc.Text()); m != nil {
			url = m[1]
		}
		if url == "" || !strings.Contains(sc.Text(), "chaos phase") {
			continue
		}
		if resp, err := http.Get(url); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				out <- string(b)
			}
		}
	}
}

// Arrivals dropped at the cap are caught up once the last one is made,
// while the last ops wait out their Retry-After and backoffs, not after
// them; the reconcile phase gets only what is left. Every check holds.
func TestDroppedChargesAreCaughtUpWhileTheLastOpsFinish(t *testing.T) {
	cfg := bundled(t, "default")
	cfg.Plan.Ops, cfg.Plan.Seed = 400, 7
	cfg.Plan.Rate = load.Rate{From: 1000, To: 1000}
	cfg.Plan.MaxInflight = 16
	res := run(t, cfg)
	for _, c := range res.Report.Checks {
		if c.Status != verify.StatusHeld && c.Status != verify.StatusNothing {
			t.Errorf("%s: %s %q (%s)", c.Name, c.Status, c.Figure, c.Detail)
		}
	}
	if res.Report.Verdict != verify.VerdictHeld {
		t.Fatalf("verdict %s", res.Report.Verdict)
	}
	cu := res.CaughtUp
	if cu == nil || res.Load.Dropped == 0 {
		t.Fatalf("%d dropped, caught up %+v: want drops at a cap of 16, caught up", res.Load.Dropped, cu)
	}
	// Every dropped charge was caught up (reuses wait for the reconcile
	// phase: the op they reuse may still be in flight).
	dropped := map[int]string{}
	var chaosEnd time.Time
	firstCatchUp := time.Time{}
	if err := rundir.ReadFile(filepath.Join(res.Dir, rundir.HistoryFile), func(a rundir.Attempt) error {
		switch {
		case a.Outcome == rundir.OutcomeDropped:
			dropped[a.Op] = a.Kind
		case a.DelayReason == rundir.ReasonReconcile:
			if firstCatchUp.IsZero() || a.Start.Before(firstCatchUp) {
				firstCatchUp = a.Start
			}
		case a.End.After(chaosEnd):
			chaosEnd = a.End
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	charges := 0
	for _, kind := range dropped {
		if kind == rundir.KindCharge {
			charges++
		}
	}
	if len(dropped) != res.Load.Dropped || cu.Ops != charges || cu.Confirmed != charges || len(cu.Unconfirmed) != 0 {
		t.Fatalf("%d dropped (%d in the history, %d charges); caught up %d ops, %d confirmed, %d not",
			res.Load.Dropped, len(dropped), charges, cu.Ops, cu.Confirmed, len(cu.Unconfirmed))
	}
	if !firstCatchUp.Before(chaosEnd) {
		t.Fatalf("first catch-up attempt at %v, after the chaos's last answer at %v: not overlapped", firstCatchUp, chaosEnd)
	}
	// The reconcile phase re-drove only what was left: the dropped reuses
	// and the ops the chaos left unconfirmed otherwise.
	if rc := res.Reconciled; rc != nil && rc.Ops > len(res.Load.Unconfirmed)-charges {
		t.Fatalf("reconciled %d ops, want at most %d (unconfirmed %d less %d caught up)", rc.Ops, len(res.Load.Unconfirmed)-charges, len(res.Load.Unconfirmed), charges)
	}
}

// Stopping the system does not wait on the client's connections: each one
// open and idle (or dialled and never used) held the charge service's
// graceful shutdown for up to 5 s, in most runs with eaten responses.
func TestSystemStopsWithoutWaitingOnIdleConnections(t *testing.T) {
	for seed := range int64(3) {
		cfg := bundled(t, "default")
		cfg.Plan.Ops, cfg.Plan.Seed = 300, seed+1
		res := run(t, cfg)
		if res.stopTook > 2*time.Second {
			t.Fatalf("seed %d: the system took %v to stop", seed+1, res.stopTook)
		}
	}
}
