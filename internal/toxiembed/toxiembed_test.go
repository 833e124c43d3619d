package toxiembed

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	toxiclient "github.com/Shopify/toxiproxy/v2/client"
)

func start(t *testing.T) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

// backend is a real HTTP server counting the requests it handled and the
// connections it accepted.
func backend(t *testing.T) (srv *httptest.Server, handled, conns *atomic.Int64) {
	t.Helper()
	handled, conns = new(atomic.Int64), new(atomic.Int64)
	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		handled.Add(1)
		_, _ = io.WriteString(w, "charged")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, handled, conns
}

// mustProxy creates proxy name on s in front of srv.
func mustProxy(t *testing.T, s *Server, name string, srv *httptest.Server) *toxiclient.Proxy {
	t.Helper()
	p, err := s.CreateProxy(name, strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func post(url string, timeout time.Duration) (string, error) {
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Post(url, "text/plain", strings.NewReader("x"))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestDownstreamToxicEatsTheResponseAfterTheServerHandledIt(t *testing.T) {
	tests := []struct {
		name  string
		typ   string
		attrs toxiclient.Attributes
	}{
		{"limit_data 0 closes at the first response byte", "limit_data", toxiclient.Attributes{"bytes": 0}},
		{"timeout 0 swallows the response", "timeout", toxiclient.Attributes{"timeout": 0}},
	}
	s := start(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, handled, _ := backend(t)
			name := "charge" + string(rune('a'+i))
			p := mustProxy(t, s, name, srv)
			url := "http://" + p.Listen + "/charge"
			if body, err := post(url, 2*time.Second); err != nil || body != "charged" {
				t.Fatalf("through a clean proxy: %q, %v", body, err)
			}
			if _, err := p.AddToxic("eat", tt.typ, "downstream", 1, tt.attrs); err != nil {
				t.Fatal(err)
			}
			before := handled.Load()
			if body, err := post(url, 500*time.Millisecond); err == nil {
				t.Fatalf("response %q came through the %s toxic", body, tt.typ)
			}
			if got := handled.Load(); got != before+1 {
				t.Fatalf("server handled %d requests during the toxic, want 1", got-before)
			}
			if err := p.RemoveToxic("eat"); err != nil {
				t.Fatal(err)
			}
			if body, err := post(url, 2*time.Second); err != nil || body != "charged" {
				t.Fatalf("after removing the toxic: %q, %v", body, err)
			}
		})
	}
}

func TestDisableCutsConnectionsAndEnableRestoresThem(t *testing.T) {
	s := start(t)
	srv, _, _ := backend(t)
	p := mustProxy(t, s, "nats", srv)
	listen := p.Listen
	url := "http://" + listen + "/"
	// A keep-alive connection open through the proxy before the cut.
	keep := &http.Client{Timeout: 2 * time.Second}
	resp, err := keep.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	if err := p.Disable(); err != nil {
		t.Fatal(err)
	}
	if _, err := post(url, time.Second); err == nil {
		t.Fatal("request went through a disabled proxy")
	}
	if _, err := keep.Get(url); err == nil {
		t.Fatal("the connection opened before the cut survived it")
	}
	if err := p.Enable(); err != nil {
		t.Fatal(err)
	}
	got, err := s.Client().Proxy("nats")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Enabled || got.Listen != listen {
		t.Fatalf("after enable: enabled=%v listen=%s, want true %s", got.Enabled, got.Listen, listen)
	}
	if body, err := post(url, 2*time.Second); err != nil || body != "charged" {
		t.Fatalf("after enable: %q, %v", body, err)
	}
}

func TestShutdownClosesProxiesAndIsIdempotent(t *testing.T) {
	s := start(t)
	srv, _, _ := backend(t)
	p := mustProxy(t, s, "charge", srv)
	s.Shutdown()
	s.Shutdown()
	if _, err := post("http://"+p.Listen+"/", 500*time.Millisecond); err == nil {
		t.Fatal("proxy still serving after Shutdown")
	}
	if _, err := post(s.URL()+"/version", 500*time.Millisecond); err == nil {
		t.Fatal("API still serving after Shutdown")
	}
}
