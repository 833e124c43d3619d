package foreign_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paytest/paytest/internal/foreign"
	"github.com/paytest/paytest/internal/testinfra"
)

// The test binary doubles as the endpoint process StartProcess runs.
func init() { foreign.Main() }

func TestMain(m *testing.M) { testinfra.Main(m) }

const (
	bodyA = `{"amount":1200,"currency":"EUR"}`
	bodyB = `{"amount":1300,"currency":"EUR"}`
)

type reply struct {
	status int
	body   string
	header http.Header
	err    error
}

// post sends one charge on a connection of its own (no transparent retry
// by the transport).
func post(t *testing.T, url, key, body string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Idempotency-Key", key)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return reply{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, body: string(b), header: resp.Header, err: err}
}

func mustEndpoint(t *testing.T, o foreign.Options) (*foreign.Endpoint, *pgxpool.Pool, string) {
	t.Helper()
	db := testinfra.PostgresPool(t)
	e, err := foreign.New(context.Background(), db, o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return e, db, srv.URL + foreign.Path
}

func mustLedger(t *testing.T, db *pgxpool.Pool, table string) map[string]int {
	t.Helper()
	got, err := foreign.LedgerCounts(context.Background(), db, table)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestReplaysVerbatimAndRejectsAChangedBody(t *testing.T) {
	for _, tc := range []struct {
		name  string
		o     foreign.Options
		reuse int
		mark  string
	}{
		{"memory", foreign.Options{Store: foreign.StoreMemory}, 422, ""},
		{"atomic stripe", foreign.Options{Store: foreign.StoreAtomic, ReuseStatus: 400, Status: 200}, 400, ""},
		{"lease 417 marked", foreign.Options{Store: foreign.StoreLease, ReuseStatus: 417, ReplayHeader: "X-Cache: HIT"}, 417, "HIT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Table = "ledger"
			_, db, url := mustEndpoint(t, tc.o)
			first := post(t, url, "k1", bodyA)
			if first.err != nil || first.status/100 != 2 || !strings.Contains(first.body, `"id":"ch_`) {
				t.Fatalf("first: %+v", first)
			}
			again := post(t, url, "k1", bodyA)
			if again.status != first.status || again.body != first.body || again.header.Get("X-Cache") != tc.mark || again.header.Get("Idempotent-Replayed") != "" {
				t.Fatalf("replay %+v, want %d %s (mark %q)", again, first.status, first.body, tc.mark)
			}
			if r := post(t, url, "k1", bodyB); r.status != tc.reuse {
				t.Fatalf("changed body: %+v, want %d", r, tc.reuse)
			}
			if got := mustLedger(t, db, "ledger"); len(got) != 1 || got["k1"] != 1 {
				t.Fatalf("ledger %v, want k1 once", got)
			}
		})
	}
}

// TestEnvelopeRepliesCarryTheSameIDInFreshBodies: a replay is not
// byte-identical, but its /data/id is the first answer's.
func TestEnvelopeRepliesCarryTheSameIDInFreshBodies(t *testing.T) {
	_, _, url := mustEndpoint(t, foreign.Options{Table: "ledger", Store: foreign.StoreAtomic, Envelope: true})
	var ids []string
	var bodies []string
	for range 2 {
		r := post(t, url, "k1", bodyA)
		var v struct {
			Data struct {
				ID string `json:"id"`
			} `json:"data"`
			RequestID string `json:"request_id"`
		}
		if err := json.Unmarshal([]byte(r.body), &v); err != nil || r.status != 201 || v.RequestID == "" {
			t.Fatalf("answer %+v (%v)", r, err)
		}
		ids, bodies = append(ids, v.Data.ID), append(bodies, r.body)
	}
	if ids[0] == "" || ids[0] != ids[1] || bodies[0] == bodies[1] {
		t.Fatalf("ids %q, bodies %q: want one id in two different bodies", ids, bodies)
	}
}

func TestNoStoreChargesEveryRequest(t *testing.T) {
	_, db, url := mustEndpoint(t, foreign.Options{Table: "ledger"})
	a, b := post(t, url, "k1", bodyA), post(t, url, "k1", bodyA)
	if a.status != 201 || b.status != 201 || a.body == b.body {
		t.Fatalf("two requests: %+v %+v, want two charges", a, b)
	}
	if got := mustLedger(t, db, "ledger"); got["k1"] != 2 {
		t.Fatalf("ledger %v, want k1 twice", got)
	}
}

// TestLifetimeForgetsAKey: after its lifetime a memory-store key is gone
// and the same request charges again (at the same amount).
func TestLifetimeForgetsAKey(t *testing.T) {
	_, db, url := mustEndpoint(t, foreign.Options{Table: "ledger", Store: foreign.StoreMemory, Lifetime: 100 * time.Millisecond})
	first, again := post(t, url, "k1", bodyA), post(t, url, "k1", bodyA)
	if first.status != 201 || again.body != first.body {
		t.Fatalf("within the lifetime: %+v then %+v, want the replay", first, again)
	}
	testinfra.WaitFor(t, 5*time.Second, func() error {
		if r := post(t, url, "k1", bodyA); r.body == first.body {
			return errors.New("the key is still remembered")
		}
		return nil
	})
	got, err := foreign.LedgerAmounts(context.Background(), db, "ledger")
	if err != nil {
		t.Fatal(err)
	}
	if got["k1"][1200] != 2 || len(got["k1"]) != 1 {
		t.Fatalf("ledger per amount %v, want k1 charged twice at 1200", got)
	}
}

// TestInFlight: a request for a key whose first request is still being
// processed waits and gets the replay, or gets a 409 (with Retry-After
// only when configured).
func TestInFlight(t *testing.T) {
	for _, tc := range []struct {
		name   string
		o      foreign.Options
		status int
		ra     string
	}{
		{"memory lock", foreign.Options{Store: foreign.StoreMemory}, 201, ""},
		{"atomic row lock", foreign.Options{Store: foreign.StoreAtomic}, 201, ""},
		{"memory 409", foreign.Options{Store: foreign.StoreMemory, InFlight: foreign.InFlightConflict}, 409, ""},
		{"lease 409 retry-after", foreign.Options{Store: foreign.StoreLease, RetryAfter: "1"}, 409, "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.Table, tc.o.Delay = "ledger", 300*time.Millisecond
			e, db, url := mustEndpoint(t, tc.o)
			var wg sync.WaitGroup
			var first reply
			wg.Go(func() { first = post(t, url, "k1", bodyA) })
			testinfra.WaitFor(t, 5*time.Second, func() error {
				if e.Processing() == 0 {
					return errors.New("the first request has not claimed its key")
				}
				return nil
			})
			second := post(t, url, "k1", bodyA)
			wg.Wait()
			if second.status != tc.status || second.header.Get("Retry-After") != tc.ra {
				t.Fatalf("second: %+v, want %d with Retry-After %q", second, tc.status, tc.ra)
			}
			if tc.status == 201 && second.body != first.body {
				t.Fatalf("the waiting racer got %s, want the replay %s", second.body, first.body)
			}
			if got := mustLedger(t, db, "ledger"); got["k1"] != 1 {
				t.Fatalf("ledger %v, want k1 once", got)
			}
		})
	}
}

func TestFaultsHitTheFirstRequestOnly(t *testing.T) {
	for _, tc := range []struct {
		fault   foreign.Fault
		charged int
	}{
		{foreign.FaultDropAfter, 1},
		{foreign.FaultDropBefore, 0},
		{foreign.FaultTruncate, 1},
	} {
		t.Run(string(tc.fault), func(t *testing.T) {
			_, db, url := mustEndpoint(t, foreign.Options{Table: "ledger", Store: foreign.StoreAtomic, Fault: tc.fault, FaultOneIn: 1})
			r := post(t, url, "k1", bodyA)
			if r.err == nil {
				t.Fatalf("first request answered %+v, want a broken connection", r)
			}
			if tc.fault == foreign.FaultTruncate && r.status != 201 {
				t.Fatalf("truncated answer has status %d, want 201 with half a body", r.status)
			}
			if got := mustLedger(t, db, "ledger"); got["k1"] != tc.charged {
				t.Fatalf("after the fault the ledger has %v, want k1 %d times", got, tc.charged)
			}
			if again := post(t, url, "k1", bodyA); again.err != nil || again.status != 201 {
				t.Fatalf("second request: %+v", again)
			}
			if got := mustLedger(t, db, "ledger"); got["k1"] != 1 {
				t.Fatalf("ledger %v, want k1 once", got)
			}
		})
	}
}

// TestProcessKillAndRestart: a killed endpoint process loses its counter
// and its in-memory keys, keeps its ledger and comes back on the same
// address through the shell commands paytest would run.
func TestProcessKillAndRestart(t *testing.T) {
	dbURL := testinfra.Postgres(t)
	db, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	p, err := foreign.StartProcess(context.Background(), foreign.ProcessConfig{
		Options: foreign.Options{Table: "ledger", Store: foreign.StoreMemory}, DatabaseURL: dbURL,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	ctl := httptest.NewServer(p)
	t.Cleanup(ctl.Close)
	kill, restart := p.Commands(ctl.URL)

	if r := post(t, p.URL(), "k1", bodyA); r.status != 201 {
		t.Fatalf("charge: %+v", r)
	}
	if n, err := testinfra.Scrape(p.MetricsURL(), foreign.DefaultMetric); err != nil || n != 1 {
		t.Fatalf("counter %v (%v), want 1", n, err)
	}
	if out, err := exec.Command("/bin/sh", "-c", kill).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", kill, err, out)
	}
	if r := post(t, p.URL(), "k1", bodyA); r.err == nil || p.Kills() != 1 {
		t.Fatalf("a killed endpoint answered %+v (kills %d)", r, p.Kills())
	}
	if out, err := exec.Command("/bin/sh", "-c", restart).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", restart, err, out)
	}
	if n, err := testinfra.Scrape(p.MetricsURL(), foreign.DefaultMetric); err != nil || n != 0 {
		t.Fatalf("counter after restart %v (%v), want 0", n, err)
	}
	if r := post(t, p.URL(), "k1", bodyA); r.status != 201 {
		t.Fatalf("charge after restart: %+v", r)
	}
	if got := p.Controls(); len(got) != 2 || got[0] != "kill " || got[1] != "restart " {
		t.Fatalf("control requests %q, want a kill and a restart for no component", got)
	}
	if got := mustLedger(t, db, "ledger"); got["k1"] != 2 {
		t.Fatalf("ledger %v: the restarted process forgot k1 and charged it again, want 2 rows", got)
	}
}
