package load_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"

	"github.com/paytest/paytest/attack/client"
	"github.com/paytest/paytest/attack/load"
	"github.com/paytest/paytest/attack/plan"
)

// Run a seeded plan (with duplicate senders) against an endpoint that
// remembers the keys it has seen, and count what it charged.
func ExampleRun() {
	var mu sync.Mutex
	charged := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		key := r.Header.Get("Idempotency-Key")
		if charged[key] {
			w.Header().Set("Idempotent-Replayed", "true")
		}
		charged[key] = true
		fmt.Fprintf(w, `{"id":"ch_%s"}`, key[:8])
	}))
	defer srv.Close()

	p, err := plan.New(plan.Config{Ops: 50, DuplicateRate: 0.5, Seed: 7})
	if err != nil {
		panic(err)
	}
	c, err := client.New(client.Options{})
	if err != nil {
		panic(err)
	}
	sum, err := load.Run(context.Background(), p, load.Config{URL: srv.URL, Concurrency: 4, Client: c})
	if err != nil {
		panic(err)
	}
	fmt.Println(sum.Confirmed, "of", sum.Ops, "confirmed;", len(charged), "keys charged;", sum.Attempts > sum.Ops)
	// Output: 50 of 50 confirmed; 50 keys charged; true
}
