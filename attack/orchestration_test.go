package attack

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paytest/paytest/attack/fault"
	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/rundir"
	"github.com/paytest/paytest/internal/testinfra"
	"github.com/paytest/paytest/profiles"
	"github.com/paytest/paytest/verify"
)

// TestPlanFaults: every fault of a profile either acts on the system under
// attack (adapted to it) or is refused with EUSAGE naming the fault and
// the profile, and --skip-fault and --kill-at change the schedule.
func TestPlanFaults(t *testing.T) {
	prof := func(name string, specs ...rundir.FaultSpec) profiles.Profile {
		return profiles.Profile{Name: name, Faults: specs}
	}
	target := "http://127.0.0.1:1/pay"
	tests := []struct {
		name string
		cfg  Config
		want []rundir.FaultSpec // nil with err
		err  []string           // substrings of the usage error
	}{
		{"target: broker-cut refused, naming it and the profile",
			Config{Target: TargetConfig{URL: target, KillCmd: "true"}, Profile: mustProfile(t, "default")}, nil,
			[]string{"profile default", "broker-cut", "--skip-fault broker-cut", "lost-response"}},
		{"target: redis-loss refused", Config{Target: TargetConfig{URL: target}, Profile: mustProfile(t, "redis-loss")}, nil,
			[]string{"profile redis-loss", "redis-loss", "cannot fire against --target"}},
		{"target: poison refused", Config{Target: TargetConfig{URL: target}, Profile: mustProfile(t, "poison")}, nil,
			[]string{"profile poison", "poison"}},
		{"target: backlog's broker-cut refused", Config{Target: TargetConfig{URL: target}, Profile: mustProfile(t, "backlog")}, nil,
			[]string{"profile backlog", "broker-cut"}},
		{"target: kill without --kill-cmd refused", Config{Target: TargetConfig{URL: target}, Profile: mustProfile(t, "relay-crash")}, nil,
			[]string{"profile relay-crash", "--kill-cmd"}},
		{"target: a relay crash point becomes a kill of target",
			Config{Target: TargetConfig{URL: target, KillCmd: "true"}, Profile: mustProfile(t, "relay-crash")},
			[]rundir.FaultSpec{{Fault: rundir.FaultKill, Target: TargetComponent, At: 0.3, Duration: plainKillDowntime, Restart: []string{"--publish-dedup=false"}}}, nil},
		{"target: outage and latency act on the proxy in front of it",
			Config{Target: TargetConfig{URL: target}, Profile: prof("p", rundir.FaultSpec{Fault: rundir.FaultOutage, At: 0.3, Duration: time.Second}, rundir.FaultSpec{Fault: rundir.FaultLatency, Target: "target", Latency: time.Millisecond})},
			[]rundir.FaultSpec{{Fault: rundir.FaultOutage, Target: fault.ProxyCharge, At: 0.3, Duration: time.Second}, {Fault: rundir.FaultLatency, Target: fault.ProxyCharge, Latency: time.Millisecond}}, nil},
		{"target: latency on another proxy refused",
			Config{Target: TargetConfig{URL: target}, Profile: prof("p", rundir.FaultSpec{Fault: rundir.FaultLatency, Target: "nats"})}, nil,
			[]string{"profile p", "latency nats"}},
		{"target: --skip-fault leaves the default profile's broker-cut and kill out",
			Config{Target: TargetConfig{URL: target}, Profile: mustProfile(t, "default"), Faults: FaultConfig{Skip: []string{"broker-cut", "kill"}}},
			[]rundir.FaultSpec{{Fault: rundir.FaultEatResponse, At: 0.1, Until: 0.6, Toxicity: 0.3}}, nil},
		{"--skip-fault of an unknown fault", Config{Target: TargetConfig{URL: target}, Faults: FaultConfig{Skip: []string{"meteor"}}}, nil,
			[]string{"--skip-fault \"meteor\"", "eat-response"}},
		{"target: --kill-at kills target at each fraction",
			Config{Target: TargetConfig{URL: target, KillCmd: "true"}, Faults: FaultConfig{KillAt: []float64{0.3, 0.7}}},
			[]rundir.FaultSpec{{Fault: rundir.FaultKill, Target: TargetComponent, At: 0.3, Duration: plainKillDowntime}, {Fault: rundir.FaultKill, Target: TargetComponent, At: 0.7, Duration: plainKillDowntime}}, nil},
		{"target: --kill-at without --kill-cmd", Config{Target: TargetConfig{URL: target}, Faults: FaultConfig{KillAt: []float64{0.5}}}, nil, []string{"--kill-at needs --kill-cmd"}},
		{"--kill-at out of range", Config{Faults: FaultConfig{KillAt: []float64{1.5}}}, nil, []string{"--kill-at 1.5"}},
		{"bundled: --kill-at kills the charge service", Config{Faults: FaultConfig{KillAt: []float64{0.5}}},
			[]rundir.FaultSpec{{Fault: rundir.FaultKill, Target: "charge", At: 0.5, Duration: plainKillDowntime}}, nil},
		{"bundled: kill with no target", Config{Profile: prof("p", rundir.FaultSpec{Fault: rundir.FaultKill, At: 0.5})}, nil,
			[]string{"profile p", "kill needs a target component", "charge, relay, consumer"}},
		{"bundled: kill of database", Config{Profile: prof("p", rundir.FaultSpec{Fault: rundir.FaultKill, Target: "database", At: 0.5})}, nil,
			[]string{"profile p", `not "database"`}},
		{"bundled: unknown crash point", Config{Profile: prof("p", rundir.FaultSpec{Fault: rundir.FaultKill, Target: "relay", Crash: "after-lunch", At: 0.5})}, nil,
			[]string{"profile p", `relay has no crash point "after-lunch"`, "after-publish"}},
		{"bundled: a crash point of another component", Config{Profile: prof("p", rundir.FaultSpec{Fault: rundir.FaultKill, Target: "charge", Crash: "after-publish", At: 0.5})}, nil,
			[]string{`charge has no crash point "after-publish"`, "after-claim"}},
		{"bundled: latency on an unknown proxy", Config{Profile: prof("p", rundir.FaultSpec{Fault: rundir.FaultLatency, Target: "redis", Latency: time.Millisecond})}, nil,
			[]string{"profile p", `no proxy "redis"`, "charge, nats, postgres"}},
		{"bundled: a crash point on a fault that is not a kill", Config{Profile: prof("p", rundir.FaultSpec{Fault: rundir.FaultBrokerCut, Crash: "after-publish"})}, nil,
			[]string{"only kill takes a crash point"}},
		{"bundled: the default profile, its relay restarted with its flags", Config{Profile: mustProfile(t, "default")}, defaultRestartingWithItsFlags(t), nil},
		{"bundled: a killed component keeps its --consumer-arg, the kill's restart flags last",
			Config{
				Profile: profiles.Profile{Name: "p", Consumer: []string{"--ack-wait=2s"}, Faults: []rundir.FaultSpec{
					{Fault: rundir.FaultKill, Target: "consumer", Crash: "after-apply-before-ack", At: 0.5, Restart: []string{"--max-inflight=8"}}}},
			},
			[]rundir.FaultSpec{{Fault: rundir.FaultKill, Target: "consumer", Crash: "after-apply-before-ack", At: 0.5, Restart: []string{"--ack-wait=2s", "--max-inflight=8"}}}, nil},
		{"bundled: --kill-at restarts the charge service with its flags", Config{Faults: FaultConfig{KillAt: []float64{0.5}}, Profile: profiles.Profile{Name: "p", Charge: []string{"--processing-delay=20ms"}}},
			[]rundir.FaultSpec{{Fault: rundir.FaultKill, Target: "charge", At: 0.5, Duration: plainKillDowntime, Restart: []string{"--processing-delay=20ms"}}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := planFaults(&tt.cfg)
			if tt.err != nil {
				if apperr.Code(err) != apperr.EUSAGE {
					t.Fatalf("planFaults = %v, %v; want a usage error", got, err)
				}
				for _, w := range tt.err {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("planFaults =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// defaultRestartingWithItsFlags is the default profile's schedule with the
// killed relay restarted with the relay's own flags before the kill's.
func defaultRestartingWithItsFlags(t *testing.T) []rundir.FaultSpec {
	p := mustProfile(t, "default")
	out := slices.Clone(p.Faults)
	for i := range out {
		if out[i].Fault == rundir.FaultKill {
			out[i].Restart = append(slices.Clone(p.Relay), out[i].Restart...)
		}
	}
	return out
}

func mustProfile(t *testing.T, name string) profiles.Profile {
	t.Helper()
	p, err := profiles.Load(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestAFaultPaytestCannotFireStopsTheRunBeforeAnythingStarts: Run refuses
// such a profile (and bad endpoint descriptions) with a usage error before
// it creates the run directory or starts any server.
func TestAFaultPaytestCannotFireStopsTheRunBeforeAnythingStarts(t *testing.T) {
	srv := httptest.NewServer(&shop{idempotent: true, seen: map[string]string{}})
	t.Cleanup(srv.Close)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"broker-cut against a target", Config{Profile: mustProfile(t, "default"), Target: TargetConfig{URL: srv.URL, KillCmd: "true"}, Evidence: EvidenceConfig{MetricsURL: srv.URL + "/metrics"}}, "broker-cut"},
		{"kill of database", Config{Profile: profiles.Profile{Name: "p", Faults: []rundir.FaultSpec{{Fault: rundir.FaultKill, Target: "database", At: 0.5}}}}, "database"},
		{"bad --id-field", Config{Target: TargetConfig{URL: srv.URL}, Evidence: EvidenceConfig{MetricsURL: srv.URL + "/metrics"}, Client: ClientConfig{IDField: "id"}}, "--id-field"},
		{"bad --reuse-status", Config{Target: TargetConfig{URL: srv.URL}, Evidence: EvidenceConfig{MetricsURL: srv.URL + "/metrics"}, Client: ClientConfig{ReuseStatuses: []int{200}}}, "--reuse-status 200"},
		{"bad --replay-header", Config{Target: TargetConfig{URL: srv.URL}, Evidence: EvidenceConfig{MetricsURL: srv.URL + "/metrics"}, Client: ClientConfig{ReplayHeader: "Re played=1"}}, "--replay-header"},
		{"--replay-header on the bundled system", Config{Client: ClientConfig{ReplayHeader: "X-Replay"}}, "only with --target"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Out = filepath.Join(t.TempDir(), "run")
			_, err := Run(context.Background(), tt.cfg)
			if apperr.Code(err) != apperr.EUSAGE || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v; want a usage error mentioning %q", err, tt.want)
			}
			if _, err := os.Stat(tt.cfg.Out); !os.IsNotExist(err) {
				t.Fatalf("the run directory was created before the refusal: %v", err)
			}
		})
	}
}

// stuckShop is an idempotent endpoint with a Postgres ledger that "crashes"
// in the middle of the first request of some keys (the connection is
// dropped after the key was claimed, before the charge): from then on the
// key stays in progress and every try gets 409, as a lease that never
// expires would.
type stuckShop struct {
	ledger *pgxpool.Pool
	mu     sync.Mutex
	done   map[string]string // key -> response body
	stuck  map[string]bool
}

func isStuckKey(key string) bool {
	h := fnv.New32a()
	h.Write([]byte(key))
	return h.Sum32()%8 == 0
}

func (s *stuckShop) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, err := io.ReadAll(r.Body); err != nil {
		return
	}
	key := r.Header.Get("Idempotency-Key")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stuck[key] {
		w.WriteHeader(http.StatusConflict)
		fmt.Fprint(w, `{"error":"a request with this key is in progress"}`)
		return
	}
	if body, ok := s.done[key]; ok {
		w.Header().Set("Idempotent-Replayed", "true")
		fmt.Fprint(w, body)
		return
	}
	if isStuckKey(key) {
		s.stuck[key] = true
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			conn.Close()
		}
		return
	}
	if _, err := s.ledger.Exec(r.Context(), `INSERT INTO stuck_ledger (idem_key) VALUES ($1)`, key); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	s.done[key] = fmt.Sprintf(`{"id":"ch_%s"}`, key)
	fmt.Fprint(w, s.done[key])
}

// TestKeysStuckInFlightStillGetAReport: an endpoint that answers 409
// forever for some keys used to make attack spend the whole reconcile
// timeout and exit 3 with no report. Now the run goes on at the reconcile
// deadline: report.json is written, no-key-stuck-in-flight fails naming
// exactly the endpoint's stuck keys, the verdict is violated (exit 1) and
// every other check is computed from the ledger collected.
func TestKeysStuckInFlightStillGetAReport(t *testing.T) {
	pool, dbURL := shopLedger(t, "stuck_ledger")
	h := &stuckShop{ledger: pool, done: map[string]string{}, stuck: map[string]bool{}}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	began := time.Now()
	res := run(t, Config{
		Profile: profiles.Profile{Name: "stuck"}, Out: t.TempDir(),
		Plan:     PlanConfig{Ops: 120, Concurrency: 8, DuplicateRate: 0.2, RaceRate: 0.05, Seed: 31},
		Target:   TargetConfig{URL: srv.URL},
		Evidence: EvidenceConfig{DatabaseURL: dbURL, LedgerQuery: `SELECT idem_key, count(*) FROM stuck_ledger GROUP BY 1`, ReconcileTimeout: 2 * time.Second, DrainTimeout: 5 * time.Second},
	})
	took := time.Since(began)
	h.mu.Lock()
	var want []string
	for k := range h.stuck {
		want = append(want, k)
	}
	h.mu.Unlock()
	sort.Strings(want)
	if len(want) == 0 {
		t.Fatal("no key got stuck: the test proves nothing")
	}
	rep := res.Report
	var b strings.Builder
	_ = rep.WriteText(&b)
	if rep.Verdict != verify.VerdictViolated || rep.ExitCode != 1 {
		t.Fatalf("verdict %s (exit %d), want violated (1):\n%s", rep.Verdict, rep.ExitCode, b.String())
	}
	c := rep.Check(verify.CheckNoKeyStuck)
	if c == nil || c.Status != verify.StatusFailed || c.CounterexamplesTotal != len(want) {
		t.Fatalf("%s: %+v; want failed with %d keys:\n%s", verify.CheckNoKeyStuck, c, len(want), b.String())
	}
	var got []string
	for _, cx := range c.Counterexamples {
		got = append(got, cx.Key)
	}
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Fatalf("stuck keys named %v, the endpoint's are %v", got, want)
	}
	// The other checks are computed from the ledger: one row per key
	// charged, none for the stuck ones, so exactly-once holds.
	if c := rep.Check(verify.CheckExactlyOncePerOp); c == nil || c.Status != verify.StatusHeld {
		t.Fatalf("%s: %+v:\n%s", verify.CheckExactlyOncePerOp, c, b.String())
	}
	if rep.LedgerEffects != 120-len(want) {
		t.Fatalf("ledger effects %d, want %d", rep.LedgerEffects, 120-len(want))
	}
	var onDisk map[string]any
	raw, err := os.ReadFile(filepath.Join(res.Dir, rundir.ReportFile))
	if err != nil || json.Unmarshal(raw, &onDisk) != nil {
		t.Fatalf("report.json: %v", err)
	}
	if _, err := os.Stat(filepath.Join(res.Dir, rundir.HTMLFile)); err != nil {
		t.Fatal(err)
	}
	// After the deadline each stuck key's op got one last look, and the
	// transcript says what it answered.
	tr, err := os.ReadFile(filepath.Join(res.Dir, rundir.TranscriptFile))
	if err != nil {
		t.Fatal(err)
	}
	look := fmt.Sprintf("last look (one attempt each, outside the retry budget) at %d ops: %d × 409 conflict\n", len(want), len(want))
	if !strings.Contains(string(tr), look) {
		t.Fatalf("the transcript does not say %q:\n%s", look, tr)
	}
	if took > 30*time.Second {
		t.Fatalf("the run took %s with a 2 s reconcile deadline", took)
	}
}

// TestKillAtFiresAtTheFractions: --kill-at 0.3,0.7 against a team's
// endpoint runs --kill-cmd and --restart-cmd at 30% and 70% of the run,
// each as a kill of "target", without a profile.
func TestKillAtFiresAtTheFractions(t *testing.T) {
	// Slow enough (100 ops at 4 x 25/s) that the ops done when a kill
	// fires are not overtaken by much while its command starts: a shell
	// and curl, 100-360 ms on a loaded machine.
	h := &shop{idempotent: true, seen: map[string]string{}, delay: 40 * time.Millisecond}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	log := filepath.Join(t.TempDir(), "kills.log")
	// The kill command records how many charges the endpoint had made.
	res := run(t, Config{
		Profile: profiles.Profile{Name: "none"}, Out: t.TempDir(),
		Plan: PlanConfig{Ops: 100, Concurrency: 4, Seed: 8},
		Target: TargetConfig{
			URL:        srv.URL + "/api/pay",
			KillCmd:    "echo kill $PAYTEST_COMPONENT $(curl -s " + srv.URL + "/metrics | tail -1 | cut -d' ' -f2) >> " + log,
			RestartCmd: "echo restart $PAYTEST_COMPONENT >> " + log,
		},
		Client:   ClientConfig{Header: http.Header{"X-Shop": {"yes"}}},
		Evidence: EvidenceConfig{MetricsURL: srv.URL + "/metrics", SideEffectMetric: "shop_charges_total", DrainTimeout: 5 * time.Second},
		Faults:   FaultConfig{KillAt: []float64{0.3, 0.7}},
	})
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	// The endpoint here does not die, so the load outruns the 500 ms
	// downtime and the two restarts may both follow the second kill.
	var kl, rl []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if strings.HasPrefix(l, "kill ") {
			kl = append(kl, l)
		} else {
			rl = append(rl, l)
		}
	}
	if len(kl) != 2 || !slices.Equal(rl, []string{"restart target", "restart target"}) {
		t.Fatalf("commands ran: %q", b)
	}
	var at []int
	for _, l := range kl {
		var n int
		if _, err := fmt.Sscanf(l, "kill target %d", &n); err != nil {
			t.Fatalf("kill line %q: %v", l, err)
		}
		at = append(at, n)
	}
	// Each kill fires once that share of the ops is done; the endpoint
	// has charged as many and more: the senders' in-flight, and what they
	// charge while the command starts (18 more is 180 ms at 100/s).
	t.Logf("kills fired at %v charges", at)
	if at[0] < 30 || at[0] > 48 || at[1] < 70 || at[1] > 88 {
		t.Fatalf("kills fired at %v charges, want about 30 and 70", at)
	}
	var kills int
	for _, f := range faultRecords(t, res.Dir) {
		if f.Fault == rundir.FaultKill && f.Action == "inject" {
			kills++
			if f.Target != TargetComponent {
				t.Errorf("faults.jsonl kill of %q", f.Target)
			}
		}
	}
	if kills != 2 || res.Report.Faults[rundir.FaultKill] != 2 || res.Report.Verdict != verify.VerdictHeld {
		t.Fatalf("%d kills in faults.jsonl, report %v, verdict %s", kills, res.Report.Faults, res.Report.Verdict)
	}
}

// TestOutageAgainstATargetActs: an outage against a team's endpoint is the
// proxy in front of it refusing connections for the window: it is
// recorded, requests fail during it, and an idempotent endpoint still
// holds (every op charged exactly once after the retries and the
// reconciliation).
func TestOutageAgainstATargetActs(t *testing.T) {
	h := &shop{idempotent: true, seen: map[string]string{}}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	prof := profiles.Profile{Name: "target-outage", Faults: []rundir.FaultSpec{{Fault: rundir.FaultOutage, At: 0.3, Duration: time.Second}}}
	res := run(t, Config{
		Profile: prof, Out: t.TempDir(),
		Plan:     PlanConfig{Ops: 200, Concurrency: 8, DuplicateRate: 0.1, Seed: 12},
		Target:   TargetConfig{URL: srv.URL + "/api/pay"},
		Client:   ClientConfig{Header: http.Header{"X-Shop": {"yes"}}},
		Evidence: EvidenceConfig{MetricsURL: srv.URL + "/metrics", SideEffectMetric: "shop_charges_total", DrainTimeout: 5 * time.Second},
	})
	var start, stop time.Time
	for _, f := range faultRecords(t, res.Dir) {
		if f.Fault == rundir.FaultOutage && f.Target == fault.ProxyCharge {
			switch f.Action {
			case "start":
				start = f.Time
			case "stop":
				stop = f.Time
			}
		}
	}
	if start.IsZero() || stop.Before(start.Add(900*time.Millisecond)) {
		t.Fatalf("outage window %s .. %s in faults.jsonl", start, stop)
	}
	failedIn := 0
	if err := rundir.ReadFile(filepath.Join(res.Dir, rundir.HistoryFile), func(a rundir.Attempt) error {
		if a.Outcome == rundir.OutcomeNetwork && !a.End.Before(start) && !a.Start.After(stop) {
			failedIn++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if failedIn == 0 {
		t.Fatal("no request failed during the outage window")
	}
	rep := res.Report
	if rep.Verdict != verify.VerdictHeld || rep.Faults[rundir.FaultOutage] != 1 || rep.SideEffects != 200 {
		var b strings.Builder
		_ = rep.WriteText(&b)
		t.Fatalf("verdict %s, faults %v, side effects %d:\n%s", rep.Verdict, rep.Faults, rep.SideEffects, b.String())
	}
	h.mu.Lock()
	charges := h.charges
	h.mu.Unlock()
	if charges != 200 {
		t.Fatalf("the endpoint made %d charges, want 200", charges)
	}
	t.Logf("%d attempts failed during the %s outage", failedIn, stop.Sub(start).Round(time.Millisecond))
}

// TestTheDrainWaitsForARedelivery: the consumer dies after applying an
// event and before acking it, and the broker redelivers it only after the
// ack wait. With the inbox disabled, the redelivery is applied again: the
// drain must wait for the broker to have nothing unacknowledged, so that
// the double apply is inside the evidence and caught (the drain used to end
// once the effects looked settled, before the redelivery, and the run
// read held).
func TestTheDrainWaitsForARedelivery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "late.yaml")
	if err := os.WriteFile(path, []byte(`name: late-redelivery
description: the consumer killed after apply and before ack, redelivered after a 4 s ack wait
ops: 100
concurrency: 8
consumer-args: ["--ack-wait=4s"]
faults:
  - {fault: kill, target: consumer, crash: after-apply-before-ack, at: 0.5, restart: ["--ack-wait=4s"]}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := bundled(t, path)
	cfg.Plan.Seed = 5
	cfg.Bundled.Unsafe = []string{"no-inbox-dedup"}
	cfg.Evidence.DrainTimeout = 30 * time.Second
	res := run(t, cfg)
	rep := res.Report
	var b strings.Builder
	_ = rep.WriteText(&b)
	if !res.Drained {
		t.Fatalf("the drain did not settle:\n%s", b.String())
	}
	c := rep.Check(verify.CheckExactlyOncePerOp)
	if rep.Verdict != verify.VerdictViolated || c == nil || c.Status != verify.StatusFailed || rep.LedgerEffects <= 100 {
		t.Fatalf("verdict %s, ledger effects %d; want the redelivered event applied twice and caught:\n%s", rep.Verdict, rep.LedgerEffects, b.String())
	}
	tr, err := os.ReadFile(filepath.Join(res.Dir, rundir.TranscriptFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(tr), "broker: 0 unacknowledged (0 redelivered), 0 undelivered") {
		t.Fatalf("the drain line does not show the broker empty:\n%s", tr)
	}
}

// goneMetrics serves a shop whose /metrics page goes away (503) once the
// endpoint has made `after` charges: a dependency of the evidence gone
// mid-run.
type goneMetrics struct {
	*shop
	after int
}

func (g goneMetrics) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/metrics" {
		g.mu.Lock()
		gone := g.charges >= g.after
		g.mu.Unlock()
		if gone {
			http.Error(w, "metrics exporter down", http.StatusServiceUnavailable)
			return
		}
	}
	g.shop.ServeHTTP(w, r)
}

// TestARunThatStopsEarlyStillWritesAReport: a fault that fails while
// running (a --kill-cmd that exits 7) and evidence that goes away mid-run
// (the metrics page answers 503, so the drain cannot settle and the
// collection fails) each still end with report.json and report.html, the
// reason in the report, faults.jsonl's error record for the fault, and an
// inconclusive verdict (exit 3): no check failed, and none can read held.
func TestARunThatStopsEarlyStillWritesAReport(t *testing.T) {
	pool, dbURL := shopLedger(t, "shop_ledger")
	tests := []struct {
		name      string
		killCmd   string
		killAt    []float64
		goneAfter int
		stopped   []string
		faultErr  bool
	}{
		{"a kill command that fails", "echo no such service >&2; exit 7", []float64{0.5}, 1 << 30,
			[]string{"a fault failed", "no such service"}, true},
		{"the metrics page gone mid-run", "", nil, 40,
			[]string{"the drain deadline (2s) passed", "collecting the evidence failed", "503"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := pool.Exec(context.Background(), `TRUNCATE shop_ledger`); err != nil {
				t.Fatal(err)
			}
			h := &shop{idempotent: true, seen: map[string]string{}, ledger: pool}
			srv := httptest.NewServer(goneMetrics{shop: h, after: tt.goneAfter})
			t.Cleanup(srv.Close)
			res := run(t, Config{
				Profile: profiles.Profile{Name: "stops"}, Out: t.TempDir(),
				Plan:     PlanConfig{Ops: 100, Concurrency: 4, Seed: 3},
				Target:   TargetConfig{URL: srv.URL + "/api/pay", KillCmd: tt.killCmd},
				Client:   ClientConfig{Header: http.Header{"X-Shop": {"yes"}}},
				Evidence: EvidenceConfig{MetricsURL: srv.URL + "/metrics", SideEffectMetric: "shop_charges_total", DatabaseURL: dbURL, LedgerQuery: `SELECT idem_key, count(*) FROM shop_ledger GROUP BY 1`, DrainTimeout: 2 * time.Second},
				Faults:   FaultConfig{KillAt: tt.killAt},
			})
			rep := res.Report
			var b strings.Builder
			_ = rep.WriteText(&b)
			if rep.Verdict != verify.VerdictInconclusive || rep.ExitCode != 3 {
				t.Fatalf("verdict %s (exit %d), want inconclusive (3):\n%s", rep.Verdict, rep.ExitCode, b.String())
			}
			for _, w := range tt.stopped {
				if !strings.Contains(rep.Stopped, w) {
					t.Errorf("report's stopped %q does not say %q", rep.Stopped, w)
				}
			}
			for _, f := range []string{rundir.ReportFile, rundir.HTMLFile} {
				if _, err := os.Stat(filepath.Join(res.Dir, f)); err != nil {
					t.Error(err)
				}
			}
			errs := 0
			for _, f := range faultRecords(t, res.Dir) {
				if f.Action == "error" && f.Fault == rundir.FaultKill && f.Target == TargetComponent {
					errs++
				}
			}
			if tt.faultErr != (errs == 1) {
				t.Fatalf("%d kill error records in faults.jsonl", errs)
			}
		})
	}
}

// TestEveryBuiltInProfileFitsTheBundledSystem: no built-in profile names a
// component, crash point or proxy the reference system lacks, and against a
// target each either runs with --kill-cmd or is refused naming a fault of
// the bundled system's broker or cache.
func TestEveryBuiltInProfileFitsTheBundledSystem(t *testing.T) {
	for _, p := range profiles.List() {
		if _, err := planFaults(&Config{Profile: p}); err != nil {
			t.Errorf("profile %s on the bundled system: %v", p.Name, err)
		}
		_, err := planFaults(&Config{Profile: p, Target: TargetConfig{URL: "http://127.0.0.1:1/", KillCmd: "true"}})
		if err == nil {
			continue
		}
		if apperr.Code(err) != apperr.EUSAGE || !strings.Contains(err.Error(), "profile "+p.Name) ||
			!(strings.Contains(err.Error(), rundir.FaultBrokerCut) || strings.Contains(err.Error(), rundir.FaultRedisLoss) || strings.Contains(err.Error(), rundir.FaultPoison)) {
			t.Errorf("profile %s against a target: %v", p.Name, err)
		}
	}
}

// fakeComponents is a bundled system whose processes exit when told.
type fakeComponents struct {
	exited map[string]chan struct{}
}

func (f *fakeComponents) Kill(string) error                                { return nil }
func (f *fakeComponents) Restart(context.Context, string, ...string) error { return nil }
func (f *fakeComponents) Exited(name string) <-chan struct{}               { return f.exited[name] }

// TestACrashPointThatNeverFiredIsReported: an armed crash-point kill whose
// component never reached its crash point is a fault that never fired (the
// run then says so, and cannot read held); once the component dies there
// it is not.
func TestACrashPointThatNeverFiredIsReported(t *testing.T) {
	comps := &fakeComponents{exited: map[string]chan struct{}{"relay": make(chan struct{}), "consumer": make(chan struct{})}}
	dir := t.TempDir()
	j, err := openJournal(filepath.Join(dir, rundir.FaultsFile), filepath.Join(dir, rundir.TranscriptFile), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	env := &fault.Env{Components: comps, Log: j}
	specs := []rundir.FaultSpec{
		{Fault: rundir.FaultKill, Target: "relay", Crash: "after-publish", At: 0.5},
		{Fault: rundir.FaultKill, Target: "consumer", Crash: "after-apply-before-ack", At: 0.5},
	}
	s, err := newSchedule(specs, 100, 100, env, j)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.arm(ctx)
	close(comps.exited["consumer"])
	testinfra.WaitFor(t, 5*time.Second, func() error {
		if got := s.unfired(); !slices.Equal(got, []string{specs[0].Describe()}) {
			return fmt.Errorf("unfired = %v", got)
		}
		return nil
	})
	cancel()
	s.wait()
}
