package attack

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paytest/paytest/attack/load"
	"github.com/paytest/paytest/internal/foreign"
	"github.com/paytest/paytest/internal/rundir"
	"github.com/paytest/paytest/internal/testinfra"
	"github.com/paytest/paytest/profiles"
	"github.com/paytest/paytest/verify"
)

// The test binary doubles as the endpoint process of the kill rows (and as
// the client of its control page in --kill-cmd and --restart-cmd).
func init() { foreign.Main() }

// foreignSeeds are the seeds every row runs with: a row holds (or fails
// with exact counts) on each of them.
var foreignSeeds = []int64{3, 11, 29}

const foreignLedgerQuery = `SELECT idem_key, count(*) FROM ledger GROUP BY 1`

// foreignCase is one foreign behaviour: the endpoint, the attack on it and
// what paytest must say, judged against the endpoint's own ledger.
type foreignCase struct {
	name string
	ep   foreign.Options
	// process runs the endpoint as a real process, killed and restarted
	// at killAt through --kill-cmd and --restart-cmd.
	process bool
	killAt  []float64
	// The plan's shape and the profile's faults.
	ops                    int
	concurrency            int
	duplicate, race, reuse float64
	faults                 []rundir.FaultSpec
	// rate, when set, drives the plan as an open model (ops arriving at
	// rate per second, at most maxInflight open, the rest dropped and
	// reconciled) instead of a pool of concurrency workers.
	rate        float64
	maxInflight int
	// tune adjusts the attack's Config (evidence knobs).
	tune  func(*Config)
	check func(t *testing.T, g *ground)
	// gap, when set, is a known false alarm or miss the row exposes: the
	// row is skipped with it until the owner fixes it.
	gap string
}

// ground is what a run said and what the endpoint really did.
type ground struct {
	rep  *verify.Report
	plan []rundir.Op
	// ledger is the ledger's rows per key, amounts per key and amount;
	// rows their sum.
	ledger  map[string]int
	amounts map[string]map[int64]int
	rows    int
	// stuck are the keys the endpoint left in progress.
	stuck []string
	// received counts the requests an in-process endpoint read per key
	// (nil for a process); sent the attempts history.jsonl records as
	// sent per key.
	received map[string]int
	sent     map[string]int
	attempts []rundir.Attempt
	process  bool
}

var eatResponses = []rundir.FaultSpec{{Fault: rundir.FaultEatResponse, At: 0.05, Until: 0.9, Toxicity: 0.5}}

// TestForeignIdempotencyImplementations runs paytest against endpoints that
// do idempotency correctly but unlike the reference service (each must
// hold: no false alarm) and against ones that break it (each must fail
// with the ledger's exact counts: no miss).
func TestForeignIdempotencyImplementations(t *testing.T) {
	cases := []foreignCase{
		{
			// Stripe v1: the stored status and body replayed verbatim, no
			// replay header; eaten responses make the client retry.
			name: "unmarked-replays", ep: foreign.Options{Store: foreign.StoreAtomic, Status: 200},
			ops: 120, concurrency: 16, duplicate: 0.3, race: 0.1, reuse: 0.05, faults: eatResponses,
			check: func(t *testing.T, g *ground) {
				g.holds(t)
				g.sawUnmarkedReplays(t)
			},
		},
		{
			// express-idempotency's "X-Cache: HIT" as --replay-header.
			name: "replays-marked-their-own-way", ep: foreign.Options{Store: foreign.StoreAtomic, ReplayHeader: "X-Cache: HIT"},
			ops: 120, concurrency: 16, duplicate: 0.3, race: 0.1, faults: eatResponses,
			tune: func(c *Config) { c.Client.ReplayHeader = "X-Cache=HIT" },
			check: func(t *testing.T, g *ground) {
				g.holds(t)
				if g.saw(func(a rundir.Attempt) bool { return a.Replayed && a.Outcome == rundir.OutcomeReplay }) == 0 {
					t.Errorf("no attempt was recorded as a replay marked X-Cache: HIT")
				}
			},
		},
		{
			// Fiber: a per-key lock; the second racer waits and gets the
			// replay (a 2xx, unmarked) instead of a 409.
			name: "per-key-lock", ep: foreign.Options{Store: foreign.StoreMemory, InFlight: foreign.InFlightWait, Delay: 20 * time.Millisecond},
			ops: 150, concurrency: 16, duplicate: 0.4, race: 0.5,
			check: func(t *testing.T, g *ground) {
				g.holds(t)
				g.sawUnmarkedReplays(t)
				if n := g.saw(func(a rundir.Attempt) bool { return a.Status == 409 }); n > 0 {
					t.Errorf("%d attempts got 409 from an endpoint that makes racers wait", n)
				}
			},
		},
		{
			// The same lock judged without a ledger: the answers' resource
			// ids say the racers' 2xx answers were one charge.
			name: "per-key-lock-without-ledger", ep: foreign.Options{Store: foreign.StoreMemory, InFlight: foreign.InFlightWait, Delay: 20 * time.Millisecond},
			ops: 150, concurrency: 16, duplicate: 0.4, race: 0.5,
			tune: func(c *Config) { c.Evidence.DatabaseURL, c.Evidence.LedgerQuery = "", "" },
			check: func(t *testing.T, g *ground) {
				g.sawUnmarkedReplays(t)
				races := g.count(func(o rundir.Op) bool { return o.Race })
				if r := g.mustCheck(t, verify.CheckRaceSingleWinner); r.Status != verify.StatusHeld || !strings.HasPrefix(r.Figure, fmt.Sprintf("%d of %d races", races, races)) {
					t.Errorf("%s: %s %q (evidence %q), want held for all %d races: %s %v", r.Name, r.Status, r.Figure, r.Evidence, races, r.Detail, r.Counterexamples)
				}
				if e := g.mustCheck(t, verify.CheckEffectsEqualOps); e.Status != verify.StatusHeld || g.rep.SideEffects != g.rows || g.rows != g.charges() {
					t.Errorf("%s: %s %q, the counter and the ledger hold %d for %d charges", e.Name, e.Status, e.Figure, g.rows, g.charges())
				}
				// Per-op effects need a ledger: unjudged, not failed, and
				// not withholding the verdict.
				if x := g.mustCheck(t, verify.CheckExactlyOncePerOp); x.Status != verify.StatusInconclusive || g.rep.Verdict != verify.VerdictHeld {
					t.Errorf("%s: %s %q without a ledger, verdict %s: %s %v", x.Name, x.Status, x.Figure, g.rep.Verdict, x.Detail, x.Counterexamples)
				}
			},
		},
		{
			// The lock again, answers wrapped as {"data":{"id":...},
			// "request_id":...} with a fresh request id each time, no
			// ledger: --id-field /data/id says two answers are one charge.
			name: "per-key-lock-id-field", ep: foreign.Options{Store: foreign.StoreMemory, InFlight: foreign.InFlightWait, Delay: 20 * time.Millisecond, Envelope: true},
			ops: 150, concurrency: 16, duplicate: 0.4, race: 0.5,
			tune: func(c *Config) { c.Evidence.DatabaseURL, c.Evidence.LedgerQuery, c.Client.IDField = "", "", "/data/id" },
			check: func(t *testing.T, g *ground) {
				g.sawUnmarkedReplays(t)
				races := g.count(func(o rundir.Op) bool { return o.Race })
				if r := g.mustCheck(t, verify.CheckRaceSingleWinner); r.Status != verify.StatusHeld || !strings.HasPrefix(r.Figure, fmt.Sprintf("%d of %d races", races, races)) {
					t.Errorf("%s: %s %q (evidence %q), want held for all %d races: %s %v", r.Name, r.Status, r.Figure, r.Evidence, races, r.Detail, r.Counterexamples)
				}
				if x := g.mustCheck(t, verify.CheckExactlyOncePerOp); x.Status == verify.StatusFailed || g.rep.Verdict != verify.VerdictHeld {
					t.Errorf("%s: %s %q, verdict %s: %s %v", x.Name, x.Status, x.Figure, g.rep.Verdict, x.Detail, x.Counterexamples)
				}
			},
		},
		{
			// The connection closes after the request was read: after
			// the charge for some keys, before it for others.
			name: "connection-dropped", ep: foreign.Options{Store: foreign.StoreAtomic, Fault: foreign.FaultDropMixed, FaultOneIn: 3},
			ops: 150, concurrency: 16, duplicate: 0.3, race: 0.1,
			check: func(t *testing.T, g *ground) {
				g.holds(t)
				g.everyRequestRecorded(t)
				if g.saw(func(a rundir.Attempt) bool { return a.Outcome == rundir.OutcomeNetwork }) == 0 {
					t.Errorf("no connection was dropped")
				}
			},
		},
		{
			// The IETF draft: 409 while the first request is in flight,
			// here without Retry-After.
			name: "409-without-retry-after", ep: foreign.Options{Store: foreign.StoreLease, Delay: 30 * time.Millisecond},
			ops: 120, concurrency: 16, duplicate: 0.4, race: 0.5,
			check: func(t *testing.T, g *ground) {
				g.holds(t)
				if g.saw(func(a rundir.Attempt) bool { return a.Status == 409 && a.RetryAfterMS == 0 }) == 0 ||
					g.saw(func(a rundir.Attempt) bool { return a.RetryAfterMS > 0 }) > 0 {
					t.Errorf("want 409s without Retry-After, got %v", g.rep.Outcomes)
				}
			},
		},
		reuseCase("stripe-400-declared", 400, true),
		reuseCase("stripe-400-undeclared", 400, false),
		reuseCase("417-declared", 417, true),
		reuseCase("417-undeclared", 417, false),
		{
			// A durable store, a counter that starts again at 0 when the
			// process is killed and restarted mid-run (late enough for
			// paytest to have scraped it before: the next row kills it
			// sooner).
			name: "counter-resets-on-restart", ep: foreign.Options{Store: foreign.StoreAtomic, Delay: 10 * time.Millisecond},
			process: true, killAt: []float64{0.6},
			ops: 200, concurrency: 16, duplicate: 0.3, race: 0.1,
			check: func(t *testing.T, g *ground) {
				g.holds(t)
				if len(g.rep.CounterResets) != 1 {
					t.Errorf("counter resets %+v, want the one restart", g.rep.CounterResets)
				}
			},
		},
		{
			// The same restart before paytest's first look at the
			// counter: a slow /metrics page is still answering the first
			// scrape when the process dies.
			name: "counter-reset-before-first-scrape", ep: foreign.Options{Store: foreign.StoreAtomic, Delay: 5 * time.Millisecond, MetricsDelay: 700 * time.Millisecond},
			process: true, killAt: []float64{0.3},
			ops: 150, concurrency: 16, duplicate: 0.3, race: 0.1,
			check: func(t *testing.T, g *ground) {
				g.holds(t)
				if len(g.rep.CounterResets) != 1 {
					t.Errorf("counter resets %+v, want the one restart", g.rep.CounterResets)
				}
			},
		},
		{
			// A lease that never expires: the process killed mid-request
			// leaves keys "in progress"; every later try gets 409.
			name: "keys-stuck-in-flight", ep: foreign.Options{Store: foreign.StoreLease, Delay: 40 * time.Millisecond},
			process: true, killAt: []float64{0.4},
			ops: 150, concurrency: 16, duplicate: 0.2,
			tune:  func(c *Config) { c.Evidence.ReconcileTimeout = 1500 * time.Millisecond },
			check: func(t *testing.T, g *ground) { g.stuckKeysFail(t) },
		},
		{
			// The same lease under load: three times the keys in flight
			// at the kill, so the retry budget runs dry and the deadline
			// cuts the last retries: the last look gets each stuck key's
			// 409.
			name: "keys-stuck-in-flight-under-load", ep: foreign.Options{Store: foreign.StoreLease, Delay: 80 * time.Millisecond},
			process: true, killAt: []float64{0.4},
			ops: 300, concurrency: 48, duplicate: 0.2,
			tune:  func(c *Config) { c.Evidence.ReconcileTimeout = 1500 * time.Millisecond },
			check: func(t *testing.T, g *ground) { g.stuckKeysFail(t) },
		},
		{
			// Fiber's in-memory storage: a restart forgets every key, and
			// retries after it charge again.
			name: "in-memory-keys-lost-on-restart", ep: foreign.Options{Store: foreign.StoreMemory, Delay: 5 * time.Millisecond},
			process: true, killAt: []float64{0.5},
			ops: 150, concurrency: 16, duplicate: 0.3, faults: eatResponses,
			check: func(t *testing.T, g *ground) { g.doubleChargesFail(t, true) },
		},
		{
			// Headers and half of a 2xx body, then the connection closes.
			name: "truncated-2xx", ep: foreign.Options{Store: foreign.StoreAtomic, Fault: foreign.FaultTruncate, FaultOneIn: 3},
			ops: 150, concurrency: 16, duplicate: 0.3, race: 0.1,
			check: func(t *testing.T, g *ground) {
				g.holds(t)
				if g.saw(func(a rundir.Attempt) bool {
					return a.Status/100 == 2 && a.Outcome != rundir.OutcomeNew && a.Outcome != rundir.OutcomeReplay
				}) == 0 {
					t.Errorf("no 2xx was cut off")
				}
			},
		},
		{
			// Fiber's Lifetime set too short: a key forgotten after 150 ms
			// is charged again by a late retry, and a changed body after
			// it is charged as a new request. The 4-column ledger query
			// tells the original's double charges from the reuse's.
			name: "short-key-lifetime-four-column-ledger",
			ep:   foreign.Options{Store: foreign.StoreMemory, Lifetime: 150 * time.Millisecond, Delay: 5 * time.Millisecond},
			ops:  150, concurrency: 16, duplicate: 0.2, reuse: 0.2, faults: eatResponses,
			tune: func(c *Config) {
				c.Evidence.LedgerQuery = `SELECT merchant, idem_key, amount, count(*) FROM ledger GROUP BY 1, 2, 3`
			},
			check: func(t *testing.T, g *ground) { g.attributedPerOp(t, true) },
		},
		{
			// The same with the 2-column ledger query: a reuse's own
			// charge is told by its new resource id, but a key whose
			// reuse was also charged by attempts whose answers were lost
			// holds effects the per-key count cannot assign.
			name: "short-key-lifetime-two-column-ledger",
			ep:   foreign.Options{Store: foreign.StoreMemory, Lifetime: 150 * time.Millisecond, Delay: 5 * time.Millisecond},
			ops:  150, concurrency: 16, duplicate: 0.2, reuse: 0.2, faults: eatResponses,
			check: func(t *testing.T, g *ground) { g.attributedPerOp(t, false) },
		},
		{
			// No idempotency at all: every request is a charge.
			name: "non-idempotent", ep: foreign.Options{Store: foreign.StoreNone},
			ops: 150, concurrency: 16, duplicate: 0.3, race: 0.1,
			check: func(t *testing.T, g *ground) { g.doubleChargesFail(t, false) },
		},
		// The open model (--rate): ops arrive on a schedule whatever the
		// endpoint's pace, racers are released together at their
		// arrival, and an arrival that finds --max-inflight ops open is
		// dropped, then sent by the reconciliation with its same key. The
		// verdicts are the closed pool's.
		{
			// Stripe's unmarked replays and eaten responses; a cap of 8
			// drops arrivals while the endpoint holds each for 20 ms.
			name: "open-model-unmarked-replays-with-drops", ep: foreign.Options{Store: foreign.StoreAtomic, Status: 200, Delay: 20 * time.Millisecond},
			ops: 150, rate: 600, maxInflight: 8, duplicate: 0.3, race: 0.1, reuse: 0.05, faults: eatResponses,
			check: func(t *testing.T, g *ground) {
				g.holds(t)
				g.sawUnmarkedReplays(t)
				if g.rep.Throughput == nil || g.rep.Throughput.DroppedArrivals == 0 {
					t.Errorf("no arrival was dropped at the cap of 8 (throughput %+v)", g.rep.Throughput)
				}
			},
		},
		{
			// Fiber's per-key lock: racers released together wait on the
			// first, then get its answer.
			name: "open-model-per-key-lock", ep: foreign.Options{Store: foreign.StoreMemory, InFlight: foreign.InFlightWait, Delay: 20 * time.Millisecond},
			ops: 150, rate: 500, duplicate: 0.4, race: 0.5,
			check: func(t *testing.T, g *ground) {
				g.holds(t)
				g.sawUnmarkedReplays(t)
			},
		},
		{
			// The IETF draft's 409 without Retry-After.
			name: "open-model-409-without-retry-after", ep: foreign.Options{Store: foreign.StoreLease, Delay: 30 * time.Millisecond},
			ops: 120, rate: 400, duplicate: 0.4, race: 0.5,
			check: func(t *testing.T, g *ground) { g.holds(t) },
		},
		{
			// No idempotency, with drops: every duplicate is a charge, and
			// a dropped op sent by the reconciliation is charged too.
			name: "open-model-non-idempotent-with-drops", ep: foreign.Options{Store: foreign.StoreNone, Delay: 20 * time.Millisecond},
			ops: 150, rate: 600, maxInflight: 8, duplicate: 0.3, race: 0.1,
			check: func(t *testing.T, g *ground) {
				g.doubleChargesFail(t, false)
				if g.rep.Throughput == nil || g.rep.Throughput.DroppedArrivals == 0 {
					t.Errorf("no arrival was dropped at the cap of 8 (throughput %+v)", g.rep.Throughput)
				}
			},
		},
		{
			// Keys lost with the process's memory on a restart mid-run.
			name: "open-model-in-memory-keys-lost-on-restart", ep: foreign.Options{Store: foreign.StoreMemory, Delay: 5 * time.Millisecond},
			process: true, killAt: []float64{0.5},
			ops: 150, rate: 300, duplicate: 0.3, faults: eatResponses,
			check: func(t *testing.T, g *ground) { g.doubleChargesFail(t, true) },
		},
		{
			// A lease that never expires, killed mid-request: the keys it
			// left in progress answer 409 for good.
			name: "open-model-keys-stuck-in-flight", ep: foreign.Options{Store: foreign.StoreLease, Delay: 40 * time.Millisecond},
			process: true, killAt: []float64{0.4},
			ops: 150, rate: 300, duplicate: 0.2,
			tune:  func(c *Config) { c.Evidence.ReconcileTimeout = 1500 * time.Millisecond },
			check: func(t *testing.T, g *ground) { g.stuckKeysFail(t) },
		},
		{
			// The --help example's 3-column ledger query, with the
			// endpoint's own merchant name.
			name: "three-column-ledger-query", ep: foreign.Options{Store: foreign.StoreAtomic, Merchant: "acme-eu"},
			ops: 100, concurrency: 16, duplicate: 0.3, race: 0.1, faults: eatResponses,
			tune: func(c *Config) {
				c.Evidence.LedgerQuery = `SELECT merchant, idem_key, count(*) FROM ledger GROUP BY 1, 2`
			},
			check: func(t *testing.T, g *ground) { g.holds(t) },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Each row has its own database, endpoint and proxy.
			t.Parallel()
			if tc.gap != "" {
				t.Skip("known gap: " + tc.gap)
			}
			for _, seed := range foreignSeeds {
				t.Run(fmt.Sprint("seed-", seed), func(t *testing.T) {
					g := runForeign(t, tc, seed)
					tc.check(t, g)
					t.Log(g.summary())
					if t.Failed() {
						var b strings.Builder
						_ = g.rep.WriteText(&b)
						t.Logf("ground truth: %d ledger rows over %d keys, %d stuck\n%s", g.rows, len(g.ledger), len(g.stuck), b.String())
					}
				})
			}
		})
	}
}

// reuseCase: a changed body under a used key gets status (Stripe's 400, or
// 417); declared with --reuse-status it holds, undeclared key-reuse-422
// fails naming the status while every money check holds.
func reuseCase(name string, status int, declared bool) foreignCase {
	return foreignCase{
		name: name, ep: foreign.Options{Store: foreign.StoreAtomic, ReuseStatus: status},
		ops: 150, concurrency: 16, duplicate: 0.2, reuse: 0.2,
		tune: func(c *Config) {
			if declared {
				c.Client.ReuseStatuses = []int{status}
			}
		},
		check: func(t *testing.T, g *ground) {
			if n := g.saw(func(a rundir.Attempt) bool { return a.Kind == rundir.KindReuse && a.Status != status }); n > 0 {
				t.Errorf("%d reuse attempts got another status than %d", n, status)
			}
			if declared {
				g.holds(t)
				return
			}
			g.moneyHolds(t)
			c := g.mustCheck(t, verify.CheckKeyReuse422)
			reuses := g.count(func(o rundir.Op) bool { return o.Kind == rundir.KindReuse })
			if c.Status != verify.StatusFailed || c.CounterexamplesTotal != reuses || g.rep.Verdict != verify.VerdictViolated {
				t.Errorf("%s: %s %q with %d counterexamples, want failed for all %d reuses", c.Name, c.Status, c.Figure, c.CounterexamplesTotal, reuses)
			}
			for _, cx := range c.Counterexamples {
				if !strings.Contains(cx.Why, fmt.Sprint(status)) {
					t.Errorf("%s counterexample does not name the status %d: %q", c.Name, status, cx.Why)
				}
			}
		},
	}
}

// runForeign starts tc's endpoint over a fresh ledger, attacks it with seed
// and gathers the ground truth.
func runForeign(t *testing.T, tc foreignCase, seed int64) *ground {
	t.Helper()
	ctx := context.Background()
	db := testinfra.PostgresPool(t)
	dbURL := db.Config().ConnString()
	o := tc.ep
	o.Table = "ledger"
	cfg := Config{
		Profile: profiles.Profile{Name: "foreign-" + tc.name, Faults: tc.faults}, Out: t.TempDir(),
		Plan: PlanConfig{Ops: tc.ops, Concurrency: tc.concurrency, Seed: seed, DuplicateRate: tc.duplicate, RaceRate: tc.race, ReuseRate: tc.reuse,
			Rate: load.Rate{From: tc.rate, To: tc.rate}, MaxInflight: tc.maxInflight},
		Evidence: EvidenceConfig{SideEffectMetric: foreign.DefaultMetric, DatabaseURL: dbURL, LedgerQuery: foreignLedgerQuery, DrainTimeout: 5 * time.Second, ReconcileTimeout: 20 * time.Second},
	}
	var e *foreign.Endpoint
	var err error
	if tc.process {
		p, err := foreign.StartProcess(ctx, foreign.ProcessConfig{Options: o, DatabaseURL: dbURL})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Stop)
		ctl := httptest.NewServer(p)
		t.Cleanup(ctl.Close)
		cfg.Target.URL, cfg.Evidence.MetricsURL = p.URL(), p.MetricsURL()
		cfg.Target.KillCmd, cfg.Target.RestartCmd = p.Commands(ctl.URL)
		cfg.Faults.KillAt = tc.killAt
		defer func() {
			// A kill with --kill-cmd is a kill of "target", in the
			// commands' environment as in faults.jsonl.
			var want []string
			for range tc.killAt {
				want = append(want, "kill target", "restart target")
			}
			if got := p.Controls(); p.Kills() != len(tc.killAt) || !slices.Equal(got, want) {
				t.Errorf("the endpoint process was killed %d times by %q, want %q", p.Kills(), got, want)
			}
		}()
	} else {
		if e, err = foreign.New(ctx, db, o); err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(e)
		t.Cleanup(srv.Close)
		cfg.Target.URL, cfg.Evidence.MetricsURL = srv.URL+foreign.Path, srv.URL+"/metrics"
	}
	if tc.tune != nil {
		tc.tune(&cfg)
	}
	res := run(t, cfg)
	if _, err := os.Stat(filepath.Join(res.Dir, rundir.ReportFile)); err != nil {
		t.Errorf("no %s: %v", rundir.ReportFile, err)
	}
	if tc.process {
		kills := 0
		if err := rundir.ReadFile(filepath.Join(res.Dir, rundir.FaultsFile), func(f rundir.Fault) error {
			if f.Fault == rundir.FaultKill && f.Action == "inject" {
				kills++
				if f.Target != "target" {
					t.Errorf("faults.jsonl: a kill of %q, want \"target\"", f.Target)
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if kills != len(tc.killAt) {
			t.Errorf("faults.jsonl records %d kills, want %d", kills, len(tc.killAt))
		}
	}
	g := &ground{rep: res.Report, process: tc.process, sent: map[string]int{}}
	if e != nil {
		g.received = e.Received()
	}
	if g.ledger, err = foreign.LedgerCounts(ctx, db, "ledger"); err != nil {
		t.Fatal(err)
	}
	for _, n := range g.ledger {
		g.rows += n
	}
	if g.amounts, err = foreign.LedgerAmounts(ctx, db, "ledger"); err != nil {
		t.Fatal(err)
	}
	if g.stuck, err = foreign.StuckKeys(ctx, db, "ledger"); err != nil {
		t.Fatal(err)
	}
	if err := rundir.ReadFile(filepath.Join(res.Dir, rundir.PlanFile), func(op rundir.Op) error {
		g.plan = append(g.plan, op)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := rundir.ReadFile(filepath.Join(res.Dir, rundir.HistoryFile), func(a rundir.Attempt) error {
		if a.Outcome != rundir.OutcomeBudget {
			g.sent[a.Key]++
		}
		g.attempts = append(g.attempts, a)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return g
}

// summary is one line of the verdict and its money figures beside the
// ground truth.
func (g *ground) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ground: %d ledger rows, %d keys, %d stuck; paytest: %s", g.rows, len(g.ledger), len(g.stuck), g.rep.Verdict)
	for _, name := range []string{verify.CheckEffectsEqualOps, verify.CheckExactlyOncePerOp, verify.CheckRaceSingleWinner, verify.CheckKeyReuse422, verify.CheckNoKeyStuck} {
		if c := g.rep.Check(name); c != nil {
			fmt.Fprintf(&b, "; %s %s %q", c.Name, c.Status, c.Figure)
		}
	}
	if len(g.rep.CounterResets) > 0 {
		fmt.Fprintf(&b, "; %d counter resets", len(g.rep.CounterResets))
	}
	return b.String()
}

func (g *ground) mustCheck(t *testing.T, name string) *verify.Check {
	t.Helper()
	c := g.rep.Check(name)
	if c == nil {
		t.Fatalf("report.json has no %s check", name)
	}
	return c
}

func (g *ground) count(f func(rundir.Op) bool) int {
	n := 0
	for _, o := range g.plan {
		if f(o) {
			n++
		}
	}
	return n
}

func (g *ground) charges() int {
	return g.count(func(o rundir.Op) bool { return o.Kind == rundir.KindCharge })
}

// doubled counts the charge ops (race ops only, if races) whose key the
// ledger holds more than once.
func (g *ground) doubled(races bool) int {
	return g.count(func(o rundir.Op) bool {
		return o.Kind == rundir.KindCharge && (!races || o.Race) && g.ledger[o.Key] > 1
	})
}

// effectsFigure: effects-equal-ops and the report read the ledger as it
// is; a single process's counter equals it too.
func (g *ground) effectsFigure(t *testing.T) *verify.Check {
	t.Helper()
	c := g.mustCheck(t, verify.CheckEffectsEqualOps)
	if want := fmt.Sprintf("ledger %d of %d", g.rows, g.charges()); !strings.Contains(c.Figure, want) {
		t.Errorf("%s figure %q, want %q", c.Name, c.Figure, want)
	}
	if g.rep.LedgerEffects != g.rows {
		t.Errorf("report ledger effects %d, the ledger holds %d rows", g.rep.LedgerEffects, g.rows)
	}
	switch {
	case !g.process && g.rep.SideEffects != g.rows:
		t.Errorf("report side effects %d (%s), the endpoint's counter ends at the ledger's %d", g.rep.SideEffects, g.rep.SideEffectsSource, g.rows)
	case g.process && g.rep.SideEffects > g.rows:
		t.Errorf("report side effects %d (%s): more than the ledger's %d rows (the counter counts commits)", g.rep.SideEffects, g.rep.SideEffectsSource, g.rows)
	case g.process && g.rows == g.charges() && g.rep.SideEffects < g.rows &&
		!strings.Contains(c.Figure, fmt.Sprintf("%d never scraped", g.rows-g.rep.SideEffects)):
		// A killed process's last increments were never scraped: with an
		// exact ledger the figure must say how many.
		t.Errorf("%s figure %q does not account for the %d charges the ledger holds beyond the counters' %d", c.Name, c.Figure, g.rows-g.rep.SideEffects, g.rep.SideEffects)
	}
	return c
}

// moneyHolds: the ledger holds each charge exactly once, and the money
// checks say so with the ledger's figures.
func (g *ground) moneyHolds(t *testing.T) {
	t.Helper()
	for _, o := range g.plan {
		if o.Kind == rundir.KindCharge && g.ledger[o.Key] != 1 {
			t.Fatalf("the endpoint itself is wrong: op %d (key %s) has %d ledger rows", o.Op, o.Key, g.ledger[o.Key])
		}
	}
	if g.rows != g.charges() {
		t.Fatalf("the endpoint itself is wrong: %d ledger rows for %d charges", g.rows, g.charges())
	}
	if c := g.effectsFigure(t); c.Status != verify.StatusHeld {
		t.Errorf("%s: %s %q: %s", c.Name, c.Status, c.Figure, c.Detail)
	}
	c := g.mustCheck(t, verify.CheckExactlyOncePerOp)
	if !strings.Contains(c.Evidence, "ledger") {
		t.Errorf("%s judged from %q, want the ledger", c.Name, c.Evidence)
	}
	if want := fmt.Sprintf("0 of %d ops wrong", g.charges()); c.Status != verify.StatusHeld || !strings.HasPrefix(c.Figure, want) {
		t.Errorf("%s: %s %q, want held %q...: %s %v", c.Name, c.Status, c.Figure, want, c.Detail, c.Counterexamples)
	}
	races := g.count(func(o rundir.Op) bool { return o.Race })
	c = g.mustCheck(t, verify.CheckRaceSingleWinner)
	switch {
	case races == 0 && c.Status != verify.StatusNothing:
		t.Errorf("%s: %s %q with no races in the plan", c.Name, c.Status, c.Figure)
	case races > 0 && (c.Status != verify.StatusHeld || !strings.HasPrefix(c.Figure, fmt.Sprintf("%d of %d races", races, races))):
		t.Errorf("%s: %s %q, want held for all %d races (each has one ledger row): %s %v", c.Name, c.Status, c.Figure, races, c.Detail, c.Counterexamples)
	}
}

// holds: no false alarm. The money checks hold with the ledger's figures,
// and so does every other check.
func (g *ground) holds(t *testing.T) {
	t.Helper()
	g.moneyHolds(t)
	if len(g.stuck) > 0 {
		t.Fatalf("the endpoint left keys in flight: %v", g.stuck)
	}
	for _, c := range g.rep.Checks {
		if c.Status != verify.StatusHeld && c.Status != verify.StatusNothing {
			t.Errorf("%s: %s %q: %s %v", c.Name, c.Status, c.Figure, c.Detail, c.Counterexamples)
		}
	}
	if g.rep.Verdict != verify.VerdictHeld {
		t.Errorf("verdict %s, want held", g.rep.Verdict)
	}
}

// doubleChargesFail: no miss. exactly-once-per-op fails with exactly the
// ops the ledger holds twice, and effects-equal-ops with its row count.
func (g *ground) doubleChargesFail(t *testing.T, restart bool) {
	t.Helper()
	twice := g.doubled(false)
	if twice == 0 {
		t.Fatalf("the endpoint charged no op twice (%d rows for %d charges): the row proves nothing", g.rows, g.charges())
	}
	c := g.mustCheck(t, verify.CheckExactlyOncePerOp)
	if c.Status != verify.StatusFailed || c.CounterexamplesTotal != twice {
		t.Errorf("%s: %s %q with %d counterexamples, the ledger holds %d ops more than once", c.Name, c.Status, c.Figure, c.CounterexamplesTotal, twice)
	}
	for _, cx := range c.Counterexamples {
		if cx.LedgerEffects == nil || *cx.LedgerEffects != g.ledger[cx.Key] {
			t.Errorf("counterexample op %d: ledger effects %v, the ledger holds %d", cx.Op, cx.LedgerEffects, g.ledger[cx.Key])
		}
	}
	if e := g.effectsFigure(t); e.Status != verify.StatusFailed {
		t.Errorf("%s: %s %q with %d ledger rows for %d charges", e.Name, e.Status, e.Figure, g.rows, g.charges())
	}
	if races := g.doubled(true); races > 0 {
		r := g.mustCheck(t, verify.CheckRaceSingleWinner)
		if r.Status != verify.StatusFailed || r.CounterexamplesTotal != races {
			t.Errorf("%s: %s %q with %d counterexamples, the ledger holds %d race ops more than once", r.Name, r.Status, r.Figure, r.CounterexamplesTotal, races)
		}
	}
	if g.rep.Verdict != verify.VerdictViolated || g.rep.ExitCode != verify.ExitViolated {
		t.Errorf("verdict %s (exit %d), want violated (exit 1)", g.rep.Verdict, g.rep.ExitCode)
	}
	t.Logf("%d ops charged more than once (%d ledger rows for %d charges)", twice, g.rows, g.charges())
}

// attributedPerOp: key-reuse-422 fails for exactly the reuses charged at
// their own amount, and a rejected reuse whose key holds the original's
// double charge is not blamed for it. With a ledger per amount (exact),
// exactly-once-per-op fails for exactly the originals charged twice;
// with a per-key ledger it misses none of them, and blames another only
// when its key also holds a reuse charged by attempts whose answers were
// lost (whose effects those are, a per-key count cannot tell).
func (g *ground) attributedPerOp(t *testing.T, exact bool) {
	t.Helper()
	twice := g.count(func(o rundir.Op) bool { return o.Kind == rundir.KindCharge && g.amounts[o.Key][o.Amount] > 1 })
	charged := g.count(func(o rundir.Op) bool { return o.Kind == rundir.KindReuse && g.amounts[o.Key][o.Amount] > 0 })
	innocent := g.count(func(o rundir.Op) bool {
		return o.Kind == rundir.KindReuse && g.amounts[o.Key][o.Amount] == 0 && g.ledger[o.Key] > 1
	})
	perKey := g.count(func(o rundir.Op) bool { return o.Kind == rundir.KindCharge && g.ledger[o.Key] > 1 })
	t.Logf("ground: %d originals charged more than once (%d by their key's rows), %d reuses charged, %d refused reuses under a key charged twice", twice, perKey, charged, innocent)
	if twice == 0 || innocent == 0 {
		t.Fatalf("the run did not exercise attribution (%d originals charged twice, %d refused reuses under them)", twice, innocent)
	}
	c := g.mustCheck(t, verify.CheckExactlyOncePerOp)
	if c.Status != verify.StatusFailed || c.CounterexamplesTotal < twice || (exact && c.CounterexamplesTotal != twice) || c.CounterexamplesTotal > perKey {
		t.Errorf("%s: %s %q with %d counterexamples, the ledger holds %d originals more than once (%d keys)", c.Name, c.Status, c.Figure, c.CounterexamplesTotal, twice, perKey)
	}
	for _, cx := range c.Counterexamples {
		for _, o := range g.plan {
			if o.Op == cx.Op && g.amounts[o.Key][o.Amount] < 2 && (exact || !g.ambiguousReuse(o)) {
				t.Errorf("%s blames op %d, charged %d times at its amount (key %v): %s; attempts %s", c.Name, o.Op, g.amounts[o.Key][o.Amount], g.amounts[o.Key], cx.Why, g.history(o.Key))
			}
		}
	}
	r := g.mustCheck(t, verify.CheckKeyReuse422)
	unsure := 0 // reuses a per-key count may take for their original's extra charges
	if !exact {
		unsure = g.count(func(o rundir.Op) bool { return o.Kind == rundir.KindReuse && g.lostCharges(o) })
	}
	switch {
	case charged > 0 && (r.Status != verify.StatusFailed || r.CounterexamplesTotal > charged || r.CounterexamplesTotal < charged-unsure):
		t.Errorf("%s: %s %q with %d counterexamples, the ledger holds %d reuses charged at their own amount (%d of them by answers lost): %s", r.Name, r.Status, r.Figure, r.CounterexamplesTotal, charged, unsure, r.Detail)
	case charged == 0 && r.Status != verify.StatusHeld:
		t.Errorf("%s: %s %q, no reuse was charged: %s %v", r.Name, r.Status, r.Figure, r.Detail, r.Counterexamples)
	}
	for _, cx := range r.Counterexamples {
		for _, o := range g.plan {
			if o.Op == cx.Op && g.amounts[o.Key][o.Amount] == 0 {
				t.Errorf("%s blames reuse op %d, which the ledger never charged: %s", r.Name, o.Op, cx.Why)
			}
		}
	}
	g.effectsFigure(t)
	if g.rep.Verdict != verify.VerdictViolated {
		t.Errorf("verdict %s, want violated", g.rep.Verdict)
	}
}

// ambiguousReuse: a reuse of orig was charged by attempts whose answers
// were lost, so a per-key count cannot tell its effects from orig's.
func (g *ground) ambiguousReuse(orig rundir.Op) bool {
	for _, o := range g.plan {
		if o.Kind == rundir.KindReuse && o.ReuseOf == orig.Op && g.lostCharges(o) {
			return true
		}
	}
	return false
}

// lostCharges: the ledger holds more charges at op's amount than the
// client read 2xx answers with a resource id for it.
func (g *ground) lostCharges(op rundir.Op) bool {
	seen := g.saw(func(a rundir.Attempt) bool { return a.Op == op.Op && a.Status/100 == 2 && a.ChargeID != "" })
	return g.amounts[op.Key][op.Amount] > seen
}

// stuckKeysFail: the report is written, no-key-stuck-in-flight fails
// listing exactly the keys the endpoint left in progress, and the money
// checks are computed from what was collected.
func (g *ground) stuckKeysFail(t *testing.T) {
	t.Helper()
	if len(g.stuck) == 0 {
		t.Fatalf("the kill left no key in progress: the row proves nothing")
	}
	c := g.mustCheck(t, verify.CheckNoKeyStuck)
	var listed []string
	for _, cx := range c.Counterexamples {
		listed = append(listed, cx.Key)
	}
	slices.Sort(listed)
	// A key whose last answer was a 409 may be released by the endpoint a
	// moment later (a request cut off at the deadline fails and frees its
	// lease): it never charged, and paytest saw it in flight at the end.
	// Such keys may be listed; stuck keys must all be.
	released := 0
	for _, op := range g.plan {
		if op.Kind == rundir.KindCharge && g.ledger[op.Key] == 0 && !slices.Contains(g.stuck, op.Key) {
			released++
		}
	}
	total := c.CounterexamplesTotal
	missing := 0
	for _, k := range g.stuck {
		if !slices.Contains(listed, k) {
			missing++
		}
	}
	if c.Status != verify.StatusFailed || total < len(g.stuck) || total > len(g.stuck)+released ||
		(len(listed) == total && missing > 0) || (len(listed) < total && missing > total-len(listed)) {
		t.Errorf("%s: %s %q lists %d keys (total %d), the endpoint left %d in progress and released %d uncharged", c.Name, c.Status, c.Figure, len(listed), total, len(g.stuck), released)
		for _, k := range g.stuck {
			if !slices.Contains(listed, k) {
				t.Logf("unlisted stuck key %s: %s", k, g.history(k))
			}
		}
	}
	for _, k := range listed {
		if !slices.Contains(g.stuck, k) && g.ledger[k] != 0 {
			t.Errorf("%s lists key %s, which the endpoint finished (%d ledger rows): %s", c.Name, k, g.ledger[k], g.history(k))
		}
	}
	for _, k := range g.stuck {
		if g.ledger[k] != 0 {
			t.Errorf("stuck key %s has %d ledger rows", k, g.ledger[k])
		}
	}
	g.effectsFigure(t)
	if e := g.mustCheck(t, verify.CheckExactlyOncePerOp); e.Status != verify.StatusHeld {
		t.Errorf("%s: %s %q: nothing was charged twice: %s %v", e.Name, e.Status, e.Figure, e.Detail, e.Counterexamples)
	}
	if g.rep.Verdict != verify.VerdictViolated || g.rep.ExitCode != verify.ExitViolated {
		t.Errorf("verdict %s (exit %d), want violated (exit 1)", g.rep.Verdict, g.rep.ExitCode)
	}
	t.Logf("%d keys stuck in flight", len(g.stuck))
}

// history describes key's attempts: sender/attempt outcome status.
func (g *ground) history(key string) string {
	var parts []string
	for _, a := range g.attempts {
		if a.Key == key {
			parts = append(parts, fmt.Sprintf("op%d s%d#%d %s %d %s", a.Op, a.Sender, a.Attempt, a.Outcome, a.Status, a.ChargeID))
		}
	}
	return strings.Join(parts, ", ")
}

// saw counts the attempts f accepts.
func (g *ground) saw(f func(rundir.Attempt) bool) int {
	n := 0
	for _, a := range g.attempts {
		if f(a) {
			n++
		}
	}
	return n
}

// sawUnmarkedReplays: some op got two complete, unmarked 2xx answers
// carrying the same resource id, so the row exercised unmarked replays.
func (g *ground) sawUnmarkedReplays(t *testing.T) {
	t.Helper()
	ids := map[string]int{}
	for _, a := range g.attempts {
		if a.Outcome == rundir.OutcomeNew && a.ChargeID != "" {
			ids[a.Key+" "+a.ChargeID]++
		}
	}
	n := 0
	for _, c := range ids {
		if c > 1 {
			n++
		}
	}
	if n == 0 || g.saw(func(a rundir.Attempt) bool { return a.Replayed }) > 0 {
		t.Errorf("%d ops got the same unmarked 2xx twice (and %d attempts were marked replays): the row did not exercise unmarked replays", n, g.saw(func(a rundir.Attempt) bool { return a.Replayed }))
	}
}

// everyRequestRecorded: each request the endpoint read is one attempt in
// history.jsonl, and each attempt sent reached it.
func (g *ground) everyRequestRecorded(t *testing.T) {
	t.Helper()
	bad := 0
	for k, n := range g.received {
		if g.sent[k] != n {
			if bad++; bad <= 5 {
				t.Errorf("key %s: the endpoint read %d requests, history.jsonl records %d attempts", k, n, g.sent[k])
			}
		}
	}
	for k, n := range g.sent {
		if _, ok := g.received[k]; !ok {
			t.Errorf("key %s: history.jsonl records %d attempts, the endpoint read none", k, n)
		}
	}
	if bad > 5 {
		t.Errorf("... %d keys in all", bad)
	}
}

// TestForeignThroughTheCLI drives foreign endpoints with the real binary and
// its flags: keys stuck after a --kill-at kill end in exit 1 with a report
// that lists them, and Stripe's 400 for a changed body holds only when
// declared with --reuse-status.
func TestForeignThroughTheCLI(t *testing.T) {
	tests := []struct {
		name  string
		ep    foreign.Options
		args  []string
		code  int
		check func(t *testing.T, rep *verify.Report, db *pgxpool.Pool)
	}{
		{
			name: "keys stuck after a kill", ep: foreign.Options{Store: foreign.StoreLease, Delay: 40 * time.Millisecond},
			args: []string{"--kill-at", "0.4", "--reconcile-timeout", "1500ms", "--reuse-rate", "0"},
			code: verify.ExitViolated,
			check: func(t *testing.T, rep *verify.Report, db *pgxpool.Pool) {
				stuck, err := foreign.StuckKeys(context.Background(), db, "ledger")
				if err != nil {
					t.Fatal(err)
				}
				c := rep.Check(verify.CheckNoKeyStuck)
				if len(stuck) == 0 || c == nil || c.Status != verify.StatusFailed || c.CounterexamplesTotal != len(stuck) {
					t.Fatalf("%d keys stuck; check %+v", len(stuck), c)
				}
				for _, cx := range c.Counterexamples {
					if !slices.Contains(stuck, cx.Key) {
						t.Errorf("listed key %s is not stuck (stuck: %v)", cx.Key, stuck)
					}
				}
			},
		},
		{
			name: "stripe 400 declared", ep: foreign.Options{Store: foreign.StoreAtomic, ReuseStatus: 400},
			args: []string{"--reuse-status", "400", "--reuse-rate", "0.2"}, code: verify.ExitHeld,
		},
		{
			name: "stripe 400 undeclared", ep: foreign.Options{Store: foreign.StoreAtomic, ReuseStatus: 400},
			args: []string{"--reuse-rate", "0.2"}, code: verify.ExitViolated,
			check: func(t *testing.T, rep *verify.Report, _ *pgxpool.Pool) {
				for _, c := range rep.Checks {
					if c.Status == verify.StatusFailed && c.Name != verify.CheckKeyReuse422 {
						t.Errorf("%s failed: %q %s", c.Name, c.Figure, c.Detail)
					}
				}
				if c := rep.Check(verify.CheckKeyReuse422); c == nil || c.Status != verify.StatusFailed || c.CounterexamplesTotal != rep.Reuses {
					t.Errorf("key-reuse-422: %+v, want all %d reuses", c, rep.Reuses)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			db := testinfra.PostgresPool(t)
			dbURL := db.Config().ConnString()
			o := tt.ep
			o.Table = "ledger"
			p, err := foreign.StartProcess(ctx, foreign.ProcessConfig{Options: o, DatabaseURL: dbURL})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Stop)
			ctl := httptest.NewServer(p)
			t.Cleanup(ctl.Close)
			kill, restart := p.Commands(ctl.URL)
			out := t.TempDir()
			args := append([]string{"attack", "--profile", "key-reuse", "--seed", "7", "--ops", "150", "--concurrency", "16",
				"--duplicate-rate", "0.2", "--race-rate", "0", "--no-progress", "--out", out,
				"--target", p.URL(), "--metrics-url", p.MetricsURL(), "--side-effect-metric", foreign.DefaultMetric,
				"--database-url", dbURL, "--ledger-query", foreignLedgerQuery, "--kill-cmd", kill, "--restart-cmd", restart,
			}, tt.args...)
			cmd := paytestCmd(t, childTmp(t), args...)
			b, err := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != tt.code {
				t.Fatalf("exit %d (%v), want %d:\n%s", code, err, tt.code, b)
			}
			rep, err := verify.ReadReport(filepath.Join(out, rundir.ReportFile))
			if err != nil {
				t.Fatal(err)
			}
			ledger, err := foreign.LedgerCounts(ctx, db, "ledger")
			if err != nil {
				t.Fatal(err)
			}
			rows := 0
			for _, n := range ledger {
				rows += n
			}
			if rep.LedgerEffects != rows {
				t.Errorf("report.json: %d ledger effects, the ledger holds %d rows", rep.LedgerEffects, rows)
			}
			if tt.check != nil {
				tt.check(t, rep, db)
			}
		})
	}
}
