package verify

import (
	"bytes"
	"context"
	"encoding/base64"
	"html"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/rundir"
)

var imgTag = regexp.MustCompile(`<img id="plot-([a-z-]+)" alt="[^"]*" src="data:image/png;base64,([^"]+)"`)

// htmlPlots parses report.html's plot images: id -> decoded PNG.
func htmlPlots(t *testing.T, page []byte) map[string]image.Image {
	t.Helper()
	out := map[string]image.Image{}
	for _, m := range imgTag.FindAllSubmatch(page, -1) {
		// html/template escapes '+' as &#43; in attributes; browsers decode it.
		b, err := base64.StdEncoding.DecodeString(html.UnescapeString(string(m[2])))
		if err != nil {
			t.Fatalf("plot %s: %v", m[1], err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("plot %s is not a PNG: %v", m[1], err)
		}
		out[string(m[1])] = img
	}
	return out
}

func TestReportHTMLIsSelfContainedWithPlots(t *testing.T) {
	tests := []struct {
		name      string
		timeline  bool
		wantPlots []string
	}{
		{"from history", false, []string{"retry-delays-scatter", "retry-delays-hist", "attempts-per-op", "outcomes", "effects-over-time", "latency-over-time", "throughput-over-time"}},
		{"with metrics snapshots", true, []string{"retry-delays-scatter", "retry-delays-hist", "attempts-per-op", "outcomes", "effects-over-time", "outbox-lag", "latency-over-time", "throughput-over-time"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := cleanRun(200).write(t, t.TempDir())
			if tc.timeline {
				for i := 0; i <= 12; i++ {
					at := t0.Add(time.Duration(i) * time.Second)
					for name, vals := range map[string]map[string]float64{
						"consumer": {DefaultSideEffectMetric: float64(min(200, i*20))},
						"relay":    {MetricOutboxLag: float64(max(0, 6-i)) / 2},
					} {
						p := rundir.TimelinePath(dir, name, at)
						if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
							t.Fatal(err)
						}
						if err := os.WriteFile(p, []byte(page(vals)), 0o644); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			rep, err := Verify(context.Background(), dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(dir, rundir.HTMLFile))
			if err != nil {
				t.Fatal(err)
			}
			plots := htmlPlots(t, b)
			for _, id := range tc.wantPlots {
				img, ok := plots[id]
				if !ok {
					t.Errorf("report.html has no <img id=plot-%s> with a data: URI", id)
					continue
				}
				if r := img.Bounds(); r.Dx() < 400 || r.Dy() < 200 {
					t.Errorf("plot %s is %v: too small", id, r)
				}
			}
			if len(plots) != len(tc.wantPlots) || len(rep.Plots) != len(tc.wantPlots) {
				t.Errorf("plots in page %d, in report %v; want %v", len(plots), rep.Plots, tc.wantPlots)
			}
			page := string(b)
			for _, bad := range []string{"<script", "<link", `src="http`, `href="http`, "url(http"} {
				if strings.Contains(page, bad) {
					t.Errorf("report.html refers to an external asset (%s)", bad)
				}
			}
			for _, c := range rep.Checks {
				if !strings.Contains(page, `id="check-`+c.Name+`"`) {
					t.Errorf("report.html lacks a row for %s", c.Name)
				}
			}
			if !strings.Contains(page, "HELD") {
				t.Error("report.html does not show the verdict")
			}
		})
	}
}

// TestReportHTMLRendersInChromium opens report.html in headless Chromium
// (Debian's chromium package) and checks the screenshot has content.
// PAYTEST_KEEP_SCREENSHOT=path keeps the PNG for a human to look at.
func TestReportHTMLRendersInChromium(t *testing.T) {
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Skip("no chromium in PATH: apt-get install -y chromium")
	}
	s := cleanRun(300)
	for i := range s.attempts[:60] { // a few no-jitter retries, to show both shapes
		if a := &s.attempts[i]; a.DelayReason == rundir.ReasonBackoff {
			a.DelayMS = a.CapMS
		}
	}
	dir := s.write(t, t.TempDir())
	if _, err := Verify(context.Background(), dir, Options{}); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(t.TempDir(), "report.png")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
		"--disable-dev-shm-usage", "--hide-scrollbars",
		"--user-data-dir="+t.TempDir(), "--screenshot="+shot, "--window-size=1200,3000",
		"file://"+filepath.Join(dir, rundir.HTMLFile))
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v\n%s", err, out)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	if r := img.Bounds(); r.Dx() != 1200 || r.Dy() != 3000 {
		t.Fatalf("screenshot is %v; want 1200x3000", r)
	}
	// A blank or error page has a handful of colours; plots have many.
	colours := map[uint32]bool{}
	nonWhite := 0
	for y := 0; y < 3000; y += 3 {
		for x := 0; x < 1200; x += 3 {
			r, g, b, _ := img.At(x, y).RGBA()
			colours[(r>>8)<<16|(g>>8)<<8|b>>8] = true
			if r < 0xf000 || g < 0xf000 || b < 0xf000 {
				nonWhite++
			}
		}
	}
	if len(colours) < 100 || nonWhite < 20000 {
		t.Fatalf("screenshot looks empty: %d colours, %d non-white samples", len(colours), nonWhite)
	}
	if keep := os.Getenv("PAYTEST_KEEP_SCREENSHOT"); keep != "" {
		b, _ := os.ReadFile(shot)
		_ = os.WriteFile(keep, b, 0o644)
	}
}

// report.html shows the latency and throughput lines, and the warning when
// the open model dropped much of the load, as the text verdict does.
func TestReportHTMLShowsLoadAndItsWarning(t *testing.T) {
	r := &Report{Verdict: "held",
		Latency:    &Latency{Model: "open", Ops: LatencyStats{Count: 3184, P50MS: 132.5}},
		Throughput: &Throughput{AttemptsPerSecond: 1181.95, ConfirmedOpsPerSecond: 982.55, DurationSeconds: 10.38, DroppedArrivals: 7016}}
	path := filepath.Join(t.TempDir(), rundir.HTMLFile)
	if err := writeHTML(path, r, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	page := string(b)
	for _, want := range []string{`id="load"`, "latencies (open model)", "132.5ms",
		"throughput  [attempts/s, confirmed ops/s]  1181.95, 982.55 over 10.38 s; 7016 arrivals dropped at the in-flight cap",
		"warning: 7016 arrivals (69% of the ops timed or dropped) found the in-flight cap full"} {
		if !strings.Contains(page, want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	r.Latency, r.Throughput = nil, nil
	if err := writeHTML(path, r, nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); strings.Contains(string(b), `id="load"`) {
		t.Error("a run without latency figures has a latency row")
	}
}
