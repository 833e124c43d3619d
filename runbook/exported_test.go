package runbook_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/promtext"
	"github.com/paytest/paytest/internal/testinfra"
	"github.com/paytest/paytest/runbook"
	"github.com/paytest/paytest/target/stack"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// clientMetrics are exported by the retrying client (the paytest attack
// process), not by the reference stack.
var clientMetrics = []string{
	"paytest_client_attempts_total",
	"paytest_retry_budget_exhausted_total",
}

// TestRunbookMetricsAreExportedByTheStack boots the reference system (charge
// service, relay, consumer as real processes on real Postgres and NATS) and
// checks that every metric the runbook and the alerting rules query is on
// one of their /metrics pages, so no query the person on call runs comes
// back empty because nothing exports it.
func TestRunbookMetricsAreExportedByTheStack(t *testing.T) {
	if testing.Short() {
		t.Skip("boots the reference stack")
	}
	name := strings.ToUpper(testinfra.Name("RB"))
	cfg := stack.Config{
		Binary:      testinfra.Paytest(t),
		DatabaseURL: testinfra.Postgres(t),
		NATSURL:     testinfra.NATS(t),
		Stream:      name,
		DLQStream:   name + "_DLQ",
		Subject:     strings.ToLower(name) + ".charges",
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	s, err := stack.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})

	exported := map[string][]string{} // metric -> components exporting it
	for component, url := range s.MetricsURLs() {
		var names []string
		testinfra.WaitFor(t, 10*time.Second, func() error {
			names, err = scrapeNames(ctx, url)
			return err
		})
		for _, n := range names {
			exported[n] = append(exported[n], component)
		}
	}
	for _, name := range runbook.MetricNames() {
		if slices.Contains(clientMetrics, name) {
			continue
		}
		if len(exported[name]) == 0 {
			t.Errorf("the runbook queries %s, which no component of the running stack exports", name)
		} else {
			t.Logf("%s: exported by %v", name, exported[name])
		}
	}
	// Lag comes from the relay only: the OutboxRelayMissing alert relies on
	// that (absent(paytest_outbox_lag_seconds) means the relay is gone).
	if got := exported["paytest_outbox_lag_seconds"]; !slices.Equal(got, []string{stack.Relay}) {
		t.Errorf("paytest_outbox_lag_seconds exported by %v, the alert rules assume the relay alone", got)
	}
	if got := exported["paytest_outbox_pending"]; !slices.Contains(got, stack.Charge) {
		t.Errorf("paytest_outbox_pending exported by %v, the alert rules need the charge service to export it (it stays up when the relay is down)", got)
	}
}

// scrapeNames returns the metric family names on a /metrics page.
func scrapeNames(ctx context.Context, url string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	page, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	fams, err := promtext.Parse(page)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	var names []string
	for n := range fams {
		names = append(names, n)
	}
	return names, nil
}
