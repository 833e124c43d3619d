package charge_test

import (
	"context"
	"log"
	"net/http"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/paytest/paytest/target/charge"
)

// A charge service on a given database with two merchants, its reaper
// running in the background until the process is told to stop.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	svc, err := charge.New(ctx, charge.Config{
		DatabaseURL: "postgres://postgres@127.0.0.1:5432/paytest",
		APIKeys:     map[string]string{"sk_acme": "acme", "sk_globex": "globex"},
		Lease:       30 * time.Second,
		Retention:   24 * time.Hour,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer svc.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { _ = svc.Run(ctx) })
	srv := &http.Server{Addr: "127.0.0.1:8080", Handler: svc.Handler()}
	go func() { <-ctx.Done(); _ = srv.Shutdown(context.Background()) }()
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		log.Print(err)
	}
}
