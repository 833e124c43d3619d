package client_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/paytest/paytest/attack/client"
	"github.com/paytest/paytest/internal/rundir"
)

// A charge endpoint that is busy once, then answers: the client waits out
// the Retry-After (and a little more) and retries with the same key.
func Example() {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.Header().Set("Retry-After", "0.01")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, `{"id":"ch_1","key":%q}`, r.Header.Get("Idempotency-Key"))
	}))
	defer srv.Close()

	c, err := client.New(client.Options{CallSite: "example", Budget: client.NewBudget(client.BudgetOptions{})})
	if err != nil {
		panic(err)
	}
	res := c.Do(context.Background(), client.Request{Op: 1, URL: srv.URL, Key: "order-42", Body: []byte(`{"amount":1299}`)},
		func(a rundir.Attempt) {
			fmt.Printf("attempt %d: %s after %s (waited >= 10ms: %v)\n", a.Attempt, a.Outcome, a.DelayReason,
				time.Duration(a.DelayMS*float64(time.Millisecond)) >= 10*time.Millisecond)
		})
	fmt.Println(res.Status, res.ChargeID, res.Succeeded)
	// Output:
	// attempt 1: unavailable after first (waited >= 10ms: false)
	// attempt 2: new after retry-after (waited >= 10ms: true)
	// 200 ch_1 true
}

// An endpoint with its own conventions: the id nested in the body, replays
// marked by a header of its own, a changed body under a used key refused
// with 400 (as Stripe does).
func ExampleOptions() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/reuse":
			w.WriteHeader(http.StatusBadRequest)
		case "/replay":
			w.Header().Set("X-Cache", "HIT")
			fmt.Fprint(w, `{"data":{"charge":{"id":4711}}}`)
		default:
			fmt.Fprint(w, `{"data":{"charge":{"id":4711}}}`)
		}
	}))
	defer srv.Close()

	c, err := client.New(client.Options{IDField: "/data/charge/id", ReplayHeader: "X-Cache=hit", ReuseStatuses: []int{400}})
	if err != nil {
		panic(err)
	}
	for _, send := range []struct{ path, kind string }{{"/", rundir.KindCharge}, {"/replay", rundir.KindCharge}, {"/reuse", rundir.KindReuse}} {
		res := c.Do(context.Background(), client.Request{Op: 1, Kind: send.kind, URL: srv.URL + send.path, Key: "order-42", Body: []byte(`{"amount":1299}`)}, nil)
		fmt.Printf("%s: %d %s id=%q definite=%v\n", send.kind, res.Status, res.Outcome, res.ChargeID, res.Definite)
	}
	// Output:
	// charge: 200 new id="4711" definite=true
	// charge: 200 replay id="4711" definite=true
	// reuse: 400 mismatch id="" definite=true
}
