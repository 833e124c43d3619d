package consumer_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/paytest/paytest/target/consumer/consumertest"
)

// BenchmarkConsumerApply measures the consumer's apply rate: n events wait
// in the stream, the consumer (default in-flight bound and pool) applies
// them, and the rate is taken from the ledger's own applied_at times.
func BenchmarkConsumerApply(b *testing.B) {
	const n = 10000
	for range b.N {
		env := consumertest.New(b, "")
		env.EnsureStream(b)
		js, err := jetstream.New(env.NC, jetstream.WithPublishAsyncMaxPending(4096))
		if err != nil {
			b.Fatal(err)
		}
		for i := range n {
			if _, err := js.PublishAsync(env.Subject, consumertest.Payload(b, consumertest.Event(i))); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			b.Fatal("publish acks did not arrive")
		}
		cfg := env.ConsumerConfig()
		cfg.MaxInflight, cfg.DBConns = 256, 16 // the serve defaults
		c, url := startConsumer(b, cfg)
		env.WaitLedger(b, 5*time.Minute, n)
		var took time.Duration
		if err := env.Pool.QueryRow(context.Background(),
			`SELECT max(applied_at) - min(applied_at) FROM ledger_entries`).Scan(&took); err != nil {
			b.Fatal(err)
		}
		rate := float64(n-1) / took.Seconds()
		got := consumertest.Scrape(b, url+"/metrics")
		b.ReportMetric(rate, "applied/s")
		b.ReportMetric(float64(c.InflightMax()), "peak_inflight")
		b.Logf("%d events applied in %s = %.0f/s (one transaction each: inbox, entry, 2 postings, stock), peak in-flight %d, redeliveries %v",
			n, took.Round(time.Millisecond), rate, c.InflightMax(), got["paytest_consumer_redeliveries_total"])
		if got["paytest_side_effects_applied_total"] != n {
			b.Fatalf("applied %v, want %d", got["paytest_side_effects_applied_total"], n)
		}
	}
}
