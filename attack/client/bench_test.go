package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkDo is one attempt's cost on the client's side against a local
// endpoint answering a small JSON charge: time, bytes and allocations per
// Do (the endpoint's share included).
func BenchmarkDo(b *testing.B) {
	body := []byte(`{"id":"ch_1","amount":1299,"currency":"EUR"}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	c, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.CloseIdleConnections()
	req := Request{Op: 1, Kind: "charge", URL: srv.URL, Key: "k", Body: []byte(`{"amount":1299}`)}
	b.ReportAllocs()
	for b.Loop() {
		if res := c.Do(context.Background(), req, nil); !res.Succeeded {
			b.Fatalf("%+v", res)
		}
	}
}
