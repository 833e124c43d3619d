package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/rundir"
	"github.com/paytest/paytest/internal/testinfra"
)

// fakeSystem is a real client_golang registry per component served by real
// HTTP servers, and a real Postgres ledger_entries table in the reference
// schema.
type fakeSystem struct {
	consumer, relay *httptest.Server
	effects         *prometheus.CounterVec
	dbURL           string
}

// newFakeSystem counts n-behind side effects on the consumer page (the
// consumer still catching up); the ledger holds all n.
func newFakeSystem(t *testing.T, n int, doubled string, behind int) *fakeSystem {
	t.Helper()
	creg, rreg := prometheus.NewRegistry(), prometheus.NewRegistry()
	effects := prometheus.NewCounterVec(prometheus.CounterOpts{Name: DefaultSideEffectMetric, Help: "ledger effects applied"}, []string{"shard"})
	dups := prometheus.NewCounter(prometheus.CounterOpts{Name: MetricInboxDuplicates, Help: "duplicates"})
	dlq := prometheus.NewCounter(prometheus.CounterOpts{Name: MetricDLQMessages, Help: "dlq"})
	pending := prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricOutboxPending, Help: "pending"})
	lag := prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricOutboxLag, Help: "lag"})
	creg.MustRegister(effects, dups, dlq)
	rreg.MustRegister(pending, lag)
	// Effects split over two series: verify sums them.
	effects.WithLabelValues("a").Add(float64(n / 2))
	effects.WithLabelValues("b").Add(float64(n - n/2 - behind))
	if doubled != "" {
		effects.WithLabelValues("b").Inc()
	}
	fs := &fakeSystem{effects: effects}
	fs.consumer = httptest.NewServer(promhttp.HandlerFor(creg, promhttp.HandlerOpts{}))
	t.Cleanup(fs.consumer.Close)
	fs.relay = httptest.NewServer(promhttp.HandlerFor(rreg, promhttp.HandlerOpts{}))
	t.Cleanup(fs.relay.Close)

	fs.dbURL = testinfra.Postgres(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, fs.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `CREATE TABLE ledger_entries(
		id bigserial PRIMARY KEY, event_id uuid NOT NULL, charge_id text, merchant text, idempotency_key text,
		amount bigint, currency text, sku text, quantity int, applied_at timestamptz DEFAULT clock_timestamp())`)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, `INSERT INTO ledger_entries(event_id, charge_id, merchant, idempotency_key, amount, currency, sku, quantity)
		SELECT gen_random_uuid(), 'ch_'||i, 'demo', 'k-'||i, 1299, 'EUR', 'sku-1', 1 FROM generate_series(0, $1::int - 1) AS i`, n)
	if err != nil {
		t.Fatal(err)
	}
	if doubled != "" {
		_, err = conn.Exec(ctx, `INSERT INTO ledger_entries(event_id, charge_id, merchant, idempotency_key, amount, currency, sku, quantity)
			VALUES (gen_random_uuid(), 'ch_x', 'demo', $1, 1299, 'EUR', 'sku-1', 1)`, doubled)
		if err != nil {
			t.Fatal(err)
		}
	}
	return fs
}

func (fs *fakeSystem) sources() Sources {
	return Sources{
		MetricsURLs: map[string]string{"consumer": fs.consumer.URL + "/metrics", "relay": fs.relay.URL + "/metrics"},
		DatabaseURL: fs.dbURL,
	}
}

// planOnly writes the plan and history of n clean charges, without the
// evidence Collect gathers.
func planOnly(t *testing.T, dir string, n int) {
	t.Helper()
	s := cleanRun(n)
	s.pages, s.ledger, s.faults = nil, nil, []rundir.Fault{}
	s.write(t, dir)
}

func TestCollectThenVerify(t *testing.T) {
	const n = 150
	tests := []struct {
		name        string
		doubled     string
		ledgerQuery string
		verdict     string
		failed      []string
	}{
		{"correct system holds", "", "", VerdictHeld, nil},
		{"a double charge is named", "k-17", "", VerdictViolated, []string{CheckEffectsEqualOps, CheckExactlyOncePerOp}},
		{"two-column ledger query", "k-17", "SELECT idempotency_key, count(*) FROM ledger_entries GROUP BY 1", VerdictViolated, []string{CheckExactlyOncePerOp}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFakeSystem(t, n, tc.doubled, 0)
			dir := t.TempDir()
			planOnly(t, dir, n)
			src := fs.sources()
			src.LedgerQuery = tc.ledgerQuery
			if err := Collect(context.Background(), src, dir); err != nil {
				t.Fatal(err)
			}
			// The pages are saved verbatim.
			b, err := os.ReadFile(filepath.Join(dir, rundir.MetricsDir, "consumer.prom"))
			if err != nil || !strings.Contains(string(b), DefaultSideEffectMetric+`{shard="a"}`) {
				t.Fatalf("consumer.prom = %q, %v", b, err)
			}
			var rows int
			if err := rundir.ReadFile(filepath.Join(dir, rundir.LedgerFile), func(rundir.LedgerRow) error { rows++; return nil }); err != nil || rows != n {
				t.Fatalf("ledger.jsonl has %d rows (%v); want %d", rows, err, n)
			}
			rep, err := Verify(context.Background(), dir, Options{NoHTML: true})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Verdict != tc.verdict {
				t.Fatalf("verdict %s; want %s\n%+v", rep.Verdict, tc.verdict, rep.Checks)
			}
			for _, name := range tc.failed {
				c := rep.Check(name)
				if c.Status != StatusFailed {
					t.Errorf("%s = %s (%s); want failed", name, c.Status, c.Figure)
				}
			}
			if tc.doubled != "" {
				c := rep.Check(CheckExactlyOncePerOp)
				if len(c.Counterexamples) != 1 || c.Counterexamples[0].Key != tc.doubled || *c.Counterexamples[0].LedgerEffects != 2 {
					t.Errorf("counterexamples %+v; want %s with 2 ledger effects", c.Counterexamples, tc.doubled)
				}
			}
			wantSide := n
			if tc.doubled != "" {
				wantSide = n + 1
			}
			if rep.SideEffects != wantSide {
				t.Errorf("side effects %d; want %d (summed over both series)", rep.SideEffects, wantSide)
			}
			var rec rundir.Collected
			b, _ = os.ReadFile(filepath.Join(dir, rundir.MetricsDir, rundir.SourcesFile))
			if err := json.Unmarshal(b, &rec); err != nil || len(rec.Pages) != 2 || rec.Database == "" {
				t.Errorf("sources.json = %s (%v)", b, err)
			}
		})
	}
}

func TestCollectFailuresAreInconclusive(t *testing.T) {
	fs := newFakeSystem(t, 10, "", 0)
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "<html><body>not metrics</body></html>\n{{{")
	}))
	t.Cleanup(html.Close)
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	t.Cleanup(broken.Close)
	tests := []struct {
		name   string
		src    Sources
		naming string // the error must name what and where
	}{
		{"nothing to collect", Sources{}, "no evidence"},
		{"unreachable page", Sources{MetricsURLs: map[string]string{"consumer": closedURL + "/metrics"}}, "consumer at " + closedURL},
		{"HTTP 500", Sources{MetricsURLs: map[string]string{"relay": broken.URL}}, "500"},
		{"not a Prometheus page", Sources{MetricsURLs: map[string]string{"target": html.URL}}, "not a Prometheus text page"},
		{"side-effect metric on no page", Sources{MetricsURLs: map[string]string{"relay": fs.relay.URL}}, DefaultSideEffectMetric + " is on none of the pages"},
		{"custom metric absent", Sources{MetricsURLs: map[string]string{"consumer": fs.consumer.URL}, SideEffectMetric: "shop_effects_total"}, "shop_effects_total"},
		{"bad page name", Sources{MetricsURLs: map[string]string{"../x": fs.consumer.URL}}, "page name"},
		{"database down", Sources{DatabaseURL: "postgres://postgres@127.0.0.1:1/x?connect_timeout=2"}, "ledger at postgres://postgres@127.0.0.1:1/x"},
		{"ledger query fails", Sources{DatabaseURL: fs.dbURL, LedgerQuery: "SELECT nope FROM nowhere"}, "nowhere"},
		{"ledger query shape", Sources{DatabaseURL: fs.dbURL, LedgerQuery: "SELECT 1, 2, 3, 4, 5"}, "5 columns"},
		{"ledger amount not a number", Sources{DatabaseURL: fs.dbURL, LedgerQuery: "SELECT 'm', 'k', 'lots', 1"}, "amount column"},
		{"events query shape", Sources{DatabaseURL: fs.dbURL, LedgerQuery: "SELECT 'k', 1", EventsQuery: "SELECT 'e', 'm', 2"}, "events query returns 3 columns"},
		{"events applied not a number", Sources{DatabaseURL: fs.dbURL, LedgerQuery: "SELECT 'k', 1", EventsQuery: "SELECT 'e', 'x'"}, "applied column"},
		{"ledger effects not a number", Sources{DatabaseURL: fs.dbURL, LedgerQuery: "SELECT 'k', 'many'"}, "effects column"},
		{"prometheus unreachable", Sources{PrometheusURL: closedURL}, "prometheus at " + closedURL},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Collect(context.Background(), tc.src, t.TempDir())
			if apperr.Code(err) != apperr.EINCONCLUSIVE {
				t.Fatalf("err = %v; want EINCONCLUSIVE", err)
			}
			if !strings.Contains(err.Error(), tc.naming) {
				t.Fatalf("err = %v; want it to name %q", err, tc.naming)
			}
		})
	}
}

func TestCollectRedactsPasswords(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:secret@h/db":       "postgres://u:xxxxx@h/db",
		"host=h user=u password=secret":  "host=h user=u password=xxxxx",
		"http://127.0.0.1:9090/metrics":  "http://127.0.0.1:9090/metrics",
		"host=h password='a b' dbname=x": "host=h password=xxxxx dbname=x",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q; want %q", in, got, want)
		}
	}
}

// TestCollectKeepsSecretsOfFailedURLsOutOfTheRunDirectory: an unreachable
// page's error quotes its URL; a token in its query reaches neither
// sources.json nor the returned error.
func TestCollectKeepsSecretsOfFailedURLsOutOfTheRunDirectory(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there
	dir := t.TempDir()
	err = Collect(context.Background(), Sources{MetricsURLs: map[string]string{"target": "http://" + addr + "/metrics?token=s3cret"}}, dir)
	if err == nil || apperr.Code(err) != apperr.EINCONCLUSIVE {
		t.Fatalf("Collect = %v; want an inconclusive error", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("the error carries the secret: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, rundir.MetricsDir, rundir.SourcesFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "errors") || strings.Contains(string(b), "s3cret") {
		t.Fatalf("sources.json: %s", b)
	}
}

// TestCollectThroughPrometheus runs Debian's prometheus against a promhttp
// server and checks verify gets the same figure through PromQL as from the
// page itself.
func TestCollectThroughPrometheus(t *testing.T) {
	const n = 150
	fs := newFakeSystem(t, n, "", 5) // Prometheus first sees the consumer 5 behind
	promURL := testinfra.Prometheus(t, fs.consumer.URL, fs.relay.URL)
	testinfra.WaitFor(t, 45*time.Second, func() error {
		resp, err := http.Get(promURL + "/api/v1/query?query=" + "sum(" + DefaultSideEffectMetric + ")")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(b), `"`+strconv.Itoa(n-5)+`"`) {
			return fmt.Errorf("not scraped yet: %s", b)
		}
		// Wait for the relay's gauges too.
		resp2, err := http.Get(promURL + "/api/v1/query?query=" + MetricOutboxPending)
		if err != nil {
			return err
		}
		defer resp2.Body.Close()
		b2, _ := io.ReadAll(resp2.Body)
		if !strings.Contains(string(b2), MetricOutboxPending) {
			return fmt.Errorf("relay not scraped yet: %s", b2)
		}
		return nil
	})

	// The consumer catches up after Prometheus's last scrape: Collect
	// waits for a fresh scrape and gets the final figure.
	fs.effects.WithLabelValues("b").Add(5)
	direct, viaProm := t.TempDir(), t.TempDir()
	planOnly(t, direct, n)
	planOnly(t, viaProm, n)
	if err := Collect(context.Background(), fs.sources(), direct); err != nil {
		t.Fatal(err)
	}
	if err := Collect(context.Background(), Sources{PrometheusURL: promURL, DatabaseURL: fs.dbURL, PrometheusWait: 20 * time.Second}, viaProm); err != nil {
		t.Fatal(err)
	}
	a, err := Verify(context.Background(), direct, Options{NoHTML: true})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Verify(context.Background(), viaProm, Options{NoHTML: true})
	if err != nil {
		t.Fatal(err)
	}
	if a.SideEffects != n || b.SideEffects != a.SideEffects || b.SideEffectsSource != "prometheus" {
		t.Fatalf("side effects direct %d (%s), via Prometheus %d (%s); want %d from both", a.SideEffects, a.SideEffectsSource, b.SideEffects, b.SideEffectsSource, n)
	}
	if c := b.Check(CheckOutboxDrained); a.Verdict != b.Verdict || c == nil || c.Status != StatusHeld {
		t.Fatalf("verdict direct %s, via Prometheus %s (outbox %+v)", a.Verdict, b.Verdict, b.Check(CheckOutboxDrained))
	}
	// A query for a metric Prometheus does not have is inconclusive.
	err = Collect(context.Background(), Sources{PrometheusURL: promURL, SideEffectQuery: "sum(shop_effects_total)"}, t.TempDir())
	if apperr.Code(err) != apperr.EINCONCLUSIVE || !strings.Contains(err.Error(), "returned no series") {
		t.Fatalf("err = %v; want EINCONCLUSIVE naming the empty query", err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestPartialCollectionIsNeverHeld: a page that could not be scraped makes
// the verdict inconclusive even when the rest holds, and evidence from an
// earlier collection does not stand in for what failed.
func TestPartialCollectionIsNeverHeld(t *testing.T) {
	const n = 150
	fs := newFakeSystem(t, n, "", 0)
	dir := t.TempDir()
	planOnly(t, dir, n)
	if err := Collect(context.Background(), fs.sources(), dir); err != nil {
		t.Fatal(err)
	}
	if rep, err := Verify(context.Background(), dir, Options{NoHTML: true}); err != nil || rep.Verdict != VerdictHeld {
		t.Fatalf("first collection: %v, %+v", err, rep)
	}
	src := fs.sources()
	src.MetricsURLs["relay"] = "http://" + freeAddr(t) + "/metrics"
	src.DatabaseURL = "postgres://postgres@127.0.0.1:1/x?connect_timeout=2"
	if err := Collect(context.Background(), src, dir); apperr.Code(err) != apperr.EINCONCLUSIVE {
		t.Fatalf("err = %v; want EINCONCLUSIVE", err)
	}
	for _, stale := range []string{filepath.Join(dir, rundir.LedgerFile), filepath.Join(dir, rundir.MetricsDir, "relay.prom")} {
		if _, err := os.Stat(stale); err == nil {
			t.Errorf("%s from the earlier collection is still there", stale)
		}
	}
	rep, err := Verify(context.Background(), dir, Options{NoHTML: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Verdict != VerdictInconclusive || len(rep.EvidenceErrors) != 2 || apperr.Code(rep.Err()) != apperr.EINCONCLUSIVE {
		t.Fatalf("verdict %s, evidence errors %q; want inconclusive naming relay and ledger", rep.Verdict, rep.EvidenceErrors)
	}
}

// TestCollectEventsTellRepeatsFromSecondCharges runs the bundled queries
// (per amount, and the events applied more than once) against a real
// ledger_entries table: a repeated event is the relay check's failure and
// exactly-once-per-op names the consumer; a second charge (a new event) is
// exactly-once-per-op's alone.
func TestCollectEventsTellRepeatsFromSecondCharges(t *testing.T) {
	const n = 150
	tests := []struct {
		name         string
		sql          string // a second row for key k-17
		relay        string
		exactlyOnceW string
	}{
		{"an event applied twice", `INSERT INTO ledger_entries(event_id, charge_id, merchant, idempotency_key, amount, currency, sku, quantity)
			SELECT event_id, charge_id, merchant, idempotency_key, amount, currency, sku, quantity FROM ledger_entries WHERE idempotency_key = 'k-17'`,
			StatusFailed, "the consumer applied a repeated event"},
		{"a second charge", `INSERT INTO ledger_entries(event_id, charge_id, merchant, idempotency_key, amount, currency, sku, quantity)
			VALUES (gen_random_uuid(), 'ch_x', 'demo', 'k-17', 1299, 'EUR', 'sku-1', 1)`,
			StatusHeld, "the charge service made more than one charge"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := newFakeSystem(t, n, "", 0)
			conn, err := pgx.Connect(context.Background(), fs.dbURL)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(context.Background(), tc.sql); err != nil {
				t.Fatal(err)
			}
			conn.Close(context.Background())
			dir := t.TempDir()
			s := cleanRun(n)
			s.pages, s.ledger = nil, nil
			s.faults = []rundir.Fault{{Time: t0, Fault: "kill", Action: "inject", Target: "relay"}}
			s.write(t, dir)
			src := fs.sources()
			src.LedgerQuery = LedgerAmountQuery
			src.EventsQuery = "SELECT event_id::text, merchant, idempotency_key, count(*) FROM ledger_entries GROUP BY 1, 2, 3 HAVING count(*) > 1"
			if err := Collect(context.Background(), src, dir); err != nil {
				t.Fatal(err)
			}
			rep, err := Verify(context.Background(), dir, Options{NoHTML: true})
			if err != nil {
				t.Fatal(err)
			}
			if c := rep.Check(CheckRelayCrashDeduped); c.Status != tc.relay {
				t.Errorf("relay-crash-deduped %s (%s: %s); want %s", c.Status, c.Figure, c.Detail, tc.relay)
			}
			c := rep.Check(CheckExactlyOncePerOp)
			if c.Status != StatusFailed || c.CounterexamplesTotal != 1 || !strings.Contains(c.Counterexamples[0].Why, tc.exactlyOnceW) {
				t.Errorf("exactly-once-per-op %s %+v; want op 17 failed with %q", c.Status, c.Counterexamples, tc.exactlyOnceW)
			}
			if rep.LedgerMatch != "merchant and key, amount" {
				t.Errorf("ledger match %q", rep.LedgerMatch)
			}
		})
	}
}

// TestCollectThroughPrometheusSumsAcrossARestart: a real Prometheus scrapes
// a counter that starts again at 0 (its process restarted); Verify sums
// the range Collect saved across the drop, as it does with the timeline,
// instead of reading the restarted process's count alone.
func TestCollectThroughPrometheusSumsAcrossARestart(t *testing.T) {
	const n = 150
	fs := newFakeSystem(t, n, "", 0) // its ledger holds all n
	began := time.Now().UTC()
	var current atomic.Pointer[prometheus.Registry]
	process := func(count float64) {
		reg := prometheus.NewRegistry()
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: "shop_charges_total", Help: "charges"})
		reg.MustRegister(c)
		c.Add(count)
		current.Store(reg)
	}
	process(110)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		promhttp.HandlerFor(current.Load(), promhttp.HandlerOpts{}).ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	promURL := testinfra.Prometheus(t, srv.URL)
	sees := func(v string) func() error {
		return func() error {
			resp, err := http.Get(promURL + "/api/v1/query?query=shop_charges_total")
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if !strings.Contains(string(b), `"`+v+`"`) {
				return fmt.Errorf("not scraped yet: %s", b)
			}
			return nil
		}
	}
	testinfra.WaitFor(t, 45*time.Second, sees("110"))
	process(40) // the restarted process has counted 40 more
	testinfra.WaitFor(t, 45*time.Second, sees("40"))

	dir := t.TempDir()
	planOnly(t, dir, n)
	if err := rundir.WriteRun(filepath.Join(dir, rundir.RunFile), rundir.Run{Seed: 1, Target: srv.URL, Ops: n, Started: began}); err != nil {
		t.Fatal(err)
	}
	src := Sources{PrometheusURL: promURL, SideEffectMetric: "shop_charges_total", DatabaseURL: fs.dbURL, PrometheusWait: 20 * time.Second}
	if err := Collect(context.Background(), src, dir); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(context.Background(), dir, Options{NoHTML: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.SideEffects != n || rep.SideEffectsSource != "prometheus" || len(rep.CounterResets) != 1 ||
		rep.CounterResets[0].Before != 110 || rep.CounterResets[0].After != 40 {
		t.Fatalf("side effects %d (%s), resets %+v; want %d summed across the one reset 110 -> 40", rep.SideEffects, rep.SideEffectsSource, rep.CounterResets, n)
	}
	if c := rep.Check(CheckEffectsEqualOps); c.Status != StatusHeld || c.Figure != "150 of 150 (ledger 150 of 150)" {
		t.Fatalf("%s %s %q: %s", c.Name, c.Status, c.Figure, c.Detail)
	}
}
