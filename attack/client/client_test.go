package client

import (
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/paytest/paytest/internal/rundir"
)

// script is a test server that answers the n-th request (1-based) with
// step(n), and remembers every key and body it was sent.
type script struct {
	mu     sync.Mutex
	n      int
	keys   []string
	bodies []string
	step   func(n int, w http.ResponseWriter, r *http.Request)
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.n++
	n := s.n
	s.keys = append(s.keys, r.Header.Get("Idempotency-Key"))
	s.bodies = append(s.bodies, string(b))
	s.mu.Unlock()
	s.step(n, w, r)
}

func (s *script) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func serve(t *testing.T, step func(n int, w http.ResponseWriter, r *http.Request)) (*script, string) {
	t.Helper()
	s := &script{step: step}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv.URL
}

// statuses answers the n-th request with codes[n-1], and the last code ever after.
func statuses(codes ...int) func(int, http.ResponseWriter, *http.Request) {
	return func(n int, w http.ResponseWriter, r *http.Request) {
		code := codes[min(n, len(codes))-1]
		switch code {
		case -1: // drop the connection without an answer
			hj, _ := w.(http.Hijacker)
			conn, _, _ := hj.Hijack()
			conn.Close()
			return
		case -2: // answer too late
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
			return
		}
		if code >= 200 && code < 300 {
			w.Header().Set("Content-Type", "application/json")
			if n > 1 {
				w.Header().Set("Idempotent-Replayed", "true")
			}
			w.WriteHeader(code)
			io.WriteString(w, `{"id":"ch_`+strconv.Itoa(n)+`","amount":100}`)
			return
		}
		w.WriteHeader(code)
	}
}

// noSleep records the sleeps asked for instead of sleeping.
type noSleep struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *noSleep) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func newClient(t *testing.T, o Options) *Client {
	t.Helper()
	if o.Sleep == nil {
		o.Sleep = (&noSleep{}).sleep
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func TestRetriesWhatMayHaveFailedAndNeverWhatWasRejected(t *testing.T) {
	cases := []struct {
		name      string
		codes     []int
		attempts  int
		outcomes  []string
		definite  bool
		succeeded bool
	}{
		{"409 then ok", []int{409, 200}, 2, []string{"conflict", "replay"}, true, true},
		{"503 twice then ok", []int{503, 503, 200}, 3, []string{"unavailable", "unavailable", "replay"}, true, true},
		{"429 then ok", []int{429, 201}, 2, []string{"unavailable", "replay"}, true, true},
		{"500 then ok", []int{500, 200}, 2, []string{"server-error", "replay"}, true, true},
		{"network error then ok", []int{-1, 200}, 2, []string{"network", "replay"}, true, true},
		{"timeout then ok", []int{-2, 200}, 2, []string{"timeout", "replay"}, true, true},
		{"503 forever gives up after 3", []int{503}, 3, []string{"unavailable", "unavailable", "unavailable"}, false, false},
		{"first try ok", []int{200}, 1, []string{"new"}, true, true},
		{"400 never retried", []int{400, 200}, 1, []string{"rejected"}, true, false},
		{"401 never retried", []int{401, 200}, 1, []string{"rejected"}, true, false},
		{"413 never retried", []int{413, 200}, 1, []string{"rejected"}, true, false},
		{"422 never retried", []int{422, 200}, 1, []string{"mismatch"}, true, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, url := serve(t, statuses(tc.codes...))
			reg := prometheus.NewRegistry()
			c := newClient(t, Options{CallSite: "test", Timeout: 100 * time.Millisecond, Registerer: reg})
			var got []rundir.Attempt
			body := []byte(`{"amount":1299,"currency":"EUR"}`)
			res := c.Do(context.Background(), Request{Op: 7, Kind: rundir.KindCharge, Sender: 1, Merchant: "demo",
				URL: url, Key: "key-7", Body: body}, func(a rundir.Attempt) { got = append(got, a) })
			if res.Attempts != tc.attempts || srv.count() != tc.attempts || len(got) != tc.attempts {
				t.Fatalf("attempts: result %d, server saw %d, recorded %d; want %d", res.Attempts, srv.count(), len(got), tc.attempts)
			}
			if res.Definite != tc.definite || res.Succeeded != tc.succeeded {
				t.Fatalf("definite=%v succeeded=%v, want %v %v (err %v)", res.Definite, res.Succeeded, tc.definite, tc.succeeded, res.Err)
			}
			if tc.definite != (res.Err == nil) {
				t.Fatalf("Err = %v with definite=%v", res.Err, res.Definite)
			}
			for i, a := range got {
				if a.Outcome != tc.outcomes[i] || a.Attempt != i+1 {
					t.Errorf("attempt %d: outcome %q attempt %d, want %q", i+1, a.Outcome, a.Attempt, tc.outcomes[i])
				}
				if srv.keys[i] != "key-7" || srv.bodies[i] != string(body) {
					t.Errorf("attempt %d sent key %q body %q: retries must resend the same key and body", i+1, srv.keys[i], srv.bodies[i])
				}
				if a.Op != 7 || a.Kind != "charge" || a.Sender != 1 || a.Merchant != "demo" || a.Key != "key-7" || a.CallSite != "test" {
					t.Errorf("attempt %d lost its identity: %+v", i+1, a)
				}
				if a.Start.IsZero() || a.End.Before(a.Start) {
					t.Errorf("attempt %d times %v..%v", i+1, a.Start, a.End)
				}
				wantReason := rundir.ReasonBackoff
				if i == 0 {
					wantReason = rundir.ReasonFirst
				}
				if a.DelayReason != wantReason {
					t.Errorf("attempt %d reason %q, want %q", i+1, a.DelayReason, wantReason)
				}
				if i > 0 && (a.CapMS != ms(c.Backoff(i)) || a.DelayMS < 0 || a.DelayMS > a.CapMS) {
					t.Errorf("attempt %d delay %vms outside its window [0, %v]", i+1, a.DelayMS, a.CapMS)
				}
				if (a.Outcome == "timeout" || a.Outcome == "network") && a.Error == "" {
					t.Errorf("attempt %d: %s without error text", i+1, a.Outcome)
				}
			}
			if res.Succeeded {
				last := got[len(got)-1]
				want := "ch_" + strconv.Itoa(tc.attempts)
				if res.ChargeID != want || last.ChargeID != want {
					t.Errorf("charge id %q / %q, want %q", res.ChargeID, last.ChargeID, want)
				}
				if last.Replayed != (tc.attempts > 1) {
					t.Errorf("replayed = %v", last.Replayed)
				}
			}
			for i := 1; i <= tc.attempts; i++ {
				if v := testutil.ToFloat64(c.attempts[i-1]); v != 1 {
					t.Errorf("paytest_client_attempts_total{attempt=%d} = %v, want 1", i, v)
				}
			}
			if n, err := testutil.GatherAndCount(reg, "paytest_client_attempts_total"); err != nil || n != maxAttemptLabel {
				t.Errorf("registered %d attempt series (%v)", n, err)
			}
		})
	}
}

func TestRetryAfterIsHonouredAndSpread(t *testing.T) {
	cases := []struct {
		name  string
		value func() string
		min   time.Duration
	}{
		{"seconds", func() string { return "2" }, 2 * time.Second},
		{"http-date", func() string { return time.Now().Add(4 * time.Second).UTC().Format(http.TimeFormat) }, 2 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, url := serve(t, func(n int, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", tc.value())
				w.WriteHeader(http.StatusServiceUnavailable)
			})
			c := newClient(t, Options{MaxAttempts: 51, Seed: 3})
			var delays []float64
			for op := range 40 {
				var prev rundir.Attempt
				c.Do(context.Background(), Request{Op: op, URL: url, Key: "k"}, func(a rundir.Attempt) {
					if a.Attempt > 1 {
						if a.DelayReason != rundir.ReasonRetryAfter {
							t.Fatalf("reason %q after a Retry-After", a.DelayReason)
						}
						if a.DelayMS < prev.RetryAfterMS || prev.RetryAfterMS < ms(tc.min) {
							t.Fatalf("slept %vms after Retry-After %vms: sooner than told", a.DelayMS, prev.RetryAfterMS)
						}
						width := 0.5 * prev.RetryAfterMS
						if math.Abs(a.CapMS-width) > 1e-6 || a.DelayMS > prev.RetryAfterMS+width+1e-6 {
							t.Fatalf("slept %vms after Retry-After %vms, window %v: spread beyond R+0.5R", a.DelayMS, prev.RetryAfterMS, a.CapMS)
						}
						delays = append(delays, a.DelayMS)
					}
					prev = a
				})
			}
			if len(delays) != 2000 {
				t.Fatalf("%d retries, want 2000", len(delays))
			}
			slices.Sort(delays)
			if uniq := len(slices.Compact(delays)); uniq < 1900 {
				t.Fatalf("only %d distinct delays of 2000: clients told the same Retry-After come back together", uniq)
			}
		})
	}
}

// ks is the Kolmogorov-Smirnov statistic of xs against uniform on [0, 1].
func ks(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := float64(len(s))
	d := 0.0
	for i, x := range s {
		d = max(d, math.Abs(float64(i+1)/n-x), math.Abs(x-float64(i)/n))
	}
	return d
}

func TestFullJitterIsUniformAndNoJitterIsNot(t *testing.T) {
	_, url := serve(t, statuses(503))
	cases := []struct {
		noJitter bool
		check    func(t *testing.T, stat float64, distinct int)
	}{
		{false, func(t *testing.T, stat float64, distinct int) {
			// The 1% critical value for n = 2000 is 1.628/sqrt(2000) = 0.036.
			if stat > 0.036 || distinct < 1990 {
				t.Fatalf("KS %.4f, %d distinct of 2000: full jitter must be uniform over [0, cap]", stat, distinct)
			}
		}},
		{true, func(t *testing.T, stat float64, distinct int) {
			if stat < 0.99 || distinct != 1 {
				t.Fatalf("KS %.4f, %d distinct: --no-jitter must sleep exactly the cap", stat, distinct)
			}
		}},
	}
	for _, tc := range cases {
		t.Run("nojitter="+strconv.FormatBool(tc.noJitter), func(t *testing.T) {
			c := newClient(t, Options{MaxAttempts: 3, NoJitter: tc.noJitter, Seed: 42})
			byAttempt := map[int][]float64{}
			for op := range 2000 {
				c.Do(context.Background(), Request{Op: op, URL: url, Key: "k"}, func(a rundir.Attempt) {
					if a.Attempt > 1 {
						byAttempt[a.Attempt] = append(byAttempt[a.Attempt], a.DelayMS/a.CapMS)
					}
				})
			}
			for attempt, xs := range byAttempt {
				stat := ks(xs)
				t.Logf("attempt %d: %d delays, KS statistic %.4f", attempt, len(xs), stat)
				tc.check(t, stat, len(slices.Compact(slices.Sorted(slices.Values(xs)))))
			}
			if len(byAttempt) != 2 {
				t.Fatalf("retries recorded for attempts %v, want 2 and 3", byAttempt)
			}
		})
	}
}

func TestBackoffWindowDoublesUpToTheCap(t *testing.T) {
	c := newClient(t, Options{Base: 50 * time.Millisecond, Cap: time.Second})
	want := []time.Duration{50, 100, 200, 400, 800, 1000, 1000}
	for n, w := range want {
		if got := c.Backoff(n); got != w*time.Millisecond {
			t.Errorf("Backoff(%d) = %v, want %v", n, got, w*time.Millisecond)
		}
	}
	if got := c.Backoff(200); got != time.Second {
		t.Errorf("Backoff(200) = %v: must not overflow", got)
	}
}

func TestBudgetFailsFastAndCountsIt(t *testing.T) {
	srv, url := serve(t, statuses(503))
	reg := prometheus.NewRegistry()
	b := NewBudget(BudgetOptions{Capacity: 10})
	c := newClient(t, Options{CallSite: "fast", MaxAttempts: 10, Budget: b, Registerer: reg})
	var got []rundir.Attempt
	res := c.Do(context.Background(), Request{Op: 1, URL: url, Key: "k"}, func(a rundir.Attempt) { got = append(got, a) })
	// 10 tokens pay for two retries of 5; the third is refused, not sent.
	if srv.count() != 3 || len(got) != 4 {
		t.Fatalf("server saw %d requests, %d recorded; want 3 sent and a 4th refused", srv.count(), len(got))
	}
	last := got[3]
	if last.Outcome != rundir.OutcomeBudget || last.Status != 0 || last.Attempt != 4 || last.Key != "k" {
		t.Fatalf("refusal recorded as %+v", last)
	}
	if res.Outcome != rundir.OutcomeBudget || res.Err != ErrBudgetExhausted || res.Definite {
		t.Fatalf("result %+v", res)
	}
	if v := testutil.ToFloat64(c.exhausted); v != 1 {
		t.Fatalf("paytest_retry_budget_exhausted_total = %v, want 1", v)
	}
	// Another client of the same call site shares the bucket and the metric.
	c2 := newClient(t, Options{CallSite: "fast", MaxAttempts: 10, Budget: b, Registerer: reg})
	c2.Do(context.Background(), Request{Op: 2, URL: url, Key: "k2"}, nil)
	if v := testutil.ToFloat64(c.exhausted); v != 2 || srv.count() != 4 {
		t.Fatalf("second client: exhausted %v, server saw %d; want 2 and 4 (first try only)", v, srv.count())
	}
}

func TestBudgetRefillsOnSuccessAndRefundsRetries(t *testing.T) {
	b := NewBudget(BudgetOptions{})
	if b.Tokens() != 500 {
		t.Fatalf("starts at %v", b.Tokens())
	}
	steps := []struct {
		do   func()
		want float64
	}{
		{func() { b.Take(false) }, 495},
		{func() { b.Take(true) }, 485},
		{func() { b.Success(10) }, 495}, // a retry that succeeded refunds its cost
		{func() { b.Success(0) }, 496},  // a first-try success adds 1
		{func() { b.Success(0); b.Success(0); b.Success(0); b.Success(0); b.Success(0) }, 500},
	}
	for i, s := range steps {
		s.do()
		if b.Tokens() != s.want {
			t.Fatalf("step %d: %v tokens, want %v", i, b.Tokens(), s.want)
		}
	}
	small := NewBudget(BudgetOptions{Capacity: 7})
	if !small.Take(false) || small.Take(false) || small.Take(true) || small.Tokens() != 2 {
		t.Fatalf("a bucket of 7 pays one retry of 5 and refuses the rest; has %v", small.Tokens())
	}
}

// Under a server answering 503 to everything, many concurrent clients
// sharing one budget send at most capacity/cost retries in all.
func TestBudgetBoundsRetryAmplification(t *testing.T) {
	const workers, perWorker = 20, 25
	for _, withBudget := range []bool{false, true} {
		t.Run("budget="+strconv.FormatBool(withBudget), func(t *testing.T) {
			srv, url := serve(t, statuses(503))
			var b *Budget
			if withBudget {
				b = NewBudget(BudgetOptions{Capacity: 500, RetryCost: 5})
			}
			c := newClient(t, Options{MaxAttempts: 3, Budget: b})
			var refused atomic.Int64
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					for i := range perWorker {
						c.Do(context.Background(), Request{Op: w*perWorker + i, URL: url, Key: "k"}, func(a rundir.Attempt) {
							if a.Outcome == rundir.OutcomeBudget {
								refused.Add(1)
							}
						})
					}
				})
			}
			wg.Wait()
			ops := workers * perWorker
			retries := srv.count() - ops
			amp := float64(srv.count()) / float64(ops)
			t.Logf("%d ops, %d requests, %d retries, amplification %.2fx, %d refused", ops, srv.count(), retries, amp, refused.Load())
			if withBudget {
				if retries > 500/5 || amp > 1.2 || refused.Load() == 0 {
					t.Fatalf("%d retries (amplification %.2fx): the budget must cap them at 100", retries, amp)
				}
			} else if retries != 2*ops {
				t.Fatalf("without a budget every op retries twice: %d retries", retries)
			}
		})
	}
}

func TestRealSleepsTakeTheTimeRecorded(t *testing.T) {
	_, url := serve(t, statuses(503, 503, 200))
	c, err := New(Options{Base: 10 * time.Millisecond, Cap: 40 * time.Millisecond, NoJitter: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []rundir.Attempt
	start := time.Now()
	res := c.Do(context.Background(), Request{URL: url, Key: "k"}, func(a rundir.Attempt) { got = append(got, a) })
	elapsed := time.Since(start)
	if !res.Succeeded || len(got) != 3 {
		t.Fatalf("result %+v", res)
	}
	// No jitter: 20ms after attempt 1, 40ms after attempt 2.
	if got[1].DelayMS != 20 || got[2].DelayMS != 40 || elapsed < 60*time.Millisecond {
		t.Fatalf("delays %v, %v ms; took %v", got[1].DelayMS, got[2].DelayMS, elapsed)
	}
	if gap := got[2].Start.Sub(got[1].End); gap < 40*time.Millisecond {
		t.Fatalf("attempt 3 started %v after attempt 2 ended, want >= 40ms", gap)
	}
}

func TestContextEndStopsRetrying(t *testing.T) {
	srv, url := serve(t, statuses(503))
	c, err := New(Options{MaxAttempts: Unlimited, Base: time.Millisecond, Cap: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	res := c.Do(ctx, Request{URL: url, Key: "k"}, nil)
	if res.Definite || res.Err == nil || srv.count() < 3 || ctx.Err() == nil {
		t.Fatalf("unlimited attempts until the context ended: %d requests, result %+v", srv.count(), res)
	}
}

func TestFirstDelayAndReason(t *testing.T) {
	_, url := serve(t, statuses(200))
	s := &noSleep{}
	c := newClient(t, Options{Sleep: s.sleep})
	var got rundir.Attempt
	c.Do(context.Background(), Request{URL: url, Key: "k", FirstDelay: 30 * time.Millisecond, FirstReason: rundir.ReasonReconcile},
		func(a rundir.Attempt) { got = a })
	if got.DelayReason != rundir.ReasonReconcile || got.DelayMS != 30 || len(s.d) != 1 || s.d[0] != 30*time.Millisecond {
		t.Fatalf("first attempt %+v, slept %v", got, s.d)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1", time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{"0.5", 500 * time.Millisecond, true},
		{"0", 0, true},
		{"Sat, 28 Nov 2026 12:00:03 GMT", 3 * time.Second, true},
		{"Sat, 28 Nov 2026 11:59:00 GMT", 0, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{"", 0, false},
	}
	for _, tc := range cases {
		got, ok := ParseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseRetryAfter(%q) = %v %v, want %v %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestNewRejectsNonsense(t *testing.T) {
	for _, o := range []Options{{Base: time.Second, Cap: time.Millisecond}, {RetryAfterSpread: -1}} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

// An attempt due before it was sent (the open model's arrival, late) is
// recorded with its due time, and its latency counts from then: the live
// histogram holds the wait. Outcomes are counted, a refused retry too.
func TestLatencyCountsFromTheIntendedSendTime(t *testing.T) {
	_, url := serve(t, statuses(503, 200))
	reg := prometheus.NewRegistry()
	c := newClient(t, Options{CallSite: "lat", MaxAttempts: 3, Registerer: reg})
	due := time.Now().Add(-300 * time.Millisecond)
	var got []rundir.Attempt
	c.Do(context.Background(), Request{Op: 1, URL: url, Key: "k", Intended: due}, func(a rundir.Attempt) { got = append(got, a) })
	if len(got) != 2 || !got[0].Intended.Equal(due) || !got[1].Intended.IsZero() {
		t.Fatalf("attempts %+v: want the first due at %v, the retry due when sent", got, due)
	}
	if d := got[0].End.Sub(got[0].Due()); d < 300*time.Millisecond {
		t.Fatalf("first attempt's latency %v, want at least the 300 ms it was late", d)
	}
	if n := testutil.CollectAndCount(reg, "paytest_client_attempt_duration_seconds"); n != 2 {
		t.Fatalf("%d latency series, want 2 (unavailable, new)", n)
	}
	if v := testutil.ToFloat64(c.outcomes.WithLabelValues(rundir.OutcomeUnavailable)); v != 1 {
		t.Fatalf("unavailable outcomes = %v, want 1", v)
	}
	var m dto.Metric
	if err := c.latency.WithLabelValues(rundir.OutcomeUnavailable).(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	if h := m.GetHistogram(); h.GetSampleCount() != 1 || h.GetSampleSum() < 0.3 {
		t.Fatalf("503's latency sample: count %d sum %.3f s, want 1 sample of at least 0.3 s", h.GetSampleCount(), h.GetSampleSum())
	}
}
