package load

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paytest/paytest/attack/client"
	"github.com/paytest/paytest/attack/plan"
	"github.com/paytest/paytest/internal/rundir"
)

func newPlan(t *testing.T, cfg plan.Config) *plan.Plan {
	t.Helper()
	p, err := plan.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newClient(t *testing.T, o client.Options) *client.Client {
	t.Helper()
	if o.Base == 0 {
		o.Base, o.Cap = time.Millisecond, 20*time.Millisecond
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 20
	}
	c, err := client.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func readHistory(t *testing.T, path string) []rundir.Attempt {
	t.Helper()
	var out []rundir.Attempt
	if err := rundir.ReadFile(path, func(a rundir.Attempt) error { out = append(out, a); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRunConfirmsEveryOpAgainstAnIdempotentServer(t *testing.T) {
	srv, url := newChargeServer(t, true)
	srv.hold = 25 * time.Millisecond // long enough for a race's senders to meet even under -race
	p := newPlan(t, plan.Config{Ops: 300, DuplicateRate: 0.3, RaceRate: 0.1, ReuseRate: 0.05, Seed: 11,
		Merchants: []plan.Merchant{plan.DefaultMerchant, {Name: "b", APIKey: "sk_b"}}})
	path := filepath.Join(t.TempDir(), rundir.HistoryFile)
	hw, err := rundir.Create[rundir.Attempt](path)
	if err != nil {
		t.Fatal(err)
	}
	var onAttempt, onDone atomic.Int64
	doneOps := sync.Map{}
	sum, err := Run(context.Background(), p, Config{
		URL: url, Concurrency: 16, Client: newClient(t, client.Options{Seed: 1}), History: hw,
		OnAttempt: func(rundir.Attempt) { onAttempt.Add(1) },
		OnOpDone: func(op int, r client.Result) {
			onDone.Add(1)
			if _, dup := doneOps.LoadOrStore(op, true); dup {
				t.Errorf("OnOpDone twice for op %d", op)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := hw.Close(); err != nil {
		t.Fatal(err)
	}
	nReuse := p.Len() - p.Charges()
	if sum.Ops != p.Len() || sum.Confirmed != p.Len() || len(sum.Unconfirmed) != 0 ||
		sum.Succeeded != p.Charges() || sum.Rejected != nReuse || sum.Indeterminate != 0 {
		t.Fatalf("summary %+v; want all %d ops confirmed (%d charges, %d reuses)", sum, p.Len(), p.Charges(), nReuse)
	}
	charges, requests, statuses := srv.snapshot()
	if charges != p.Charges() {
		t.Fatalf("server charged %d times for %d charges", charges, p.Charges())
	}
	if statuses[422] != nReuse || nReuse == 0 {
		t.Fatalf("server answered 422 %d times, want once per reuse op (%d)", statuses[422], nReuse)
	}
	atts := readHistory(t, path)
	if len(atts) != sum.Attempts || int(onAttempt.Load()) != sum.Attempts || requests != sum.Attempts {
		t.Fatalf("history has %d lines, OnAttempt saw %d, server %d requests, summary %d attempts",
			len(atts), onAttempt.Load(), requests, sum.Attempts)
	}
	if int(onDone.Load()) != p.Len() {
		t.Fatalf("OnOpDone called %d times for %d ops", onDone.Load(), p.Len())
	}
	// Per op: every sender shows up in the history with the op's key, and
	// races really overlapped on the server.
	senders := map[int]map[int]bool{}
	firstStart := map[[2]int]time.Time{} // op, sender -> first attempt's start
	lastEnd := map[int]time.Time{}       // op -> its last attempt's end
	for _, a := range atts {
		if a.Attempt == 1 {
			firstStart[[2]int{a.Op, a.Sender}] = a.Start
		}
		if a.End.After(lastEnd[a.Op]) {
			lastEnd[a.Op] = a.End
		}
		op, _ := p.Op(a.Op)
		if a.Key != op.Key || a.Merchant != op.Merchant || a.Kind != op.Kind {
			t.Fatalf("attempt %+v does not match its op %+v", a, op.Op)
		}
		if senders[a.Op] == nil {
			senders[a.Op] = map[int]bool{}
		}
		senders[a.Op][a.Sender] = true
	}
	var races, dups int
	for _, op := range p.All() {
		if len(senders[op.Op.Op]) != op.Senders {
			t.Fatalf("op %d: %d senders in history, plan says %d", op.Op.Op, len(senders[op.Op.Op]), op.Senders)
		}
		mk := op.Merchant + "/" + op.Key
		switch {
		case op.Race:
			races++
			if !srv.overlapped[mk] {
				t.Errorf("race op %d: its %d senders never overlapped on the server", op.Op.Op, op.Senders)
			}
		case op.Kind == rundir.KindReuse:
			if start := firstStart[[2]int{op.Op.Op, 0}]; start.Before(lastEnd[op.ReuseOf]) {
				t.Errorf("reuse op %d sent at %v, before op %d finished at %v", op.Op.Op, start, op.ReuseOf, lastEnd[op.ReuseOf])
			}
		case op.Senders > 1:
			dups++
			// A duplicate leaves its seeded delay after the original is
			// handed to a worker; a delay of a few milliseconds promises no
			// order between the two workers' first attempts.
			if dupDelay(p.Seed, op.Op.Op, 1, 50*time.Millisecond) >= 10*time.Millisecond &&
				firstStart[[2]int{op.Op.Op, 1}].Before(firstStart[[2]int{op.Op.Op, 0}]) {
				t.Errorf("duplicate op %d: the duplicate went out before the original", op.Op.Op)
			}
			if srv.requests[mk] < op.Senders {
				t.Errorf("duplicate op %d: server saw %d requests for its key", op.Op.Op, srv.requests[mk])
			}
		}
	}
	if races == 0 || dups == 0 {
		t.Fatalf("plan has %d races and %d duplicates: the test proves nothing", races, dups)
	}
	if statuses[409] == 0 {
		t.Fatal("no 409 at all: the races did not race")
	}
}

func TestRunAgainstANonIdempotentServerShowsDoubleCharges(t *testing.T) {
	srv, url := newChargeServer(t, false)
	p := newPlan(t, plan.Config{Ops: 100, DuplicateRate: 0.3, RaceRate: 0.1, ReuseRate: 0.05, Seed: 3})
	sum, err := Run(context.Background(), p, Config{URL: url, Concurrency: 8, Client: newClient(t, client.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	charges, requests, _ := srv.snapshot()
	if charges != requests || charges <= p.Charges() {
		t.Fatalf("a server charging every request charged %d times for %d requests, %d charges", charges, requests, p.Charges())
	}
	// The reuse ops got a 2xx: not confirmed, counted as succeeded.
	if nReuse := p.Len() - p.Charges(); sum.Confirmed != p.Charges() || sum.Succeeded != p.Len() || nReuse == 0 {
		t.Fatalf("summary %+v", sum)
	}
}

// A reuse op is confirmed by the refusal the run declares, and by no other.
func TestReuseIsConfirmedByTheDeclaredStatus(t *testing.T) {
	cases := []struct {
		serverCode int
		declared   []int
		confirmed  bool
	}{
		{422, nil, true},
		{400, nil, false},
		{400, []int{400}, true},
		{417, []int{400, 417}, true},
		{409, []int{409}, true},
		{422, []int{400}, false},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("server=%d/declared=%v", tc.serverCode, tc.declared), func(t *testing.T) {
			srv, url := newChargeServer(t, true)
			srv.reuseCode = tc.serverCode
			p := newPlan(t, plan.Config{Ops: 40, DuplicateRate: 0, ReuseRate: 0.2, Seed: 7})
			nReuse := p.Len() - p.Charges()
			sum, err := Run(context.Background(), p, Config{URL: url, Concurrency: 4,
				Client: newClient(t, client.Options{ReuseStatuses: tc.declared, MaxAttempts: 3})})
			if err != nil {
				t.Fatal(err)
			}
			charges, _, statuses := srv.snapshot()
			if nReuse == 0 || statuses[tc.serverCode] != nReuse || charges != p.Charges() {
				t.Fatalf("server: %d charges for %d, %d answers %d for %d reuses", charges, p.Charges(), statuses[tc.serverCode], tc.serverCode, nReuse)
			}
			want := p.Charges()
			if tc.confirmed {
				want = p.Len()
			}
			if sum.Confirmed != want || sum.Succeeded != p.Charges() || sum.Rejected != nReuse || sum.Indeterminate != 0 {
				t.Fatalf("summary %+v; want %d confirmed, %d succeeded, %d rejected", sum, want, p.Charges(), nReuse)
			}
		})
	}
}

func TestReconcileRedrivesWithTheSameKey(t *testing.T) {
	srv, url := newChargeServer(t, true)
	p := newPlan(t, plan.Config{Ops: 60, DuplicateRate: 0, ReuseRate: 0.1, Seed: 5})
	var broken atomic.Bool
	broken.Store(true)
	eaten := map[string]bool{}
	for i, op := range p.All() {
		if i%3 == 0 && op.Kind == rundir.KindCharge {
			eaten[op.Key] = true
		}
	}
	srv.eat = func(key string) bool { return broken.Load() && eaten[key] }
	dir := t.TempDir()
	hw, err := rundir.Create[rundir.Attempt](filepath.Join(dir, rundir.HistoryFile))
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, client.Options{MaxAttempts: 2})
	cfg := Config{URL: url, Concurrency: 4, Client: c, History: hw}
	sum, err := Run(context.Background(), p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.Unconfirmed) < len(eaten) {
		t.Fatalf("%d unconfirmed after eating the answers of %d ops", len(sum.Unconfirmed), len(eaten))
	}
	for _, id := range sum.Unconfirmed {
		op, _ := p.Op(id)
		if op.Kind == rundir.KindCharge && !eaten[op.Key] {
			t.Fatalf("op %d unconfirmed but its answers were not eaten", id)
		}
	}
	broken.Store(false)
	rsum, err := Reconcile(context.Background(), p, sum.Unconfirmed, cfg, time.Now().Add(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if rsum.Confirmed != len(sum.Unconfirmed) || len(rsum.Unconfirmed) != 0 {
		t.Fatalf("reconcile summary %+v for %d ops", rsum, len(sum.Unconfirmed))
	}
	hw.Close()
	charges, _, statuses := srv.snapshot()
	if charges != p.Charges() || statuses[422] != p.Len()-p.Charges() {
		t.Fatalf("after reconciling: %d charges for %d, %d 422s", charges, p.Charges(), statuses[422])
	}
	reconciled := map[int]bool{}
	for _, a := range readHistory(t, filepath.Join(dir, rundir.HistoryFile)) {
		op, _ := p.Op(a.Op)
		if a.Key != op.Key {
			t.Fatalf("attempt for op %d used key %s, not %s", a.Op, a.Key, op.Key)
		}
		if a.DelayReason == rundir.ReasonReconcile {
			if a.Attempt != 1 || a.Sender < op.Senders {
				t.Fatalf("reconcile attempt %+v: must be a new sender's first attempt", a)
			}
			reconciled[a.Op] = true
			if op.Kind == rundir.KindCharge && a.Outcome != rundir.OutcomeReplay {
				t.Fatalf("op %d reconciled as %s, want a replay of the charge that was made", a.Op, a.Outcome)
			}
		}
	}
	for _, id := range sum.Unconfirmed {
		if !reconciled[id] {
			t.Fatalf("op %d was not re-driven", id)
		}
	}
}

func TestReconcileStopsAtTheDeadline(t *testing.T) {
	_, url := newChargeServer(t, true)
	p := newPlan(t, plan.Config{Ops: 3, Seed: 1})
	dead := httpDown(t)
	cfg := Config{URL: dead, Concurrency: 2, Client: newClient(t, client.Options{MaxAttempts: 2})}
	start := time.Now()
	sum, err := Reconcile(context.Background(), p, []int{1, 2, 3}, cfg, time.Now().Add(300*time.Millisecond))
	if err == nil || len(sum.Unconfirmed) != 3 || time.Since(start) > 3*time.Second {
		t.Fatalf("against a dead endpoint: %v, %+v after %v", err, sum, time.Since(start))
	}
	// And against a live one the same ops are confirmed.
	cfg.URL = url
	sum, err = Reconcile(context.Background(), p, []int{1, 2, 3}, cfg, time.Now().Add(5*time.Second))
	if err != nil || sum.Confirmed != 3 {
		t.Fatalf("%v, %+v", err, sum)
	}
}

// httpDown returns the URL of a port nothing listens on any more.
func httpDown(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr + "/charge"
}

func TestRunStopsWhenTheContextEnds(t *testing.T) {
	srv, url := newChargeServer(t, true)
	srv.hold = 20 * time.Millisecond
	p := newPlan(t, plan.Config{Ops: 500, Seed: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	sum, err := Run(ctx, p, Config{URL: url, Concurrency: 4, Client: newClient(t, client.Options{})})
	if err == nil || len(sum.Unconfirmed) == 0 || sum.Confirmed+len(sum.Unconfirmed) != p.Len() {
		t.Fatalf("err %v, summary %d confirmed %d unconfirmed of %d", err, sum.Confirmed, len(sum.Unconfirmed), p.Len())
	}
}
