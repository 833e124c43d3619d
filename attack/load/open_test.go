package load

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paytest/paytest/attack/client"
	"github.com/paytest/paytest/attack/plan"
	"github.com/paytest/paytest/internal/rundir"
)

func TestPacers(t *testing.T) {
	tests := []struct {
		name  string
		p     Pacer
		i     int
		want  time.Duration
		slack time.Duration
	}{
		{"constant: first arrival at once", ConstantPacer{Rate: 100}, 0, 0, 0},
		{"constant: the 100th of 100/s at 1 s", ConstantPacer{Rate: 100}, 100, time.Second, 0},
		{"constant: fractional rate", ConstantPacer{Rate: 0.5}, 3, 6 * time.Second, 0},
		// 100 to 300/s over 10 s sends 2000: the integral 100t + 10t²
		// reaches 750 at t = 5 s.
		{"ramp: halfway in time", LinearPacer{From: 100, To: 300, Over: 10 * time.Second}, 750, 5 * time.Second, time.Millisecond},
		{"ramp: its last arrival at its end", LinearPacer{From: 100, To: 300, Over: 10 * time.Second}, 2000, 10 * time.Second, time.Millisecond},
		{"ramp: holds To after its end", LinearPacer{From: 100, To: 300, Over: 10 * time.Second}, 2300, 11 * time.Second, time.Millisecond},
		{"ramp down", LinearPacer{From: 300, To: 100, Over: 10 * time.Second}, 2000, 10 * time.Second, time.Millisecond},
		{"flat ramp is constant", LinearPacer{From: 200, To: 200, Over: time.Second}, 100, 500 * time.Millisecond, time.Microsecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.Due(tc.i); got < tc.want-tc.slack || got > tc.want+tc.slack {
				t.Fatalf("Due(%d) = %v, want %v ± %v", tc.i, got, tc.want, tc.slack)
			}
		})
	}
	// The ramp's instantaneous rate goes from From to To.
	p := LinearPacer{From: 100, To: 300, Over: 10 * time.Second}
	if gap := p.Due(1) - p.Due(0); gap < 9*time.Millisecond || gap > 11*time.Millisecond {
		t.Errorf("first gap %v, want ~10 ms (100/s)", gap)
	}
	if gap := p.Due(2000) - p.Due(1999); gap < 3200*time.Microsecond || gap > 3500*time.Microsecond {
		t.Errorf("last gap %v, want ~3.3 ms (300/s)", gap)
	}
}

func TestParseRate(t *testing.T) {
	tests := []struct {
		in   string
		want Rate
		ok   bool
	}{
		{"1000", Rate{1000, 1000}, true},
		{"2.5", Rate{2.5, 2.5}, true},
		{"100:2000", Rate{100, 2000}, true},
		{"2000:100", Rate{2000, 100}, true},
		{"500/s", Rate{500, 500}, true},
		{"", Rate{}, false},
		{"0", Rate{}, false},
		{"-5", Rate{}, false},
		{"fast", Rate{}, false},
		{"100:", Rate{}, false},
		{":100", Rate{}, false},
		{"100:0", Rate{}, false},
		{"Inf", Rate{}, false},
	}
	for _, tc := range tests {
		got, err := ParseRate(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	r := Rate{100, 300}
	if n := r.Ops(10 * time.Second); n != 2000 {
		t.Errorf("100:300 for 10 s = %d ops, want 2000", n)
	}
	if d := r.Over(2000); d != 10*time.Second {
		t.Errorf("2000 ops at 100:300 take %v, want 10s", d)
	}
}

// openRun runs p in the open model against url and returns the summary
// and the history.
func runOpenModel(t *testing.T, p *plan.Plan, url string, pacer Pacer, maxInflight int, o client.Options) (*Summary, []rundir.Attempt) {
	t.Helper()
	path := filepath.Join(t.TempDir(), rundir.HistoryFile)
	hw, err := rundir.Create[rundir.Attempt](path)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := Run(context.Background(), p, Config{URL: url, Client: newClient(t, o), History: hw, Pacer: pacer, MaxInflight: maxInflight})
	if err != nil {
		t.Fatal(err)
	}
	if err := hw.Close(); err != nil {
		t.Fatal(err)
	}
	return sum, readHistory(t, path)
}

// firstAttempts are the history's first attempts of each op's first sender.
func firstAttempts(as []rundir.Attempt) map[int]rundir.Attempt {
	out := map[int]rundir.Attempt{}
	for _, a := range as {
		if a.Sender == 0 && a.Attempt == 1 {
			out[a.Op] = a
		}
	}
	return out
}

func TestOpenModelConfirmsEveryOpOnSchedule(t *testing.T) {
	srv, url := newChargeServer(t, true)
	p := newPlan(t, plan.Config{Ops: 300, DuplicateRate: 0.3, RaceRate: 0.1, ReuseRate: 0.05, Seed: 12})
	pacer := ConstantPacer{Rate: 1000}
	sum, hist := runOpenModel(t, p, url, pacer, 0, client.Options{Seed: 2})
	if sum.Confirmed != sum.Ops || sum.Ops != p.Len() || sum.Dropped != 0 {
		t.Fatalf("summary %+v: want all %d ops confirmed, none dropped", sum, p.Len())
	}
	if charges, _, _ := srv.snapshot(); charges != p.Charges() {
		t.Fatalf("server charged %d times for %d charges", charges, p.Charges())
	}
	// Every op's first sender was due on the schedule: op i at start +
	// Due(i-1), so the intended times are the pacer's exactly.
	first := firstAttempts(hist)
	t0 := first[1].Intended
	if t0.IsZero() {
		t.Fatalf("op 1's first attempt has no intended time: %+v", first[1])
	}
	for _, op := range p.All() {
		a, ok := first[op.Op.Op]
		if !ok {
			t.Fatalf("op %d never sent", op.Op.Op)
		}
		if got, want := a.Intended.Sub(t0), pacer.Due(op.Op.Op-1); got != want {
			t.Fatalf("op %d due at +%v, want +%v", op.Op.Op, got, want)
		}
	}
}

// fastServer answers every charge at once, with the key as the resource id.
func fastServer(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"`+r.Header.Get("Idempotency-Key")+`"}`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// The rate holds whatever the machine's other work (make test runs
// packages side by side): a modest rate here, 2000/s for 10 s within 1% in
// BenchmarkOpenModelVsVegeta.
func TestOpenModelHoldsItsRate(t *testing.T) {
	url := fastServer(t)
	const rate, ops = 500, 1000
	p := newPlan(t, plan.Config{Ops: ops, Seed: 3})
	sum, hist := runOpenModel(t, p, url, ConstantPacer{Rate: rate}, 0, client.Options{Seed: 3})
	if sum.Confirmed != ops {
		t.Fatalf("%d of %d confirmed", sum.Confirmed, ops)
	}
	var starts []time.Time
	for _, a := range firstAttempts(hist) {
		starts = append(starts, a.Start)
	}
	slices.SortFunc(starts, time.Time.Compare)
	achieved := float64(len(starts)-1) / starts[len(starts)-1].Sub(starts[0]).Seconds()
	t.Logf("achieved %.1f/s for %d/s (%d ops), pacer's worst lag %v", achieved, rate, ops, sum.MaxLag)
	if achieved < rate*0.95 || achieved > rate*1.05 {
		t.Fatalf("achieved %.1f/s, want %d/s within 5%%", achieved, rate)
	}
}

// stallServer answers at once, except that every request arriving in
// [from, to) after the server started is held until to: a target that
// stalls mid-run.
func stallServer(t *testing.T, from, to time.Duration) (url string, started time.Time) {
	started = time.Now()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if since := time.Since(started); since >= from && since < to {
			select {
			case <-time.After(to - since):
			case <-r.Context().Done():
				return
			}
		}
		_, _ = io.WriteString(w, `{"id":"`+r.Header.Get("Idempotency-Key")+`"}`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, started
}

func quantile(xs []time.Duration, q float64) time.Duration {
	slices.Sort(xs)
	return xs[min(len(xs)-1, int(q*float64(len(xs))))]
}

// The open model's latency counts from each op's arrival, so the ops due
// while the target stalled show the stall; a closed pool's would not:
// its workers wait in the stall and send nothing, so only as many ops as
// it has workers see it (coordinated omission).
func TestOpenModelLatencyIncludesTheStall(t *testing.T) {
	const stall = 1500 * time.Millisecond
	url, started := stallServer(t, 500*time.Millisecond, 500*time.Millisecond+stall)
	p := newPlan(t, plan.Config{Ops: 1200, Seed: 4})
	_, hist := runOpenModel(t, p, url, ConstantPacer{Rate: 400}, 0, client.Options{Seed: 4, Timeout: 5 * time.Second})
	var open, inStall []time.Duration
	for _, a := range firstAttempts(hist) {
		l := a.End.Sub(a.Due())
		open = append(open, l)
		if due := a.Due().Sub(started); due >= 600*time.Millisecond && due < 1800*time.Millisecond {
			inStall = append(inStall, l)
		}
	}

	url2, _ := stallServer(t, 200*time.Millisecond, 200*time.Millisecond+stall)
	p2 := newPlan(t, plan.Config{Ops: 1200, Seed: 4})
	path := filepath.Join(t.TempDir(), rundir.HistoryFile)
	hw, err := rundir.Create[rundir.Attempt](path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), p2, Config{URL: url2, Concurrency: 4, Client: newClient(t, client.Options{Seed: 4, Timeout: 5 * time.Second}), History: hw}); err != nil {
		t.Fatal(err)
	}
	if err := hw.Close(); err != nil {
		t.Fatal(err)
	}
	var closed []time.Duration
	for _, a := range firstAttempts(readHistory(t, path)) {
		closed = append(closed, a.End.Sub(a.Due()))
	}
	t.Logf("a %v stall: open model p50 %v p99 %v (ops due in the stall: p50 %v, %d ops); closed pool of 4: p50 %v p99 %v",
		stall, quantile(open, 0.5), quantile(open, 0.99), quantile(inStall, 0.5), len(inStall), quantile(closed, 0.5), quantile(closed, 0.99))
	if len(inStall) < 400 || quantile(inStall, 0.5) < 500*time.Millisecond || quantile(open, 0.99) < time.Second {
		t.Fatalf("open model: the %d ops due in the stall have p50 %v, all ops p99 %v: want the stall in them (p50 >= 500ms, p99 >= 1s)",
			len(inStall), quantile(inStall, 0.5), quantile(open, 0.99))
	}
	if quantile(closed, 0.99) > 200*time.Millisecond {
		t.Fatalf("closed pool p99 %v: want it to hide the stall (only its 4 workers wait in it)", quantile(closed, 0.99))
	}
}

func TestOpenModelDropsArrivalsAtTheInflightCap(t *testing.T) {
	url, _ := stallServer(t, 300*time.Millisecond, 1300*time.Millisecond)
	const ops, capacity = 1500, 50
	p := newPlan(t, plan.Config{Ops: ops, Seed: 5})
	sum, hist := runOpenModel(t, p, url, ConstantPacer{Rate: 1000}, capacity, client.Options{Seed: 5, Timeout: 5 * time.Second})
	dropped := map[int]bool{}
	for _, a := range hist {
		if a.Outcome != rundir.OutcomeDropped {
			continue
		}
		dropped[a.Op] = true
		if a.Attempt != 1 || a.Intended.IsZero() || a.Error == "" {
			t.Fatalf("dropped arrival recorded as %+v", a)
		}
	}
	// About a second of arrivals at 1000/s finds the cap full, less the
	// 50 that fill it.
	if sum.Dropped < 800 || sum.Dropped != len(dropped) || len(sum.Unconfirmed) != sum.Dropped || sum.Succeeded+sum.Dropped != ops {
		t.Fatalf("dropped %d (history %d), unconfirmed %d, succeeded %d of %d: want ~950 dropped, each recorded and left unconfirmed, the rest succeeded",
			sum.Dropped, len(dropped), len(sum.Unconfirmed), sum.Succeeded, ops)
	}
	for _, id := range sum.Unconfirmed {
		if !dropped[id] {
			t.Fatalf("op %d unconfirmed but not dropped", id)
		}
	}
	// Never silently delayed: every op sent went out when it was due.
	for _, a := range firstAttempts(hist) {
		if a.Outcome != rundir.OutcomeDropped && a.Start.Sub(a.Due()) > 100*time.Millisecond {
			t.Fatalf("op %d sent %v after it was due", a.Op, a.Start.Sub(a.Due()))
		}
	}
}

// heldServer holds every request for hold and reports the most it held at
// once.
func heldServer(t *testing.T, hold time.Duration) (url string, most func() int64) {
	var now, peak atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		n := now.Add(1)
		defer now.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		select {
		case <-time.After(hold):
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, `{"id":"`+r.Header.Get("Idempotency-Key")+`"}`)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, peak.Load
}

// The ops an open model's cap dropped are caught up as many at once as the
// load let be in flight, not by the closed pool's few workers; without a
// pacer the reconciliation keeps to Concurrency.
func TestReconcileWorkersFollowTheModel(t *testing.T) {
	tests := []struct {
		name        string
		pacer       Pacer
		maxInflight int
		ops         int
		want        int64
	}{
		{"closed pool", nil, 64, 40, 4},
		{"open model, its cap", ConstantPacer{Rate: 1000}, 64, 200, 64},
		{"open model, default cap", ConstantPacer{Rate: 1000}, 0, 600, maxReconcileWorkers},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			url, most := heldServer(t, 200*time.Millisecond)
			p := newPlan(t, plan.Config{Ops: tc.ops, Seed: 9})
			ids := make([]int, p.Len())
			for i := range ids {
				ids[i] = p.ID(i)
			}
			cfg := Config{URL: url, Concurrency: 4, Client: newClient(t, client.Options{Seed: 9, Timeout: 5 * time.Second}),
				Pacer: tc.pacer, MaxInflight: tc.maxInflight}
			sum, err := Reconcile(context.Background(), p, ids, cfg, time.Now().Add(time.Minute))
			if err != nil || len(sum.Unconfirmed) != 0 {
				t.Fatalf("%v, %d unconfirmed", err, len(sum.Unconfirmed))
			}
			// Every worker's request is held 200 ms, so all are in flight
			// together; the last few may start as the first finish.
			if got := most(); got > tc.want || got < tc.want*9/10 {
				t.Fatalf("at most %d requests in flight at once, want %d", got, tc.want)
			}
		})
	}
}

// OnLastArrival hears, once the last arrival is made and before the ops
// still in flight finish, every charge dropped at the cap, and no reuse.
func TestOnLastArrivalNamesTheDroppedCharges(t *testing.T) {
	url, _ := stallServer(t, 100*time.Millisecond, 900*time.Millisecond)
	p := newPlan(t, plan.Config{Ops: 600, ReuseRate: 0.1, Seed: 11})
	path := filepath.Join(t.TempDir(), rundir.HistoryFile)
	hw, err := rundir.Create[rundir.Attempt](path)
	if err != nil {
		t.Fatal(err)
	}
	var calls int
	var heard []int
	var inflightThen int
	var done atomic.Int64
	cfg := Config{URL: url, Client: newClient(t, client.Options{Seed: 11, Timeout: 5 * time.Second}), History: hw,
		Pacer: ConstantPacer{Rate: 1000}, MaxInflight: 40,
		OnOpDone: func(int, client.Result) { done.Add(1) },
		OnLastArrival: func(dropped []int) {
			calls++
			heard = slices.Clone(dropped)
			inflightThen = p.Len() - int(done.Load())
		},
	}
	sum, err := Run(context.Background(), p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := hw.Close(); err != nil {
		t.Fatal(err)
	}
	var want []int
	reuses := 0
	for _, a := range readHistory(t, path) {
		if a.Outcome != rundir.OutcomeDropped {
			continue
		}
		if a.Kind == rundir.KindCharge {
			want = append(want, a.Op)
		} else {
			reuses++
		}
	}
	slices.Sort(want)
	slices.Sort(heard)
	if sum.Dropped == 0 || reuses == 0 || calls != 1 || !slices.Equal(heard, want) || len(want)+reuses != sum.Dropped {
		t.Fatalf("%d dropped (%d charges, %d reuses); called %d times with %d ids", sum.Dropped, len(want), reuses, calls, len(heard))
	}
	if inflightThen == 0 {
		t.Fatal("called after every op was done, not while the last ones were in flight")
	}
}
