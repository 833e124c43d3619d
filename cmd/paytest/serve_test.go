package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/proc"
	"github.com/paytest/paytest/target/charge"
)

// TestServeHTTPWritesItsReadyFile: a component's endpoint writes the
// address it bound to its ready file, and that address serves.
func TestServeHTTPWritesItsReadyFile(t *testing.T) {
	rf, err := proc.NewReadyFile()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rf.Remove)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "up") })
	ep := endpoint{component: "test", listen: "127.0.0.1:0", readyFile: rf.Path, grace: time.Second}
	go func() { errc <- serveHTTP(ctx, slog.New(slog.DiscardHandler), ep, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("serveHTTP: %v", err)
		}
	})
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	r, err := rf.Await(wctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + r.Addr)
	if err != nil {
		t.Fatalf("the ready file's address %s: %v", r.Addr, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "up" {
		t.Fatalf("the ready file's address %s answered %q", r.Addr, b)
	}
}

func TestAPIKeysOf(t *testing.T) {
	keys, err := apiKeysOf(nil)
	if err != nil || len(keys) != 1 || keys[charge.DefaultAPIKey] != charge.DefaultMerchant {
		t.Fatalf("no --api-key: %v, %v; want the demo key alone", keys, err)
	}
	keys, err = apiKeysOf([]string{"acme=sk_a", "globex=sk_g", "acme=sk_a"})
	if err != nil || len(keys) != 2 || keys["sk_a"] != "acme" || keys["sk_g"] != "globex" {
		t.Fatalf("two merchants: %v, %v", keys, err)
	}
	for _, bad := range [][]string{{"acme"}, {"=sk"}, {"acme="}, {"acme=sk", "globex=sk"}} {
		if _, err := apiKeysOf(bad); apperr.Code(err) != apperr.EUSAGE {
			t.Errorf("%q: err %v, want a usage error", bad, err)
		}
	}
}
