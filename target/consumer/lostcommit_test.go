package consumer_test

import (
	"bytes"
	"net/url"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/testinfra"
	"github.com/paytest/paytest/target/consumer/consumertest"
)

// An apply whose commit answer is lost is retried; the retry finds the
// inbox row its own attempt wrote and counts the effect as applied, not as
// a duplicate. Without that, the counter undercounts the ledger by one for
// every lost answer and paytest would read a lost charge.
func TestConsumerCountsAnApplyWhoseCommitAnswerWasLost(t *testing.T) {
	env := consumertest.New(t, "")
	u, err := url.Parse(env.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	cutter := testinfra.StartCommitCutter(t, u.Host, func(answer []byte) bool { return bytes.Contains(answer, []byte("applied")) })
	u.Host = cutter.Addr()
	cfg := env.ConsumerConfig()
	cfg.DatabaseURL = u.String()
	_, curl := startConsumer(t, cfg)

	cutter.Arm()
	env.Publish(t, consumertest.Payload(t, consumertest.Event(1)))
	select {
	case <-cutter.Cut():
	case <-time.After(30 * time.Second):
		t.Fatal("the apply's answer never came through the proxy")
	}
	// The commit happened (its ReadyForQuery was eaten), unheard.
	env.WaitLedger(t, 10*time.Second, 1)
	cutter.Release()

	consumertest.WaitCounter(t, curl, "paytest_side_effects_applied_total", 1, 30*time.Second)
	got := consumertest.Scrape(t, curl+"/metrics")
	if got["paytest_inbox_duplicates_total"] != 0 {
		t.Errorf("the retry was counted as %v duplicates, want 0", got["paytest_inbox_duplicates_total"])
	}
	if got["paytest_consumer_retries_total"] < 1 {
		t.Errorf("retries %v: the lost answer was not retried", got["paytest_consumer_retries_total"])
	}
	if n, err := env.LedgerTotal(); err != nil || n != 1 {
		t.Errorf("ledger has %d entries (%v), want 1", n, err)
	}
}
