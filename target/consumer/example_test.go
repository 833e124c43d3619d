package consumer_test

import (
	"context"
	"log"
	"net/http"
	"os/signal"
	"syscall"

	"github.com/paytest/paytest/target/consumer"
)

// A ledger consumer on a local database and NATS, with /metrics on :9102;
// consumer.LedgerQuery then counts effects per logical operation.
func Example() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	c, err := consumer.New(consumer.Config{
		DatabaseURL: "postgres://postgres@127.0.0.1:5432/paytest",
		NATSURL:     "nats://127.0.0.1:4222",
		MaxInflight: 256,
		MaxDeliver:  5,
	})
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = http.ListenAndServe("127.0.0.1:9102", c.Handler()) }()
	if err := c.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
