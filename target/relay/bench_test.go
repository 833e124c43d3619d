package relay_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paytest/paytest/internal/testinfra"
	"github.com/paytest/paytest/target/consumer/consumertest"
	"github.com/paytest/paytest/target/outbox"
	"github.com/paytest/paytest/target/relay"
)

// relayDrain starts a relay, then commits n outbox rows in one transaction,
// and returns the time from that commit until the last row was marked
// published (claim, publish, ack and mark included; the relay's own start-up
// is not), with the payloads for the raw loop. The time of each mark is
// taken by a statement trigger on the outbox's deletes (the relay marks a
// batch with one statement just before its COMMIT), so the figure does not
// depend on how often the benchmark polls. The relay is stopped before it
// returns, so that idle relays of earlier rounds do not poll the database
// during later ones.
func relayDrain(b *testing.B, n int, tune func(*relay.Config)) (time.Duration, [][]byte) {
	env := consumertest.New(b, "")
	cfg := relayConfig(env)
	cfg.PublishDedup = true // the serve default
	if tune != nil {
		tune(&cfg)
	}
	ctx := context.Background()
	_, err := env.Pool.Exec(ctx, `CREATE TABLE bench_marks (at timestamptz NOT NULL);
		CREATE FUNCTION bench_mark() RETURNS trigger LANGUAGE plpgsql AS
			$$ BEGIN INSERT INTO bench_marks VALUES (clock_timestamp()); RETURN NULL; END $$;
		CREATE TRIGGER bench_mark AFTER DELETE ON outbox FOR EACH STATEMENT EXECUTE FUNCTION bench_mark();`)
	if err != nil {
		b.Fatal(err)
	}
	_, stop := startRelay(b, cfg)
	defer stop()

	// The rows are copied in, in one transaction: the rows outbox.Insert
	// writes, faster, since only the drain is measured.
	payloads := make([][]byte, n)
	rows := make([][]any, n)
	for i := range n {
		ev := consumertest.Event(i)
		payloads[i] = consumertest.Payload(b, ev)
		rows[i] = []any{ev.EventID, outbox.EventType, ev.ChargeID, payloads[i]}
	}
	_, err = env.Pool.CopyFrom(ctx, pgx.Identifier{"outbox"}, []string{"event_id", "event_type", "aggregate_id", "payload"}, pgx.CopyFromRows(rows))
	committed := time.Now()
	if err != nil {
		b.Fatal(err)
	}
	// A probe, not count(*): counting every unpublished row each time would
	// load the database the relay is working in.
	testinfra.WaitFor(b, 5*time.Minute, func() error {
		var left bool
		if err := env.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM outbox)`).Scan(&left); err != nil {
			return err
		}
		if left {
			return fmt.Errorf("rows unpublished")
		}
		return nil
	})
	var last time.Time
	if err := env.Pool.QueryRow(ctx, `SELECT max(at) FROM bench_marks`).Scan(&last); err != nil {
		b.Fatal(err)
	}
	return last.Sub(committed), payloads
}

func rawPublish(b *testing.B, payloads [][]byte) time.Duration {
	env := consumertest.New(b, "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := env.JS.CreateOrUpdateStream(ctx, outbox.StreamConfig(env.Stream, env.Subject)); err != nil {
		b.Fatal(err)
	}
	js, err := jetstream.New(env.NC, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for i, p := range payloads {
		msg := &nats.Msg{Subject: env.Subject, Data: p, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("raw-%d", i))
		if _, err := js.PublishMsgAsync(msg); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		b.Fatal("raw publish: acks did not arrive")
	}
	took := time.Since(start)
	if n, err := env.StreamLen(env.Stream); err != nil || n != len(payloads) {
		b.Fatalf("raw stream holds %d (%v), want %d", n, err, len(payloads))
	}
	return took
}

// BenchmarkRelayVsRawJetStream compares the relay, unthrottled, from outbox
// row to acked publish (and marked row), with a raw JetStream async-publish
// loop of the same payloads in the same run. Target: >= 0.5x raw. It runs
// the relay with the serve defaults (relay.DefaultWorkers workers, batch
// relay.DefaultBatch, published rows deleted), with --keep-published (rows
// moved to outbox_published), and with four workers of a quarter batch each
// (the same rows in flight), interleaved with the raw loop over rounds, and
// reports the medians (the machine is shared: single runs swing). Each
// drain is 50,000 rows: at 20,000 the fixed costs (the idle poll that finds
// the rows, the first claim and the last mark) were about 6% of the relay's
// time and the raw loop lasted about 0.1 s, so single rounds swung by a
// third.
func BenchmarkRelayVsRawJetStream(b *testing.B) {
	const n, rounds = 50000, 5
	for range b.N {
		var def, keep, four, raw []float64
		for range rounds {
			took, payloads := relayDrain(b, n, nil)
			def = append(def, float64(n)/took.Seconds())
			raw = append(raw, float64(n)/rawPublish(b, payloads).Seconds())
			took, _ = relayDrain(b, n, func(c *relay.Config) { c.KeepPublished = true })
			keep = append(keep, float64(n)/took.Seconds())
			took, _ = relayDrain(b, n, func(c *relay.Config) { c.Workers, c.Batch = 4, relay.DefaultBatch/4 })
			four = append(four, float64(n)/took.Seconds())
		}
		defRate, keepRate, fourRate, rawRate := median(def), median(keep), median(four), median(raw)
		b.ReportMetric(defRate, "relay_events/s")
		b.ReportMetric(keepRate, "relay_keep_events/s")
		b.ReportMetric(fourRate, "relay_4workers_events/s")
		b.ReportMetric(rawRate, "raw_events/s")
		b.ReportMetric(defRate/rawRate, "relay/raw")
		b.ReportMetric(keepRate/rawRate, "relay_keep/raw")
		b.ReportMetric(fourRate/rawRate, "relay_4workers/raw")
		b.Logf("%d events, median of %d interleaved rounds: relay (defaults: %d worker(s), batch %d) %.0f/s, relay (--keep-published) %.0f/s, relay (4 workers, batch %d) %.0f/s, "+
			"raw async publish %.0f/s; relay/raw = %.2f (target >= 0.5), keep/raw = %.2f, 4 workers/raw = %.2f; rounds: defaults %.0f, keep %.0f, 4 workers %.0f, raw %.0f",
			n, rounds, relay.DefaultWorkers, relay.DefaultBatch, defRate, keepRate, relay.DefaultBatch/4, fourRate, rawRate,
			defRate/rawRate, keepRate/rawRate, fourRate/rawRate, def, keep, four, raw)
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkBacklog18k drains an 18,000-row backlog through the relay and
// the consumer, unlimited and at --publish-rate 3000, and reports each
// drain's time, rate, the consumer's peak in-flight and redeliveries.
func BenchmarkBacklog18k(b *testing.B) {
	const n, r, bound = 18000, 3000.0, 256
	for range b.N {
		for _, rate := range []float64{0, r} {
			d := drainBacklog(b, n, rate, bound)
			label := "unlimited"
			if rate > 0 {
				label = fmt.Sprintf("limit%.0f", rate)
			}
			b.ReportMetric(d.took.Seconds(), label+"_drain_s")
			b.ReportMetric(d.rate, label+"_events/s")
			b.ReportMetric(d.applied.Seconds(), label+"_apply_s")
			b.ReportMetric(float64(d.inflightMax), label+"_peak_inflight")
			b.ReportMetric(d.redeliveries, label+"_redeliveries")
			b.Logf("%s: %d events published in %s = %.0f events/s, applied in %s, peak in-flight %d (bound %d), redeliveries %v",
				label, n, d.took.Round(time.Millisecond), d.rate, d.applied.Round(time.Millisecond), d.inflightMax, bound, d.redeliveries)
		}
	}
}
