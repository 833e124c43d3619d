package consumer_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/paytest/paytest/internal/proc"
	"github.com/paytest/paytest/internal/testinfra"
	"github.com/paytest/paytest/target/consumer"
	"github.com/paytest/paytest/target/consumer/consumertest"
	"github.com/paytest/paytest/target/outbox"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// startConsumer runs a consumer in-process and returns its base URL.
func startConsumer(t testing.TB, cfg consumer.Config) (*consumer.Consumer, string) {
	t.Helper()
	c, err := consumer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	url, _ := consumertest.Serve(t, c)
	return c, url
}

func startConsumerStoppable(t testing.TB, cfg consumer.Config) (*consumer.Consumer, string, func()) {
	t.Helper()
	c, err := consumer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	url, stop := consumertest.Serve(t, c)
	return c, url, stop
}

func waitMetric(t *testing.T, url, name string, cond func(float64) bool) {
	t.Helper()
	testinfra.WaitFor(t, 30*time.Second, func() error {
		m, err := consumertest.ScrapeErr(url + "/metrics")
		if err != nil {
			return err
		}
		if !cond(m[name]) {
			return fmt.Errorf("%s = %v", name, m[name])
		}
		return nil
	})
}

// Every event is applied once, duplicates are deduped by the inbox, each
// entry has two postings summing to zero, and the stock moves by the
// quantities sold.
func TestConsumerAppliesEachEventOnce(t *testing.T) {
	env := consumertest.New(t, "")
	_, url := startConsumer(t, env.ConsumerConfig())
	const m, dups = 40, 10
	evs := make([]outbox.ChargeCreated, m)
	for i := range evs {
		evs[i] = consumertest.Event(i)
		env.Publish(t, consumertest.Payload(t, evs[i]))
	}
	for i := range dups {
		env.Publish(t, consumertest.Payload(t, evs[i*3]))
	}
	env.WaitLedger(t, 30*time.Second, m)
	consumertest.WaitCounter(t, url, "paytest_inbox_duplicates_total", dups, 30*time.Second)
	consumertest.WaitCounter(t, url, "paytest_side_effects_applied_total", m, 30*time.Second)
	for id, n := range env.LedgerCounts(t) {
		if n != 1 {
			t.Errorf("event %s applied %d times", id, n)
		}
	}
	ctx := context.Background()
	var unbalanced, notTwo int
	if err := env.Pool.QueryRow(ctx, `SELECT
		count(*) FILTER (WHERE s <> 0), count(*) FILTER (WHERE n <> 2)
		FROM (SELECT entry_id, sum(amount) AS s, count(*) AS n FROM ledger_postings GROUP BY 1) p`).Scan(&unbalanced, &notTwo); err != nil {
		t.Fatal(err)
	}
	if unbalanced != 0 || notTwo != 0 {
		t.Errorf("%d entries unbalanced, %d without exactly two postings", unbalanced, notTwo)
	}
	sold := map[string]int64{}
	for _, ev := range evs {
		sold[ev.SKU] += int64(ev.Quantity)
	}
	for sku, q := range sold {
		var onHand int64
		if err := env.Pool.QueryRow(ctx, `SELECT on_hand FROM ledger_inventory WHERE sku = $1`, sku).Scan(&onHand); err != nil {
			t.Fatal(err)
		}
		if consumer.InitialStock-onHand != q {
			t.Errorf("%s: stock moved by %d, sold %d", sku, consumer.InitialStock-onHand, q)
		}
	}
	var ledgerOps int
	if err := env.Pool.QueryRow(ctx, `SELECT count(*) FROM (`+consumer.LedgerQuery+`) q`).Scan(&ledgerOps); err != nil {
		t.Fatal(err)
	}
	if ledgerOps != m {
		t.Errorf("LedgerQuery gives %d operations, want %d", ledgerOps, m)
	}
}

// P poison events among M good ones: exactly P reach the dead-letter stream
// with their reasons after MaxDeliver deliveries, the M are applied, none of
// the poison is, and the good ones are not held up behind the poison.
func TestConsumerPoisonGoesToDLQ(t *testing.T) {
	env := consumertest.New(t, "")
	cfg := env.ConsumerConfig()
	// A poison event waiting out its nak delay still holds one of the
	// broker's MaxAckPending slots: with more slots than poison events the
	// good ones must flow past them.
	cfg.MaxInflight = 8
	cfg.MaxDeliver = 3
	cfg.NakDelay = time.Second // dead-lettering takes >= 1s + 2s
	_, url := startConsumer(t, cfg)

	unknownSKU := consumertest.Event(1000)
	unknownSKU.SKU = "sku-999"
	zero := consumertest.Event(1001)
	zero.Amount = 0
	badID := consumertest.Event(1002)
	badID.EventID = "not-a-uuid"
	poison := []struct {
		payload []byte
		reason  string
		eventID string
	}{
		{[]byte(`{"event_id": "oops`), "undecodable", ""},
		{consumertest.Payload(t, unknownSKU), "unknown sku", unknownSKU.EventID},
		{consumertest.Payload(t, zero), "unbalanced posting", zero.EventID},
		{consumertest.Payload(t, badID), "not a UUID", ""},
	}
	for _, p := range poison {
		env.Publish(t, p.payload)
	}
	const m = 50
	for i := range m {
		env.Publish(t, consumertest.Payload(t, consumertest.Event(i)))
	}
	env.WaitLedger(t, 30*time.Second, m)
	if n, err := env.StreamLen(env.DLQStream); err == nil && n == len(poison) {
		t.Errorf("all %d poison events were dead-lettered before the good ones were applied: poison held them up", n)
	}
	testinfra.WaitFor(t, 30*time.Second, func() error {
		n, err := env.StreamLen(env.DLQStream)
		if err != nil || n != len(poison) {
			return fmt.Errorf("dlq has %d messages (%v), want %d", n, err, len(poison))
		}
		return nil
	})
	// Nothing left to deliver: the count is final.
	ctx := context.Background()
	cons, err := env.JS.Consumer(ctx, env.Stream, env.Durable)
	if err != nil {
		t.Fatal(err)
	}
	testinfra.WaitFor(t, 10*time.Second, func() error {
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumAckPending != 0 || info.NumPending != 0 || info.NumRedelivered != 0 {
			return fmt.Errorf("consumer still busy: %+v", info)
		}
		return nil
	})
	dlq := env.Messages(t, env.DLQStream)
	if len(dlq) != len(poison) {
		t.Fatalf("dlq has %d messages, want %d", len(dlq), len(poison))
	}
	seen := map[uint64]bool{}
	for _, msg := range dlq {
		e := consumer.DecodeDLQ(msg.Header, msg.Data)
		// The poison events were published first: stream sequences 1..P.
		i := int(e.StreamSeq) - 1
		if i < 0 || i >= len(poison) || seen[e.StreamSeq] {
			t.Errorf("dlq message for stream sequence %d: not one poison event once", e.StreamSeq)
			continue
		}
		seen[e.StreamSeq] = true
		if !strings.Contains(e.Reason, poison[i].reason) {
			t.Errorf("dlq[%d] reason %q, want it to mention %q", i, e.Reason, poison[i].reason)
		}
		if e.Deliveries != cfg.MaxDeliver {
			t.Errorf("dlq[%d] deliveries %d, want %d", i, e.Deliveries, cfg.MaxDeliver)
		}
		if string(e.Data) != string(poison[i].payload) {
			t.Errorf("dlq[%d] body %q, want the original payload", i, e.Data)
		}
	}
	ledger := env.LedgerCounts(t)
	for _, p := range poison {
		if p.eventID != "" && ledger[p.eventID] != 0 {
			t.Errorf("poison event %s was applied", p.eventID)
		}
	}
	consumertest.WaitCounter(t, url, "paytest_side_effects_applied_total", m, 30*time.Second)
	got := consumertest.Scrape(t, url+"/metrics")
	if got["paytest_dlq_messages_total"] != float64(len(poison)) {
		t.Errorf("metrics: dlq %v, want %d", got["paytest_dlq_messages_total"], len(poison))
	}
	if got["paytest_consumer_inflight_max"] > float64(cfg.MaxInflight) {
		t.Errorf("in-flight peaked at %v with max-inflight %d", got["paytest_consumer_inflight_max"], cfg.MaxInflight)
	}
}

// The consumer process dies after committing an event and before acking
// it; restarted, it gets the event again. With the inbox the redelivery is
// deduped and every event has one effect; with --unsafe no-inbox-dedup the
// same crash double-applies it, which is what verify must be able to see.
func TestConsumerCrashAfterApplyBeforeAck(t *testing.T) {
	for _, tc := range []struct {
		name   string
		unsafe []string
		twice  bool
	}{
		{name: "inbox dedups the redelivery"},
		{name: "no-inbox-dedup applies it twice", unsafe: []string{"--unsafe", consumer.UnsafeNoInboxDedup}, twice: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := consumertest.New(t, "")
			const m, k = 12, 4
			base := append(env.ConsumerArgs("--max-inflight", "1", "--ack-wait", "1s"), tc.unsafe...)
			first := consumertest.StartProcess(t, "consumer", true,
				append(base, "--crash-at", consumer.CrashAfterApplyBeforeAck+":"+strconv.Itoa(k))...)
			evs := make([]outbox.ChargeCreated, m)
			for i := range evs {
				evs[i] = consumertest.Event(i)
				env.Publish(t, consumertest.Payload(t, evs[i]))
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := first.Wait(ctx); !proc.KilledBySignal(err, syscall.SIGKILL) {
				t.Fatalf("consumer did not crash with SIGKILL: %v\n%s", err, first.Log())
			}
			if n, err := env.LedgerTotal(); err != nil || n != k {
				t.Fatalf("ledger has %d entries at the crash, want %d (%v)", n, k, err)
			}
			second := consumertest.StartProcess(t, "consumer-restarted", true, base...)
			want := m
			if tc.twice {
				want = m + 1
			}
			env.WaitLedger(t, 30*time.Second, want)
			metrics := consumertest.Scrape(t, second.BaseURL()+"/metrics")
			if metrics["paytest_consumer_redeliveries_total"] < 1 {
				t.Errorf("no redelivery seen after the crash")
			}
			counts := env.LedgerCounts(t)
			for i, ev := range evs {
				wantN := 1
				if tc.twice && i == k-1 {
					wantN = 2
				}
				if counts[ev.EventID] != wantN {
					t.Errorf("event %d applied %d times, want %d", i+1, counts[ev.EventID], wantN)
				}
			}
			if tc.twice {
				return
			}
			waitMetric(t, second.BaseURL(), "paytest_inbox_duplicates_total", func(v float64) bool { return v >= 1 })
			consumertest.WaitCounter(t, second.BaseURL(), "paytest_side_effects_applied_total", m-k, 30*time.Second)
		})
	}
}

// A healthy event whose deliveries were used up without an ack (a consumer
// that kept dying on it) is still applied when a working consumer gets it:
// MaxDeliver limits failing events only, it never drops a good one.
func TestConsumerAppliesEventWhoseDeliveriesRanOut(t *testing.T) {
	env := consumertest.New(t, "")
	cfg := env.ConsumerConfig()
	cfg.MaxDeliver = 2
	cfg.AckWait = 200 * time.Millisecond
	_, _, stop := startConsumerStoppable(t, cfg)
	stop() // the durable exists; nobody consumes now

	ev := consumertest.Event(1)
	env.Publish(t, consumertest.Payload(t, ev))
	ctx := context.Background()
	cons, err := env.JS.Consumer(ctx, env.Stream, env.Durable)
	if err != nil {
		t.Fatal(err)
	}
	// A "consumer" that takes the event and dies before acking, until the
	// event has been delivered more than MaxDeliver times. (Pull requests
	// the stopped consumer left on the server may take deliveries too.)
	testinfra.WaitFor(t, 20*time.Second, func() error {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return err
		}
		m, ok := <-batch.Messages()
		if !ok {
			return fmt.Errorf("no delivery: %v", batch.Error())
		}
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		if md.NumDelivered <= uint64(cfg.MaxDeliver) {
			return fmt.Errorf("delivery %d, waiting for more than %d", md.NumDelivered, cfg.MaxDeliver)
		}
		return nil
	})
	startConsumer(t, cfg)
	env.WaitLedger(t, 30*time.Second, 1)
	if n, err := env.StreamLen(env.DLQStream); err != nil || n != 0 {
		t.Errorf("dead-letter stream holds %d (%v), want 0", n, err)
	}
}
