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
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/natsembed"
	"github.com/paytest/paytest/internal/pgembed"
	"github.com/paytest/paytest/internal/proc"
	"github.com/paytest/paytest/target/outbox"
)

func newServeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve charge|relay|consumer|stack",
		Short: "Run the reference payment system's components, each as its own process",
		Long: `Run the bundled reference payment system's components.

Each component logs the address it actually bound ("msg=listening addr=...")
once it is up; --listen 127.0.0.1:0 picks a free port. Each serves /metrics,
/healthz and /readyz, and drains gracefully on SIGTERM.

` + readyFileHelp,
	}
	cmd.AddCommand(newServeChargeCmd(), newServeRelayCmd(), newServeConsumerCmd(), newServeStackCmd())
	return cmd
}

// readyFileHelp documents the ready file, the channel through which a
// parent process learns a component's address (internal/proc).
const readyFileHelp = `A program that starts a component learns its address from a ready file, not
from the log: set ` + proc.EnvReadyFile + `=PATH (or the hidden flag --ready-file PATH)
and, once listening, the component writes {"addr":"HOST:PORT","pid":N} to PATH
(atomically: a temporary file renamed into place).`

// endpoint is where a component serves HTTP and how it reports and drains it.
type endpoint struct {
	component string
	listen    string
	readyFile string // written once listening; "" for none
	grace     time.Duration
}

// endpointFlags adds the flags of a component's HTTP endpoint: listenUse
// describes --listen, graceUse --grace.
func endpointFlags(f *pflag.FlagSet, listenUse, graceUse string) {
	f.String("listen", "127.0.0.1:0", listenUse)
	f.Duration("grace", 10*time.Second, graceUse)
	f.String("ready-file", "", "write {\"addr\":...,\"pid\":...} to this file once listening (also "+proc.EnvReadyFile+")")
	_ = f.MarkHidden("ready-file")
}

// endpointOf reads the flags endpointFlags added.
func endpointOf(v *viper.Viper, component string) endpoint {
	return endpoint{
		component: component,
		listen:    v.GetString("listen"),
		readyFile: v.GetString("ready-file"),
		grace:     v.GetDuration("grace"),
	}
}

// serveHTTP binds the endpoint, logs the bound address and writes it to the
// ready file, serves h until ctx ends, and then drains in-flight requests
// for up to the endpoint's grace.
func serveHTTP(ctx context.Context, log *slog.Logger, ep endpoint, h http.Handler) error {
	return serveServer(ctx, log, ep, &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, nil)
}

// serveServer is serveHTTP with a server of the caller's (its timeouts and
// limits) and, if wrap is not nil, the listener wrapped by it.
func serveServer(ctx context.Context, log *slog.Logger, ep endpoint, srv *http.Server, wrap func(net.Listener) net.Listener) error {
	ln, err := net.Listen("tcp", ep.listen)
	if err != nil {
		return apperr.Wrap(apperr.EUSAGE, err, "--listen %s", ep.listen)
	}
	if wrap != nil {
		ln = wrap(ln)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("listening", "component", ep.component, "addr", ln.Addr().String())
	if ep.readyFile != "" {
		if err := proc.WriteReady(ep.readyFile, ln.Addr().String()); err != nil {
			_ = srv.Close()
			<-errc
			return err
		}
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("draining", "component", ep.component, "grace", ep.grace)
	sctx, cancel := context.WithTimeout(context.Background(), ep.grace)
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
func runWithHTTP(ctx context.Context, log *slog.Logger, ep endpoint, h http.Handler, run func(context.Context) error) error {
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
		record(serveHTTP(ctx, log, ep, h))
	})
	wg.Wait()
	if len(errs) > 1 {
		log.Error(ep.component+" stopped with errors", "errors", strings.Join(errs, "; "))
	}
	return first
}

// brokerFlags adds the database and broker flags the relay and the
// consumer share; the usages say what each does with them.
func brokerFlags(f *pflag.FlagSet, databaseUse, streamUse, subjectUse string) {
	f.String("database-url", "", databaseUse)
	f.String("nats-url", "", "NATS URL with JetStream (default: an embedded server)")
	f.String("stream", outbox.DefaultStream, streamUse)
	f.String("subject", outbox.DefaultSubject, subjectUse)
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
