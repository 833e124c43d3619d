package relay_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paytest/paytest/internal/natsembed"
	"github.com/paytest/paytest/internal/proc"
	"github.com/paytest/paytest/internal/testinfra"
	"github.com/paytest/paytest/internal/toxiembed"
	"github.com/paytest/paytest/target/consumer"
	"github.com/paytest/paytest/target/consumer/consumertest"
	"github.com/paytest/paytest/target/outbox"
	"github.com/paytest/paytest/target/relay"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

func relayConfig(env *consumertest.Env) relay.Config {
	return relay.Config{
		DatabaseURL: env.DatabaseURL,
		NATSURL:     env.NATSURL,
		Stream:      env.Stream,
		Subject:     env.Subject,
		Logger:      env.Logger(),
	}
}

// startRelay runs a relay in-process and returns its base URL and a stop.
func startRelay(t testing.TB, cfg relay.Config) (string, func()) {
	t.Helper()
	r, err := relay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return consumertest.Serve(t, r)
}

func startConsumer(t testing.TB, cfg consumer.Config) (*consumer.Consumer, string, func()) {
	t.Helper()
	c, err := consumer.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	url, stop := consumertest.Serve(t, c)
	return c, url, stop
}

// waitStream waits until the event stream holds want messages.
func waitStream(t testing.TB, env *consumertest.Env, timeout time.Duration, want int) {
	t.Helper()
	testinfra.WaitFor(t, timeout, func() error {
		n, err := env.StreamLen(env.Stream)
		if err != nil {
			return err
		}
		if n != want {
			return fmt.Errorf("stream has %d messages, want %d", n, want)
		}
		return nil
	})
}

// The relay process dies right after the broker acked its K-th publish and
// before marking it; restarted, it publishes event K again (JetStream dedup
// off), and the consumer's inbox turns the repeat into a no-op: the ledger
// holds exactly one entry per event.
func TestRelayCrashAfterPublish(t *testing.T) {
	env := consumertest.New(t, "")
	const m, k = 30, 7
	cons := consumertest.StartProcess(t, "consumer", true, env.ConsumerArgs()...)
	relayArgs := env.RelayArgs("--publish-dedup=false", "--batch", "10", "--workers", "1")
	first := consumertest.StartProcess(t, "relay", true,
		append(relayArgs, "--crash-at", relay.CrashAfterPublish+":"+strconv.Itoa(k))...)
	evs := env.Insert(t, m)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := first.Wait(ctx); !proc.KilledBySignal(err, syscall.SIGKILL) {
		t.Fatalf("relay did not crash with SIGKILL: %v\n%s", err, first.Log())
	}
	if n := env.Unpublished(t); n != m {
		t.Fatalf("%d rows unpublished after the crash, want all %d (nothing marked)", n, m)
	}
	second := consumertest.StartProcess(t, "relay-restarted", true, relayArgs...)
	testinfra.WaitFor(t, 30*time.Second, func() error {
		if n := env.Unpublished(t); n != 0 {
			return fmt.Errorf("%d rows unpublished", n)
		}
		return nil
	})
	env.WaitLedger(t, 30*time.Second, m)
	testinfra.WaitFor(t, 30*time.Second, func() error {
		got, err := consumertest.ScrapeErr(cons.BaseURL() + "/metrics")
		if err != nil {
			return err
		}
		if got["paytest_inbox_duplicates_total"] < 1 {
			return fmt.Errorf("paytest_inbox_duplicates_total = %v", got["paytest_inbox_duplicates_total"])
		}
		return nil
	})
	inStream := env.StreamCounts(t)
	if inStream[evs[k-1].EventID] != 2 {
		t.Errorf("event %d is in the stream %d times, want 2 (published before the crash and again after)", k, inStream[evs[k-1].EventID])
	}
	ledger := env.LedgerCounts(t)
	for i, ev := range evs {
		if inStream[ev.EventID] < 1 {
			t.Errorf("event %d never reached the stream", i+1)
		}
		if ledger[ev.EventID] != 1 {
			t.Errorf("event %d has %d ledger entries, want 1", i+1, ledger[ev.EventID])
		}
	}
	if len(ledger) != m {
		t.Errorf("ledger holds %d events, want %d", len(ledger), m)
	}
	var dups int
	for _, n := range inStream {
		dups += n - 1
	}
	t.Logf("%d events, %d republished after the crash, each applied once", m, dups)
	// Both stop cleanly on SIGTERM.
	for _, p := range []*consumertest.Process{second, cons} {
		if err := p.Stop(10 * time.Second); err != nil {
			t.Errorf("SIGTERM: %v", err)
		}
		if _, err := p.Exited(); err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	}
}

// Rows whose ids were allocated early but that commit late (a transaction
// held open while later ids commit) are published all the same: the relay
// claims by state, not by id > last.
func TestRelayOutOfOrderCommits(t *testing.T) {
	env := consumertest.New(t, "")
	cfg := relayConfig(env)
	cfg.Batch = 5
	startRelay(t, cfg)
	ctx := context.Background()
	var evs []outbox.ChargeCreated
	var held []pgx.Tx
	hold := func() {
		tx, err := env.Pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tx.Rollback(ctx) })
		ev := consumertest.Event(len(evs))
		if err := outbox.Insert(ctx, tx, ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
		held = append(held, tx)
	}
	commitSome := func(n int) {
		for range n {
			err := pgx.BeginFunc(ctx, env.Pool, func(tx pgx.Tx) error {
				ev := consumertest.Event(len(evs))
				evs = append(evs, ev)
				return outbox.Insert(ctx, tx, ev)
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	hold()         // id 1, committed last
	commitSome(10) // ids 2..11
	hold()         // id 12
	commitSome(10) // ids 13..22
	waitStream(t, env, 30*time.Second, 20)
	// The relay has published ids up to 22: an id > last poller would
	// never look at 1 or 12 again.
	for i := len(held) - 1; i >= 0; i-- {
		if err := held[i].Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitStream(t, env, 30*time.Second, len(evs))
	counts := env.StreamCounts(t)
	for i, ev := range evs {
		if counts[ev.EventID] != 1 {
			t.Errorf("event %d published %d times, want 1", i+1, counts[ev.EventID])
		}
	}
	testinfra.WaitFor(t, 10*time.Second, func() error { // the marks commit just after the acks
		if n := env.Unpublished(t); n != 0 {
			return fmt.Errorf("%d rows left unpublished", n)
		}
		return nil
	})
}

// Two relays on one outbox never publish a row twice in the normal path.
func TestRelayTwoRelaysPublishEachRowOnce(t *testing.T) {
	env := consumertest.New(t, "")
	cfg := relayConfig(env)
	cfg.Batch = 20
	startRelay(t, cfg)
	startRelay(t, cfg)
	const m = 600
	evs := env.Insert(t, m)
	waitStream(t, env, 30*time.Second, m)
	testinfra.WaitFor(t, 10*time.Second, func() error {
		if n := env.Unpublished(t); n != 0 {
			return fmt.Errorf("%d unpublished", n)
		}
		return nil
	})
	counts := env.StreamCounts(t)
	for i, ev := range evs {
		if counts[ev.EventID] != 1 {
			t.Errorf("event %d published %d times, want 1", i+1, counts[ev.EventID])
		}
	}
	if len(counts) != m {
		t.Errorf("stream holds %d distinct events, want %d", len(counts), m)
	}
}

// Nats-Msg-Id is the event id exactly when publish dedup is on.
func TestRelayPublishDedupHeader(t *testing.T) {
	for _, dedup := range []bool{true, false} {
		t.Run(fmt.Sprintf("dedup=%v", dedup), func(t *testing.T) {
			env := consumertest.New(t, "")
			cfg := relayConfig(env)
			cfg.PublishDedup = dedup
			startRelay(t, cfg)
			evs := env.Insert(t, 3)
			waitStream(t, env, 30*time.Second, 3)
			for i, msg := range env.Messages(t, env.Stream) {
				got := msg.Header.Get(jetstream.MsgIDHeader)
				want := ""
				if dedup {
					want = evs[i].EventID
				}
				if got != want {
					t.Errorf("message %d: Nats-Msg-Id %q, want %q", i+1, got, want)
				}
			}
		})
	}
}

// paytest_outbox_pending and paytest_outbox_lag_seconds show a backlog
// while it exists and fall to 0 once it has drained.
func TestRelayPendingAndLagMetrics(t *testing.T) {
	env := consumertest.New(t, "")
	cfg := relayConfig(env)
	cfg.PublishRate, cfg.Burst = 20, 1
	cfg.StatsInterval = 50 * time.Millisecond
	url, _ := startRelay(t, cfg)
	const m = 15
	env.Insert(t, m)
	testinfra.WaitFor(t, 10*time.Second, func() error {
		got, err := consumertest.ScrapeErr(url + "/metrics")
		if err != nil {
			return err
		}
		if got["paytest_outbox_pending"] < 1 || got["paytest_outbox_lag_seconds"] <= 0.1 {
			return fmt.Errorf("pending %v lag %v", got["paytest_outbox_pending"], got["paytest_outbox_lag_seconds"])
		}
		return nil
	})
	testinfra.WaitFor(t, 20*time.Second, func() error {
		got, err := consumertest.ScrapeErr(url + "/metrics")
		if err != nil {
			return err
		}
		if got["paytest_outbox_pending"] != 0 || got["paytest_outbox_lag_seconds"] != 0 || got["paytest_relay_published_total"] != m {
			return fmt.Errorf("pending %v lag %v published %v", got["paytest_outbox_pending"],
				got["paytest_outbox_lag_seconds"], got["paytest_relay_published_total"])
		}
		return nil
	})
}

// drain is one measured backlog drain.
type drain struct {
	events       int
	took         time.Duration // first publish to last, from the stream's timestamps
	rate         float64       // events/s over took
	applied      time.Duration // first ledger entry to last, from the ledger's timestamps
	inflightMax  int
	redeliveries float64
}

// drainBacklog seeds n outbox rows, starts a consumer and then a relay with
// publishRate, and waits for all n to be applied.
func drainBacklog(t testing.TB, n int, publishRate float64, maxInflight int) drain {
	t.Helper()
	env := consumertest.New(t, "")
	env.Insert(t, n)
	ccfg := env.ConsumerConfig()
	ccfg.MaxInflight = maxInflight
	ccfg.AckWait = 30 * time.Second
	c, curl, _ := startConsumer(t, ccfg)
	rcfg := relayConfig(env)
	rcfg.PublishRate = publishRate
	startRelay(t, rcfg)
	env.WaitLedger(t, 5*time.Minute, n)
	msgs := env.Messages(t, env.Stream)
	if len(msgs) != n {
		t.Fatalf("stream holds %d messages, want %d", len(msgs), n)
	}
	took := msgs[len(msgs)-1].Time.Sub(msgs[0].Time)
	var applied time.Duration
	if err := env.Pool.QueryRow(context.Background(),
		`SELECT max(applied_at) - min(applied_at) FROM ledger_entries`).Scan(&applied); err != nil {
		t.Fatal(err)
	}
	got := consumertest.Scrape(t, curl+"/metrics")
	return drain{
		events:       n,
		took:         took,
		applied:      applied,
		rate:         float64(n-1) / took.Seconds(),
		inflightMax:  c.InflightMax(),
		redeliveries: got["paytest_consumer_redeliveries_total"],
	}
}

// A backlog drained with --publish-rate R is published at R (within 10%),
// the consumer never has more than its bound in flight, and nothing is
// redelivered. The unlimited drain of the same backlog is logged.
func TestRelayBacklogDrainsAtPublishRate(t *testing.T) {
	const n, r, bound = 3000, 1000.0, 64
	limited := drainBacklog(t, n, r, bound)
	t.Logf("rate-limited drain: %d events published in %s = %.0f events/s (limit %.0f), applied in %s, peak in-flight %d, redeliveries %v",
		limited.events, limited.took.Round(time.Millisecond), limited.rate, r, limited.applied.Round(time.Millisecond),
		limited.inflightMax, limited.redeliveries)
	if limited.rate < 0.9*r || limited.rate > 1.1*r {
		t.Errorf("measured %.0f events/s, want %.0f +- 10%%", limited.rate, r)
	}
	if limited.inflightMax > bound || limited.inflightMax < 1 {
		t.Errorf("consumer in-flight peaked at %d, bound %d", limited.inflightMax, bound)
	}
	if limited.redeliveries != 0 {
		t.Errorf("%v redeliveries during the drain", limited.redeliveries)
	}
	unlimited := drainBacklog(t, n, 0, bound)
	t.Logf("unlimited drain: %d events published in %s = %.0f events/s (%.1fx the limited rate), applied in %s, peak in-flight %d, redeliveries %v",
		unlimited.events, unlimited.took.Round(time.Millisecond), unlimited.rate, unlimited.rate/limited.rate,
		unlimited.applied.Round(time.Millisecond), unlimited.inflightMax, unlimited.redeliveries)
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// The broker goes away while charges keep being written and comes back on
// the same port with the same store: the relay and the consumer reconnect
// on their own, nothing is lost and nothing is applied twice. The relay
// waits for the connection rather than backing off while the broker is
// away, so even with a 3 s BackoffBase (a relay that backed off would sleep
// a random time of up to 6 s, then 12 s) it publishes the backlog within
// 1.5 s of the broker's return.
func TestRelayAndConsumerRideOutBrokerOutage(t *testing.T) {
	port, dir := freePort(t), t.TempDir()
	ns, err := natsembed.Start(natsembed.Options{Port: port, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	current := ns
	t.Cleanup(func() { mu.Lock(); current.Shutdown(); mu.Unlock() })
	env := consumertest.New(t, ns.URL())
	ccfg := env.ConsumerConfig()
	_, curl, _ := startConsumer(t, ccfg)
	rcfg := relayConfig(env)
	rcfg.PublishDedup = false // the inbox, not the broker, must absorb repeats
	rcfg.AckTimeout = 2 * time.Second
	rcfg.BackoffBase, rcfg.BackoffMax = 3*time.Second, time.Minute
	rurl, _ := startRelay(t, rcfg)

	evs := env.Insert(t, 100)
	env.WaitLedger(t, 30*time.Second, 100)

	ns.Shutdown()
	testinfra.WaitFor(t, 10*time.Second, func() error {
		if consumertest.Ready(rurl) == nil {
			return fmt.Errorf("relay still ready with the broker down")
		}
		return nil
	})
	evs = append(evs, env.Insert(t, 100)...) // written while the broker is down
	// The relay keeps running and sees the backlog age while it cannot publish.
	testinfra.WaitFor(t, 10*time.Second, func() error {
		got, err := consumertest.ScrapeErr(rurl + "/metrics")
		if err != nil {
			return err
		}
		if got["paytest_outbox_pending"] != 100 || got["paytest_outbox_lag_seconds"] < 0.5 {
			return fmt.Errorf("pending %v lag %v", got["paytest_outbox_pending"], got["paytest_outbox_lag_seconds"])
		}
		return nil
	})

	ns2, err := natsembed.Start(natsembed.Options{Port: port, StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	current = ns2
	mu.Unlock()
	consumertest.WaitReady(t, rurl, 30*time.Second)
	back := time.Now()
	testinfra.WaitFor(t, 1500*time.Millisecond, func() error {
		if n := env.Unpublished(t); n != 0 {
			return fmt.Errorf("%d rows of the backlog unpublished %s after the broker returned", n, time.Since(back).Round(time.Millisecond))
		}
		return nil
	})
	t.Logf("backlog of 100 published %s after the relay was ready again", time.Since(back).Round(time.Millisecond))
	consumertest.WaitReady(t, curl, 30*time.Second)
	evs = append(evs, env.Insert(t, 50)...)
	env.WaitLedger(t, 60*time.Second, len(evs))
	counts := env.LedgerCounts(t)
	for i, ev := range evs {
		if counts[ev.EventID] != 1 {
			t.Errorf("event %d applied %d times, want 1", i+1, counts[ev.EventID])
		}
	}
	testinfra.WaitFor(t, 10*time.Second, func() error { // the marks commit just after the acks
		if n := env.Unpublished(t); n != 0 {
			return fmt.Errorf("%d rows unpublished after the outage", n)
		}
		return nil
	})
	consumertest.WaitCounter(t, curl, "paytest_side_effects_applied_total", float64(len(evs)), 10*time.Second)
}

// Postgres goes away behind a toxiproxy while rows are written and events
// are waiting in the stream, then comes back: the relay and the consumer
// reconnect on their own (the consumer retries in place, burning no
// deliveries), nothing is lost and nothing is applied twice.
func TestRelayAndConsumerRideOutDatabaseOutage(t *testing.T) {
	env := consumertest.New(t, "")
	toxi, err := toxiembed.Start(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(toxi.Shutdown)
	u, err := url.Parse(env.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	px, err := toxi.CreateProxy(testinfra.Name("pg"), u.Host)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = px.Listen
	viaProxy := u.String()

	ccfg := env.ConsumerConfig()
	ccfg.DatabaseURL = viaProxy
	ccfg.AckWait = 2 * time.Second // the outage outlasts it: InProgress must keep events alive
	_, curl, _ := startConsumer(t, ccfg)
	rcfg := relayConfig(env)
	rcfg.DatabaseURL = viaProxy
	rurl, _ := startRelay(t, rcfg)

	evs := env.Insert(t, 50)
	env.WaitLedger(t, 30*time.Second, 50)

	if err := px.Disable(); err != nil {
		t.Fatal(err)
	}
	testinfra.WaitFor(t, 10*time.Second, func() error {
		if consumertest.Ready(rurl) == nil || consumertest.Ready(curl) == nil {
			return fmt.Errorf("relay or consumer still ready with the database down")
		}
		return nil
	})
	evs = append(evs, env.Insert(t, 50)...) // the relay cannot see these yet
	direct := make([]outbox.ChargeCreated, 20)
	for i := range direct { // these reach the consumer, which cannot apply them yet
		direct[i] = consumertest.Event(1000 + i)
		env.Publish(t, consumertest.Payload(t, direct[i]))
	}
	evs = append(evs, direct...)
	testinfra.WaitFor(t, 20*time.Second, func() error {
		got, err := consumertest.ScrapeErr(curl + "/metrics")
		if err != nil {
			return err
		}
		// Retrying for longer than AckWait, without a redelivery.
		if got["paytest_consumer_retries_total"] < 20 || got["paytest_consumer_inflight"] != 20 {
			return fmt.Errorf("retries %v in flight %v", got["paytest_consumer_retries_total"], got["paytest_consumer_inflight"])
		}
		return nil
	})
	var lasting = time.Now().Add(ccfg.AckWait + time.Second)
	testinfra.WaitFor(t, 10*time.Second, func() error {
		if time.Now().Before(lasting) {
			return fmt.Errorf("outage not yet longer than AckWait")
		}
		return nil
	})

	if err := px.Enable(); err != nil {
		t.Fatal(err)
	}
	consumertest.WaitReady(t, rurl, 30*time.Second)
	consumertest.WaitReady(t, curl, 30*time.Second)
	env.WaitLedger(t, 60*time.Second, len(evs))
	counts := env.LedgerCounts(t)
	for i, ev := range evs {
		if counts[ev.EventID] != 1 {
			t.Errorf("event %d applied %d times, want 1", i+1, counts[ev.EventID])
		}
	}
	testinfra.WaitFor(t, 10*time.Second, func() error { // the marks commit just after the acks
		if n := env.Unpublished(t); n != 0 {
			return fmt.Errorf("%d rows unpublished after the outage", n)
		}
		return nil
	})
	consumertest.WaitCounter(t, curl, "paytest_side_effects_applied_total", float64(len(evs)), 10*time.Second)
	got := consumertest.Scrape(t, curl+"/metrics")
	if got["paytest_dlq_messages_total"] != 0 {
		t.Errorf("dead-lettered %v, want 0", got["paytest_dlq_messages_total"])
	}
	if got["paytest_consumer_redeliveries_total"] != 0 {
		t.Errorf("%v redeliveries: the outage burned deliveries", got["paytest_consumer_redeliveries_total"])
	}
}

// The relay and the consumer create the stream with one configuration, so
// either may start first and an event flows end to end either way.
func TestRelayAndConsumerStartInEitherOrder(t *testing.T) {
	for _, relayFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("relay first=%v", relayFirst), func(t *testing.T) {
			env := consumertest.New(t, "")
			if relayFirst {
				startRelay(t, relayConfig(env))
				startConsumer(t, env.ConsumerConfig())
			} else {
				startConsumer(t, env.ConsumerConfig())
				startRelay(t, relayConfig(env))
			}
			ctx := context.Background()
			s, err := env.JS.Stream(ctx, env.Stream)
			if err != nil {
				t.Fatal(err)
			}
			info, err := s.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := outbox.StreamConfig(env.Stream, env.Subject)
			if len(info.Config.Subjects) != 1 || info.Config.Subjects[0] != env.Subject || info.Config.Storage != want.Storage {
				t.Errorf("stream config %+v, want subjects [%s] storage %v", info.Config, env.Subject, want.Storage)
			}
			env.Insert(t, 5)
			env.WaitLedger(t, 30*time.Second, 5)
		})
	}
}

// With the stream gone, publishes fail: the rows stay unpublished with
// their attempts counted and the last error kept, the relay backs off, then
// recreates the stream and publishes every row; with KeepPublished,
// outbox_published keeps the attempts (the failed ones and the acked one)
// and the last error.
func TestRelayRecordsFailedPublishesAndRecovers(t *testing.T) {
	env := consumertest.New(t, "")
	cfg := relayConfig(env)
	cfg.BackoffBase, cfg.BackoffMax = 50*time.Millisecond, 200*time.Millisecond
	cfg.KeepPublished = true
	url, _ := startRelay(t, cfg)
	ctx := context.Background()
	if err := env.JS.DeleteStream(ctx, env.Stream); err != nil {
		t.Fatal(err)
	}
	evs := env.Insert(t, 10)
	testinfra.WaitFor(t, 30*time.Second, func() error {
		if n := env.Unpublished(t); n != 0 {
			return fmt.Errorf("%d unpublished", n)
		}
		return nil
	})
	var minAttempts int
	var lastError *string
	if err := env.Pool.QueryRow(ctx, `SELECT min(attempts), max(last_error) FROM outbox_published`).Scan(&minAttempts, &lastError); err != nil {
		t.Fatal(err)
	}
	if minAttempts < 2 || lastError == nil || *lastError == "" {
		t.Errorf("attempts %d, last_error %v: the failed publishes were not recorded", minAttempts, lastError)
	}
	counts := env.StreamCounts(t)
	for i, ev := range evs {
		if counts[ev.EventID] != 1 {
			t.Errorf("event %d published %d times, want 1", i+1, counts[ev.EventID])
		}
	}
	got := consumertest.Scrape(t, url+"/metrics")
	if got["paytest_relay_publish_errors_total"] < 10 {
		t.Errorf("paytest_relay_publish_errors_total = %v, want >= 10", got["paytest_relay_publish_errors_total"])
	}
	if lastError != nil {
		t.Logf("attempts >= %d, last_error %q", minAttempts, *lastError)
	}
}

// A relay stopped in the middle of a drain marks exactly what it published:
// paced, the batch whose token wait the stop cut short; unpaced, the batch
// it had in flight and the one it had claimed ahead when the stop came.
// Every event in the stream has its row marked (gone from the outbox, and
// with KeepPublished in outbox_published), and every marked row is in the
// stream.
func TestRelayGracefulStopMarksWhatItPublished(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rows   int
		stopAt int
		keep   bool
		tune   func(*relay.Config)
	}{
		{"paced", 1000, 120, false, func(c *relay.Config) { c.Batch, c.PublishRate, c.Burst = 50, 400, 1 }},
		{"unpaced", 20000, 2000, false, nil},
		{"unpaced keep published", 20000, 2000, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := consumertest.New(t, "")
			evs := env.Insert(t, tc.rows)
			cfg := relayConfig(env)
			cfg.PublishDedup = true
			cfg.KeepPublished = tc.keep
			if tc.tune != nil {
				tc.tune(&cfg)
			}
			_, stop := startRelay(t, cfg)
			testinfra.WaitFor(t, 30*time.Second, func() error {
				n, err := env.StreamLen(env.Stream)
				if err != nil {
					return err
				}
				if n < tc.stopAt {
					return fmt.Errorf("stream has %d messages", n)
				}
				return nil
			})
			stop()
			inStream := env.StreamCounts(t)
			left := eventIDs(t, env, `SELECT event_id::text FROM outbox`)
			var marked []string
			for _, ev := range evs {
				if !left[ev.EventID] {
					marked = append(marked, ev.EventID)
				}
			}
			for _, id := range marked {
				if inStream[id] != 1 {
					t.Errorf("event %s is marked published but in the stream %d times", id, inStream[id])
				}
			}
			if len(marked) != len(inStream) {
				t.Errorf("%d rows marked published, %d events in the stream: a graceful stop must mark what it published", len(marked), len(inStream))
			}
			if len(left) == 0 || len(left) == tc.rows {
				t.Errorf("%d of %d rows unpublished: the stop did not fall in the middle of the drain", len(left), tc.rows)
			}
			kept := eventIDs(t, env, `SELECT event_id::text FROM outbox_published`)
			want := 0
			if tc.keep {
				want = len(marked)
			}
			if len(kept) != want {
				t.Errorf("outbox_published holds %d rows, want %d (keep published %v)", len(kept), want, tc.keep)
			}
			for _, id := range marked {
				if tc.keep && !kept[id] {
					t.Errorf("event %s is marked published but not kept in outbox_published", id)
				}
			}
			t.Logf("stopped after %d of %d events, each marked", len(marked), tc.rows)
		})
	}
}

// eventIDs runs a query of event ids and returns them as a set.
func eventIDs(t *testing.T, env *consumertest.Env, query string) map[string]bool {
	t.Helper()
	rows, err := env.Pool.Query(context.Background(), query)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	set := make(map[string]bool, len(ids))
	for _, id := range ids {
		set[id] = true
	}
	return set
}
