package toxiembed

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"
)

// eatTrial sends n requests one after another through c (keep-alive) and
// returns how many were eaten.
func eatTrial(t *testing.T, c *http.Client, url string, n int) int {
	t.Helper()
	eaten := 0
	for range n {
		resp, err := c.Post(url, "text/plain", strings.NewReader("x"))
		if err != nil {
			eaten++
			continue
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != "charged" {
			eaten++
		}
	}
	return eaten
}

// keepAlive is a client of its own that keeps one connection alive.
func keepAlive(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: 2 * time.Second, Transport: tr}
}

// A response is eaten with the toxic's probability whatever the connection
// it travels on: a keep-alive client loses about that share of its
// responses, every one of them handled by the server, and opens a new
// connection only after an eaten one.
func TestEatResponseEatsEachResponseWithItsProbability(t *testing.T) {
	tests := []struct {
		name     string
		p        float64
		min, max int
	}{
		{"never", 0, 0, 0},
		{"always", 1, 300, 300},
		// 300 draws at 0.3: mean 90, sd 7.9; 60..120 is beyond 3.5 sd.
		{"three in ten", 0.3, 60, 120},
	}
	s := start(t)
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, requests, conns := backend(t)
			p := mustProxy(t, s, "eat"+string(rune('a'+i)), srv)
			if _, err := p.AddToxic("eat", EatResponseType, "downstream", 1, toxiclient.Attributes{"probability": tc.p}); err != nil {
				t.Fatal(err)
			}
			eaten := eatTrial(t, keepAlive(t), "http://"+p.Listen+"/charge", 300)
			if eaten < tc.min || eaten > tc.max {
				t.Fatalf("%d of 300 eaten at probability %v, want %d..%d", eaten, tc.p, tc.min, tc.max)
			}
			if got := requests.Load(); got != 300 {
				t.Fatalf("the server handled %d requests, want every one of 300 (eaten or not)", got)
			}
			// A connection ends with each eaten response, and only then.
			if got := conns.Load(); got < int64(eaten) || got > int64(eaten)+1 {
				t.Fatalf("%d connections for %d eaten responses, want %d or %d", got, eaten, eaten, eaten+1)
			}
		})
	}
}

// Removed, the toxic leaves the open connections alone.
func TestEatResponseRemovedLeavesConnectionsOpen(t *testing.T) {
	s := start(t)
	srv, _, conns := backend(t)
	p := mustProxy(t, s, "eatremove", srv)
	url := "http://" + p.Listen + "/charge"
	if _, err := p.AddToxic("eat", EatResponseType, "downstream", 1, toxiclient.Attributes{"probability": 0}); err != nil {
		t.Fatal(err)
	}
	c := keepAlive(t)
	if eaten := eatTrial(t, c, url, 5); eaten != 0 {
		t.Fatalf("%d eaten at probability 0", eaten)
	}
	if err := p.RemoveToxic("eat"); err != nil {
		t.Fatal(err)
	}
	if eaten := eatTrial(t, c, url, 5); eaten != 0 || conns.Load() != 1 {
		t.Fatalf("%d eaten, %d connections after removing the toxic: want 0 and the one connection kept throughout", eaten, conns.Load())
	}
}
