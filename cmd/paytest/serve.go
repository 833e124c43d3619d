package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/paytest/paytest/internal/apperr"
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
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return apperr.Wrap(apperr.EUSAGE, err, "--listen %s", listen)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
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
