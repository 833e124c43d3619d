package relay_test

import (
	"context"
	"log"
	"net/http"
	"os/signal"
	"syscall"

	"github.com/paytest/paytest/target/relay"
)

// A relay that drains the outbox of a local database into a local NATS at
// no more than 500 events per second, with /metrics on :9101.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	r, err := relay.New(relay.Config{
		DatabaseURL:  "postgres://postgres@127.0.0.1:5432/paytest",
		NATSURL:      "nats://127.0.0.1:4222",
		PublishRate:  500,
		PublishDedup: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = http.ListenAndServe("127.0.0.1:9101", r.Handler()) }()
	if err := r.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
