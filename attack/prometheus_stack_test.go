package attack

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paytest/paytest/attack/client"
	"github.com/paytest/paytest/attack/load"
	"github.com/paytest/paytest/attack/plan"
	"github.com/paytest/paytest/internal/rundir"
	"github.com/paytest/paytest/internal/testinfra"
	"github.com/paytest/paytest/target/stack"
	"github.com/paytest/paytest/verify"
)

// TestVerifyThroughARealPrometheusMatchesDirectScrapes runs a real
// Prometheus over the running reference stack and verifies the same run
// twice: once from direct /metrics scrapes and once through Prometheus's
// HTTP API. Both must reach the same verdict on the same figures.
func TestVerifyThroughARealPrometheusMatchesDirectScrapes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	name := strings.ToUpper(testinfra.Name("P"))
	natsURL := testinfra.NATS(t)
	t.Cleanup(func() { deleteStreams(natsURL, name, name+"_DLQ") })
	dbURL := testinfra.Postgres(t)
	s, err := stack.Start(ctx, stack.Config{
		Binary: testinfra.Paytest(t), DatabaseURL: dbURL, NATSURL: natsURL,
		Stream: name, DLQStream: name + "_DLQ", Subject: strings.ToLower(name) + ".charges",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })

	// Prometheus scraping every component once a second.
	promURL := testinfra.Prometheus(t, s.Addr(stack.Charge), s.Addr(stack.Relay), s.Addr(stack.Consumer))
	dir := t.TempDir()

	// A short run: duplicates and races through the retrying client.
	p, err := plan.New(plan.Config{Ops: 200, DuplicateRate: 0.3, RaceRate: 0.1, ReuseRate: 0.05, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	direct, viaProm := filepath.Join(dir, "direct"), filepath.Join(dir, "prometheus")
	for _, d := range []string{direct, viaProm} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := p.Write(filepath.Join(d, rundir.PlanFile)); err != nil {
			t.Fatal(err)
		}
		if err := rundir.WriteRun(filepath.Join(d, rundir.RunFile), rundir.Run{Seed: 5, Profile: "prometheus-e2e", Ops: 200, Started: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	hw, err := rundir.Create[rundir.Attempt](filepath.Join(direct, rundir.HistoryFile))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := client.New(client.Options{CallSite: "charge", Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := load.Run(ctx, p, load.Config{URL: s.ChargeURL(), Concurrency: 16, Client: cl, History: hw})
	if err != nil {
		t.Fatal(err)
	}
	if err := hw.Close(); err != nil {
		t.Fatal(err)
	}
	if len(sum.Unconfirmed) != 0 {
		t.Fatalf("%d ops unconfirmed on a healthy stack", len(sum.Unconfirmed))
	}
	b, err := os.ReadFile(filepath.Join(direct, rundir.HistoryFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(viaProm, rundir.HistoryFile), b, 0o644); err != nil {
		t.Fatal(err)
	}

	// Wait until the consumer has applied every charge, then until
	// Prometheus has scraped that final figure.
	charges := p.Charges()
	testinfra.WaitFor(t, 60*time.Second, func() error {
		v, err := testinfra.Scrape(s.MetricsURLs()[stack.Consumer], "paytest_side_effects_applied_total")
		if err != nil || int(v) != charges {
			return fmt.Errorf("side effects %v of %d (%v)", v, charges, err)
		}
		return nil
	})

	// Readiness, not a sleep: wait until Prometheus has scraped every
	// component at least once after the consumer caught up.
	testinfra.WaitFor(t, 60*time.Second, func() error {
		resp, err := http.Get(promURL + "/api/v1/query?query=" + url.QueryEscape(`count(up{job="paytest"} == 1) == 3 and on() sum(paytest_side_effects_applied_total) == `+fmt.Sprint(charges)))
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var ans struct {
			Data struct {
				Result []json.RawMessage `json:"result"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
			return err
		}
		if len(ans.Data.Result) == 0 {
			return fmt.Errorf("prometheus has not scraped all %d side effects from all three components yet", charges)
		}
		return nil
	})

	if err := verify.Collect(ctx, verify.Sources{MetricsURLs: s.MetricsURLs(), DatabaseURL: dbURL}, direct); err != nil {
		t.Fatal(err)
	}
	if err := verify.Collect(ctx, verify.Sources{PrometheusURL: promURL, DatabaseURL: dbURL, PrometheusWait: 30 * time.Second}, viaProm); err != nil {
		t.Fatal(err)
	}
	a, err := verify.Verify(ctx, direct, verify.Options{NoHTML: true})
	if err != nil {
		t.Fatal(err)
	}
	bRep, err := verify.Verify(ctx, viaProm, verify.Options{NoHTML: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("direct: %s, %d side effects; prometheus: %s, %d side effects (%s)", a.Verdict, a.SideEffects, bRep.Verdict, bRep.SideEffects, bRep.SideEffectsSource)
	if a.Verdict != verify.VerdictHeld || bRep.Verdict != a.Verdict {
		var sb strings.Builder
		_ = bRep.WriteText(&sb)
		t.Fatalf("verdicts differ or not held: direct %s, prometheus %s\n%s", a.Verdict, bRep.Verdict, sb.String())
	}
	if a.SideEffects != charges || bRep.SideEffects != a.SideEffects || bRep.LedgerEffects != a.LedgerEffects {
		t.Fatalf("figures differ: direct %d/%d, prometheus %d/%d, want %d", a.SideEffects, a.LedgerEffects, bRep.SideEffects, bRep.LedgerEffects, charges)
	}
	for _, c := range a.Checks {
		if other := bRep.Check(c.Name); other == nil || other.Held != c.Held {
			t.Fatalf("check %s: direct held=%v, prometheus %+v", c.Name, c.Held, other)
		}
	}
}
