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
