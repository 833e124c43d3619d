package main

import (
	"log/slog"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/paytest/paytest/target/relay"
)

func newServeRelayCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "relay",
		Short:   "Run the outbox relay (Postgres outbox -> NATS JetStream)",
		Long:    relayLong + "\n\n" + readyFileHelp,
		Example: relayExample,
		Args:    cobra.NoArgs,
		RunE:    runServeRelay,
	}
	f := cmd.Flags()
	endpointFlags(f, "address for /metrics, /healthz, /readyz, HOST:PORT (port 0 picks a free one; the bound address is logged)",
		"how long to finish the current batch and drain HTTP on SIGTERM")
	brokerFlags(f, "PostgreSQL URL holding the outbox (default: a throwaway embedded cluster)",
		"JetStream stream to create or update", "subject to publish events on")
	relayFlags(f)
	return cmd
}

// relayFlags are the relay's own flags: batching, pacing, bookkeeping and
// deliberate faults.
func relayFlags(f *pflag.FlagSet) {
	f.Int("batch", relay.DefaultBatch, "rows claimed per transaction")
	f.Int("workers", relay.DefaultWorkers, "claim-publish-mark pipelines at once (each already marks the last batch and claims the next while it publishes one; more workers step over each other's locked rows)")
	f.Float64("publish-rate", 0, "publish at most this many events per second (0 = unlimited)")
	f.Int("burst", 0, "token bucket size for --publish-rate (0 = a tenth of a second's worth)")
	f.Bool("keep-published", false, "keep a record of each published row in outbox_published (published_at, attempts, last error) instead of deleting it; costs Postgres about 2 us per row")
	f.Bool("publish-dedup", true, "set Nats-Msg-Id to the event id so JetStream drops republished events within its window")
	f.StringArray("crash-at", nil, "SIGKILL this process at a point: "+relay.CrashAfterPublish+", optionally :N for the N-th pass")
	f.Duration("poll-interval", relay.DefaultPollInterval, "how often one idle worker probes for new rows when the outbox is drained")
}

// runServeRelay runs the relay beside its HTTP endpoints until the
// command's context ends, on embedded servers for what is not given.
func runServeRelay(cmd *cobra.Command, _ []string) error {
	v, err := settings(cmd, nil)
	if err != nil {
		return err
	}
	log, err := newLogger(cmd, v)
	if err != nil {
		return err
	}
	cfg, err := relayConfig(v, log)
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
	r, err := relay.New(cfg)
	if err != nil {
		return err
	}
	return runWithHTTP(ctx, log, endpointOf(v, "relay"), r.Handler(), r.Run)
}

// relayConfig turns resolved settings into the relay's checked
// configuration, less its database and broker URLs.
func relayConfig(v *viper.Viper, log *slog.Logger) (relay.Config, error) {
	cfg := relay.Config{
		Stream:        v.GetString("stream"),
		Subject:       v.GetString("subject"),
		Batch:         v.GetInt("batch"),
		Workers:       v.GetInt("workers"),
		PublishRate:   v.GetFloat64("publish-rate"),
		Burst:         v.GetInt("burst"),
		PublishDedup:  v.GetBool("publish-dedup"),
		KeepPublished: v.GetBool("keep-published"),
		PollInterval:  v.GetDuration("poll-interval"),
		CrashAt:       splitList(v.GetStringSlice("crash-at")),
		Logger:        log,
	}
	return cfg, cfg.Validate()
}

// relayLong is the help of serve relay.
const relayLong = `Run the outbox relay: it claims unpublished outbox rows in batches
(SELECT ... FROM outbox ORDER BY id LIMIT n FOR UPDATE SKIP LOCKED: the
outbox table holds only unpublished rows), publishes each to JetStream, waits
for the broker's acks, and marks the acked rows published in the same
transaction by deleting them (--keep-published moves them to
outbox_published instead, with published_at, attempts and last error). Rows
that commit out of id order are never skipped, and two relays never publish
one row twice in the normal path. While it publishes one batch, the relay
marks the last and claims the next. A crash between an ack and the mark
republishes the batches in flight (at most two): the relay is at-least-once,
and the consumer's inbox dedups.

--publish-rate paces publishing with a token bucket (events per second, 0 =
unlimited; --burst tokens, default a tenth of a second's worth), so a backlog
drains at a set pace. Failed publishes back off with full jitter and bump the
row's attempts and last_error. Outages of Postgres or NATS are ridden out.

Metrics: paytest_relay_published_total, paytest_outbox_pending,
paytest_outbox_lag_seconds (age of the oldest unpublished row). With no
--database-url a throwaway Postgres is started, with no --nats-url an embedded
NATS server (its URL is logged); both are removed on exit.`

// relayExample shows serve relay at work.
const relayExample = `  paytest serve relay --database-url postgres://postgres@127.0.0.1:5432/paytest \
    --nats-url nats://127.0.0.1:4222 --publish-rate 500

  # die right after the broker acked the 5th publish, before marking it
  paytest serve relay --crash-at after-publish:5 --publish-dedup=false ...`
