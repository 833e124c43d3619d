package main

import (
	"log/slog"
	"slices"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/target/consumer"
)

func newServeConsumerCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "consumer",
		Short:   "Run the ledger consumer (NATS JetStream -> ledger, with an inbox)",
		Long:    consumerLong + "\n\n" + readyFileHelp,
		Example: consumerExample,
		Args:    cobra.NoArgs,
		RunE:    runServeConsumer,
	}
	f := cmd.Flags()
	endpointFlags(f, "address for /metrics, /healthz, /readyz, HOST:PORT (port 0 picks a free one; the bound address is logged)",
		"how long to finish in-flight events and drain HTTP on SIGTERM")
	brokerFlags(f, "PostgreSQL URL for the ledger tables (default: a throwaway embedded cluster)",
		"JetStream stream to create or update and consume", "subject events are published on")
	consumerFlags(f)
	return cmd
}

// consumerFlags are the consumer's own flags: delivery, retries, ledger and
// deliberate faults.
func consumerFlags(f *pflag.FlagSet) {
	f.String("durable", consumer.DefaultDurable, "durable consumer name")
	f.Int("max-inflight", consumer.DefaultMaxInflight, "most events delivered and not yet acked (MaxAckPending)")
	f.Int("max-deliver", consumer.DefaultMaxDeliver, "deliveries before a failing event is dead-lettered (-1 = retry forever)")
	f.Duration("ack-wait", consumer.DefaultAckWait, "how long the broker waits for an ack before redelivering")
	f.Duration("nak-delay", consumer.DefaultNakDelay, "first retry delay of a failing event; doubles per delivery, capped at --ack-wait")
	f.String("dlq-stream", consumer.DefaultDLQStream, "dead-letter stream")
	f.Int("catalog", consumer.DefaultCatalog, "skus in the inventory: sku-1 .. sku-N")
	f.Int("db-conns", consumer.DefaultDBConns, "database connection pool size")
	f.StringArray("crash-at", nil, "SIGKILL this process at a point: "+consumer.CrashAfterApplyBeforeAck+", optionally :N for the N-th pass")
	f.StringArray("unsafe", nil, "break a guarantee on purpose: "+consumer.UnsafeNoInboxDedup)
}

// runServeConsumer runs the consumer beside its HTTP endpoints until the
// command's context ends, on embedded servers for what is not given.
func runServeConsumer(cmd *cobra.Command, _ []string) error {
	v, err := settings(cmd, nil)
	if err != nil {
		return err
	}
	log, err := newLogger(cmd, v)
	if err != nil {
		return err
	}
	cfg, err := consumerConfig(v, log)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	dbURL, natsURL, stopInfra, err := brokerInfraForServe(ctx, log, v.GetString("database-url"), v.GetString("nats-url"))
	if err != nil {
		return err
	}
	defer stopInfra()
	cfg.DatabaseURL, cfg.NATSURL = dbURL, natsURL
	c, err := consumer.New(cfg)
	if err != nil {
		return err
	}
	return runWithHTTP(ctx, log, endpointOf(v, "consumer"), c.Handler(), c.Run)
}

// consumerConfig turns resolved settings into the consumer's checked
// configuration, less its database and broker URLs.
func consumerConfig(v *viper.Viper, log *slog.Logger) (consumer.Config, error) {
	unsafe := splitList(v.GetStringSlice("unsafe"))
	for _, mode := range unsafe {
		if mode != consumer.UnsafeNoInboxDedup {
			return consumer.Config{}, apperr.Errorf(apperr.EUSAGE, "--unsafe %q: the consumer knows only %s", mode, consumer.UnsafeNoInboxDedup)
		}
	}
	cfg := consumer.Config{
		Stream:       v.GetString("stream"),
		Subject:      v.GetString("subject"),
		Durable:      v.GetString("durable"),
		MaxInflight:  v.GetInt("max-inflight"),
		MaxDeliver:   v.GetInt("max-deliver"),
		AckWait:      v.GetDuration("ack-wait"),
		NakDelay:     v.GetDuration("nak-delay"),
		DLQStream:    v.GetString("dlq-stream"),
		Catalog:      v.GetInt("catalog"),
		DBConns:      v.GetInt("db-conns"),
		NoInboxDedup: slices.Contains(unsafe, consumer.UnsafeNoInboxDedup),
		CrashAt:      splitList(v.GetStringSlice("crash-at")),
		Logger:       log,
	}
	return cfg, cfg.Validate()
}

// consumerLong is the help of serve consumer.
const consumerLong = `Run the ledger consumer: a durable JetStream pull consumer (explicit acks,
at most --max-inflight unacked) that applies each charge.created event in one
Postgres transaction: the event id goes into ledger_inbox (ON CONFLICT DO
NOTHING); only if it is new, a ledger entry with two postings (the customer
debited, the merchant credited, summing to zero) and a stock decrement for the
sku; commit; then ack. A redelivered event is deduped by the inbox.

An event that cannot be applied (undecodable, unknown sku, an unbalanced
posting) is retried with a growing delay up to --max-deliver deliveries, then
published to the dead-letter stream (--dlq-stream, subject "<subject>.dlq")
with headers reason and deliveries, and terminated. Healthy events keep
flowing meanwhile. Outages of Postgres or NATS are ridden out.

Tables: ledger_inbox, ledger_entries, ledger_postings, ledger_inventory
(seeded with sku-1 .. sku-<catalog>). Metrics:
paytest_side_effects_applied_total, paytest_inbox_duplicates_total,
paytest_dlq_messages_total, paytest_consumer_inflight(_max),
paytest_consumer_redeliveries_total.

--unsafe no-inbox-dedup skips the inbox, so a redelivered event is applied
twice: it exists to show that paytest verify catches it.`

// consumerExample shows serve consumer at work.
const consumerExample = `  paytest serve consumer --database-url postgres://postgres@127.0.0.1:5432/paytest \
    --nats-url nats://127.0.0.1:4222

  # die after the 3rd event's transaction committed, before its ack
  paytest serve consumer --crash-at after-apply-before-ack:3 --ack-wait 2s ...`
