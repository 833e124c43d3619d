package attack

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/paytest/paytest/internal/promql"
	"github.com/paytest/paytest/internal/rundir"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/paytest/paytest/internal/promtext"
)

// scrape reads one metric's sum (over its label sets) from a /metrics page.
// A page without the metric reads as found=false.
func scrape(ctx context.Context, hc *http.Client, url, metric string) (v float64, found bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, false, err
	}
	page, err := getPage(hc, req)
	if err != nil {
		return 0, false, err
	}
	v, found, err = promtext.Sum(page, metric)
	if err != nil {
		return 0, false, fmt.Errorf("%s: %w", url, err)
	}
	return v, found, nil
}

// drainSpec says what "drained" means for a run.
type drainSpec struct {
	// PendingURL is the page with paytest_outbox_pending (empty: no outbox).
	PendingURL string
	// EffectsURL and EffectsMetric give the side-effect counter.
	EffectsURL    string
	EffectsMetric string
	// PrometheusURL and EffectsQuery give it through Prometheus instead.
	PrometheusURL string
	EffectsQuery  string
	// Expected is the count effects should reach (0: unknown, stability only).
	Expected int
	// DLQExpected, when positive, is how many poison events the DLQ
	// counter on EffectsURL must reach.
	DLQExpected int
	// Stable is how long effects must not move to count as settled.
	Stable   time.Duration
	Deadline time.Duration
	// Broker, when set, reads the consumer's backlog on the broker: the
	// drain ends only once nothing is left unacknowledged (awaiting a
	// redelivery after the ack wait) or undelivered, so that a late
	// redelivery lands inside the evidence. With it, Expected is shown
	// but not required (a counter restarted by a crash reads low).
	Broker func(ctx context.Context) (brokerBacklog, error)
}

// brokerBacklog is a durable consumer's state on the broker.
type brokerBacklog struct {
	// AckPending counts messages delivered and not yet acknowledged: a
	// consumer that died before its ack leaves them here until the ack
	// wait ends and they are redelivered.
	AckPending int
	// Pending counts messages not yet delivered.
	Pending uint64
	// Redelivered counts the ack-pending messages delivered more than once.
	Redelivered int
}

func (b brokerBacklog) empty() bool { return b.AckPending == 0 && b.Pending == 0 && b.Redelivered == 0 }

// drainResult is what the wait saw last.
type drainResult struct {
	Pending float64
	Effects float64
	DLQ     float64
	Broker  *brokerBacklog
	Took    time.Duration
	Settled bool
	LastErr error
}

// describe says what the drain saw last, for the transcript.
func (r drainResult) describe(d drainSpec) string {
	var parts []string
	if d.PendingURL != "" {
		parts = append(parts, fmt.Sprintf("outbox pending %.0f", r.Pending))
	}
	if r.Broker != nil {
		parts = append(parts, fmt.Sprintf("broker: %d unacknowledged (%d redelivered), %d undelivered", r.Broker.AckPending, r.Broker.Redelivered, r.Broker.Pending))
	}
	if d.EffectsURL != "" || d.PrometheusURL != "" {
		exp := ""
		if d.Expected > 0 {
			exp = fmt.Sprintf(" (expected %d)", d.Expected)
		}
		parts = append(parts, fmt.Sprintf("side effects %.0f%s", r.Effects, exp))
	}
	if d.DLQExpected > 0 {
		parts = append(parts, fmt.Sprintf("dead-lettered %.0f of %d", r.DLQ, d.DLQExpected))
	}
	return strings.Join(parts, ", ")
}

// waitDrained polls until the outbox is empty, the broker holds nothing
// for the consumer, and the side effects have stopped growing (and reached
// Expected when known and no broker is read), or the deadline.
func waitDrained(ctx context.Context, hc *http.Client, d drainSpec, pr *progress) drainResult {
	began := time.Now()
	deadline := began.Add(d.Deadline)
	var res drainResult
	lastEffects, lastChange := -1.0, time.Now()
	for {
		now := time.Now()
		pendingOK := true
		if d.PendingURL != "" {
			v, found, err := scrape(ctx, hc, d.PendingURL, "paytest_outbox_pending")
			switch {
			case err != nil:
				res.LastErr, pendingOK = err, false
			case found:
				res.Pending = v
				pendingOK = v == 0
				pr.pending(int64(v))
			}
		}
		effectsOK := true
		if d.EffectsURL != "" || d.PrometheusURL != "" {
			var v float64
			var err error
			if d.EffectsURL != "" {
				v, _, err = scrape(ctx, hc, d.EffectsURL, d.EffectsMetric)
			} else {
				v, err = promQuery(ctx, hc, d.PrometheusURL, d.EffectsQuery)
			}
			if err != nil {
				res.LastErr, effectsOK = err, false
			} else {
				res.Effects = v
				pr.set(barEffects, int64(v))
				if v != lastEffects {
					lastEffects, lastChange = v, now
				}
				effectsOK = now.Sub(lastChange) >= d.Stable
				if d.Expected > 0 && d.Broker == nil && int(v) < d.Expected {
					effectsOK = false
				}
			}
		}
		if d.DLQExpected > 0 && d.EffectsURL != "" {
			v, _, err := scrape(ctx, hc, d.EffectsURL, "paytest_dlq_messages_total")
			if err != nil {
				res.LastErr, effectsOK = err, false
			} else if res.DLQ = v; int(v) < d.DLQExpected {
				effectsOK = false
			}
		}
		brokerOK := true
		if d.Broker != nil {
			b, err := d.Broker(ctx)
			if err != nil {
				res.LastErr, brokerOK = err, false
			} else {
				res.Broker, brokerOK = &b, b.empty()
			}
		}
		if pendingOK && effectsOK && brokerOK {
			res.Settled, res.Took = true, time.Since(began)
			return res
		}
		if now.After(deadline) {
			res.Took = time.Since(began)
			return res
		}
		select {
		case <-ctx.Done():
			res.LastErr, res.Took = ctx.Err(), time.Since(began)
			return res
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// saveRegistry writes a registry's metrics in the text format.
func saveRegistry(reg *prometheus.Registry, path string) error {
	fams, err := reg.Gather()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	enc := expfmt.NewEncoder(f, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range fams {
		if err := enc.Encode(mf); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// sampleTimeline saves every page's /metrics every interval under
// metrics/timeline/<name>/ until ctx ends, so report.html can plot the run
// over time. It returns when ctx is done.
func sampleTimeline(ctx context.Context, hc *http.Client, runDir string, pages map[string]string, interval time.Duration, onPage func(name string, page []byte)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		for name, url := range pages {
			now := time.Now()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				continue
			}
			b, err := getPage(hc, req)
			if err != nil {
				// A page that does not answer inside a kill of its
				// process tells verify the process restarted.
				if ctx.Err() == nil {
					path := rundir.TimelineDownPath(runDir, name, now)
					if os.MkdirAll(filepath.Dir(path), 0o755) == nil {
						_ = os.WriteFile(path, []byte(err.Error()+"\n"), 0o644)
					}
				}
				continue
			}
			if onPage != nil {
				onPage(name, b)
			}
			path := rundir.TimelinePath(runDir, name, now)
			if os.MkdirAll(filepath.Dir(path), 0o755) == nil {
				_ = os.WriteFile(path, b, 0o644)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// getPage reads one metrics page; a status other than 200 is an error.
func getPage(hc *http.Client, req *http.Request) ([]byte, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", req.URL.Redacted(), resp.Status)
	}
	return b, nil
}

// pageValue sums one metric on a text-format page (0 when absent).
func pageValue(page []byte, metric string) (float64, bool) {
	v, found, err := promtext.Sum(page, metric)
	return v, found && err == nil
}

// promQuery runs a PromQL instant query and sums its vector (or takes its
// scalar); an empty answer counts as 0.
func promQuery(ctx context.Context, hc *http.Client, base, q string) (float64, error) {
	prom, err := promql.New(hc, base)
	if err != nil {
		return 0, err
	}
	ans, err := promql.Instant(ctx, prom, q)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", base, err)
	}
	if ans.Value == nil {
		return 0, nil
	}
	return *ans.Value, nil
}
