// Package health gives every reference component the same operational
// endpoints: /metrics from its own registry, /healthz (the process is alive)
// and /readyz (200 only while its dependencies answer).
package health

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Mux returns a ServeMux serving GET /metrics from reg, GET /healthz, and
// GET /readyz answering 503 with ready's error until ready returns nil.
// Components add their own routes to it.
func Mux(reg *prometheus.Registry, ready func(ctx context.Context) error) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, req *http.Request) {
		if err := ready(req.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}

// Pinger is a database handle that can be pinged (a *pgxpool.Pool).
type Pinger interface {
	Ping(ctx context.Context) error
}

// Ready is the readiness of a component that needs Postgres and NATS: an
// error until it has started, while NATS is disconnected, or while the
// database does not answer a ping within a second.
func Ready(ctx context.Context, component string, started bool, db Pinger, nc *nats.Conn) error {
	if !started || db == nil || nc == nil {
		return errors.New(component + ": starting")
	}
	if !nc.IsConnected() {
		return fmt.Errorf("%s: NATS %s", component, nc.Status())
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := db.Ping(ctx); err != nil {
		return fmt.Errorf("%s: database: %w", component, err)
	}
	return nil
}
