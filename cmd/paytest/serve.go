package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/natsembed"
	"github.com/paytest/paytest/internal/pgembed"
)

func newServeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve charge|relay|consumer|stack",
		Short: "Run the reference payment system's components, each as its own process",
		Long: `Run the bundled reference payment system's components.

Each component logs the address it actually bound ("msg=listening addr=...")
once it is up; --listen 127.0.0.1:0 picks a free port. Each serves /metrics,
/healthz and /readyz, and drains gracefully on SIGTERM.`,
	}
	cmd.AddCommand(newServeChargeCmd(), newServeRelayCmd(), newServeConsumerCmd(), newServeStackCmd())
	return cmd
}

// serveHTTP binds listen, logs the bound address in the form the attack
// orchestrator and the tests parse, serves h until ctx ends, and then drains
// in-flight requests for up to grace.
func serveHTTP(ctx context.Context, log *slog.Logger, component, listen string, h http.Handler, grace time.Duration) error {
	return serveServer(ctx, log, component, listen, &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, nil, grace)
}

// serveServer is serveHTTP with a server of the caller's (its timeouts and
// limits) and, if wrap is not nil, the listener wrapped by it.
func serveServer(ctx context.Context, log *slog.Logger, component, listen string, srv *http.Server,
	wrap func(net.Listener) net.Listener, grace time.Duration) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return apperr.Wrap(apperr.EUSAGE, err, "--listen %s", listen)
	}
	if wrap != nil {
		ln = wrap(ln)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("listening", "component", component, "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("draining", "component", component, "grace", grace)
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	<-errc
	return nil
}

// embeddedPGForServe returns url, or with none the URL of a throwaway
// Postgres cluster it starts, with the function that stops it.
func embeddedPGForServe(ctx context.Context, log *slog.Logger, url string) (string, func(), error) {
	if url != "" {
		return url, func() {}, nil
	}
	start := time.Now()
	cluster, err := pgembed.Start(ctx, pgembed.Options{})
	if err != nil {
		return "", nil, err
	}
	url = cluster.URL("postgres")
	log.Info("embedded postgres up", "took", time.Since(start).Round(time.Millisecond), "url", url, "dir", cluster.Dir())
	return url, func() {
		err := cluster.Stop()
		log.Info("embedded postgres stopped", "err", err)
	}, nil
}

// embeddedNATSForServe returns url, or with none the URL of an embedded
// NATS JetStream server it starts, with the function that stops it.
func embeddedNATSForServe(log *slog.Logger, url string) (string, func(), error) {
	if url != "" {
		return url, func() {}, nil
	}
	ns, err := natsembed.Start(natsembed.Options{})
	if err != nil {
		return "", nil, err
	}
	log.Info("embedded nats up", "url", ns.URL())
	return ns.URL(), func() {
		ns.Shutdown()
		log.Info("embedded nats stopped")
	}, nil
}

// runWithHTTP runs a component's work loop beside its HTTP endpoints until
// ctx ends or either fails, then stops both and returns the first error.
func runWithHTTP(ctx context.Context, log *slog.Logger, component, listen string, h http.Handler, grace time.Duration,
	run func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		errs   []string
		first  error
		record = func(err error) {
			if err == nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if first == nil {
				first = err
			}
			errs = append(errs, err.Error())
		}
	)
	wg.Go(func() {
		defer cancel()
		record(run(ctx))
	})
	wg.Go(func() {
		defer cancel()
		record(serveHTTP(ctx, log, component, listen, h, grace))
	})
	wg.Wait()
	if len(errs) > 1 {
		log.Error(component+" stopped with errors", "errors", strings.Join(errs, "; "))
	}
	return first
}

// brokerInfraForServe gives the relay and the consumer their database and
// broker: the URLs given, or embedded servers for those missing, with one
// function that stops whatever it started.
func brokerInfraForServe(ctx context.Context, log *slog.Logger, dbURL, natsURL string) (string, string, func(), error) {
	dbURL, stopDB, err := embeddedPGForServe(ctx, log, dbURL)
	if err != nil {
		return "", "", nil, err
	}
	natsURL, stopNATS, err := embeddedNATSForServe(log, natsURL)
	if err != nil {
		stopDB()
		return "", "", nil, err
	}
	return dbURL, natsURL, func() { stopNATS(); stopDB() }, nil
}
