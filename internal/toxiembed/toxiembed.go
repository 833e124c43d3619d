// Package toxiembed runs a toxiproxy v2 server inside the paytest process:
// the library's own API server, served on a random loopback port, and driven
// only through its real HTTP API with the toxiproxy client, exactly as a
// team would drive a standalone toxiproxy. attack puts it between the client
// and the charge service and between the relay/consumer and NATS.
package toxiembed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	toxiclient "github.com/Shopify/toxiproxy/v2/client"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Server is a running embedded toxiproxy.
type Server struct {
	api    *toxiproxy.ApiServer
	ln     net.Listener
	http   *http.Server
	client *toxiclient.Client
	url    string
	done   chan struct{}
	once   sync.Once
	err    error
}

// Start serves a toxiproxy API on 127.0.0.1 at a random port and returns
// once it answers.
func Start(ctx context.Context) (*Server, error) {
	api := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("toxiembed: listen: %w", err)
	}
	s := &Server{
		api:  api,
		ln:   ln,
		http: &http.Server{Handler: api.Routes(), ReadHeaderTimeout: 10 * time.Second},
		url:  "http://" + ln.Addr().String(),
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.err = err
		}
	}()
	s.client = toxiclient.NewClient(s.url)
	for {
		if _, err := s.client.Version(); err == nil {
			return s, nil
		} else if ctx.Err() != nil {
			s.Shutdown()
			return nil, fmt.Errorf("toxiembed: api not answering: %w", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// URL returns the API's base URL, http://127.0.0.1:PORT.
func (s *Server) URL() string { return s.url }

// Client returns a toxiproxy client for this server's API.
func (s *Server) Client() *toxiclient.Client { return s.client }

// CreateProxy creates an enabled proxy listening on a random loopback port
// in front of upstream (host:port) and returns it with its bound listen
// address filled in.
func (s *Server) CreateProxy(name, upstream string) (*toxiclient.Proxy, error) {
	if _, err := s.client.CreateProxy(name, "127.0.0.1:0", upstream); err != nil {
		return nil, fmt.Errorf("toxiembed: create proxy %s: %w", name, err)
	}
	// The API answers with the address actually bound; read it back to be
	// sure of what the server holds.
	got, err := s.client.Proxy(name)
	if err != nil {
		return nil, fmt.Errorf("toxiembed: read proxy %s: %w", name, err)
	}
	if _, port, _ := net.SplitHostPort(got.Listen); port == "0" || port == "" {
		return nil, fmt.Errorf("toxiembed: proxy %s reports no bound port (%q)", name, got.Listen)
	}
	return got, nil
}

// Shutdown stops every proxy (closing their connections) and the API
// server. It is safe to call more than once.
func (s *Server) Shutdown() {
	s.once.Do(func() {
		if ps, err := s.client.Proxies(); err == nil {
			for _, p := range ps {
				_ = p.Delete()
			}
		}
		// Whatever the API could not delete is stopped directly.
		_ = s.api.Collection.Clear()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.http.Shutdown(ctx); err != nil {
			_ = s.http.Close()
		}
		<-s.done
	})
}
