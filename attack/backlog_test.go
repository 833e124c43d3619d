package attack

import (
	"strings"
	"testing"

	"github.com/paytest/paytest/verify"
)

// backlogRun runs the backlog profile with ops charges and the given extra
// relay and consumer flags, and returns its report and backlog figure.
func backlogRun(t *testing.T, ops int, relayArgs, consumerArgs []string) (*verify.Report, verify.BacklogFigures) {
	t.Helper()
	cfg := bundled(t, "backlog")
	cfg.Plan.Ops, cfg.Plan.Seed = ops, 5
	cfg.Profile.Relay = append(cfg.Profile.Relay, relayArgs...)
	cfg.Profile.Consumer = append(cfg.Profile.Consumer, consumerArgs...)
	rep := run(t, cfg).Report
	if rep.Faults["broker-cut"] != 1 || len(rep.Backlog) != 1 {
		t.Fatalf("faults %v, backlog figures %+v: want one broker cut and its drain", rep.Faults, rep.Backlog)
	}
	b := rep.Backlog[0]
	t.Logf("relay %v, consumer %v: %s", relayArgs, consumerArgs, b.Summary())
	return rep, b
}

func reportText(rep *verify.Report) string {
	var b strings.Builder
	_ = rep.WriteText(&b)
	return b.String()
}

func paced(t *testing.T, rep *verify.Report) *verify.Check {
	t.Helper()
	c := rep.Check(verify.CheckBacklogPaced)
	if c == nil {
		t.Fatalf("no %s check in the report", verify.CheckBacklogPaced)
	}
	return c
}

// TestBacklogProfileDrainsAtItsPublishRate: the broker is cut for the whole
// load, so every charge waits in the outbox; when it comes back the relay
// drains the backlog at its --publish-rate (never above it by more than
// 10%, and not far below it: the whole stack shares the machine), the consumer stays
// within its in-flight bound and nothing is redelivered; backlog-paced
// holds. The same backlog drained with no limit is measured beside it.
func TestBacklogProfileDrainsAtItsPublishRate(t *testing.T) {
	const ops, rate, bound = 1200, 600.0, 256
	rep, b := backlogRun(t, ops, []string{"--publish-rate=600"}, nil)
	if rep.Verdict != verify.VerdictHeld {
		t.Fatalf("verdict %s, want held:\n%s", rep.Verdict, reportText(rep))
	}
	if c := paced(t, rep); c.Status != verify.StatusHeld {
		t.Fatalf("%s is %s (%s): want held", c.Name, c.Status, c.Detail)
	}
	// The relay refreshes its pending gauge every 500 ms, so the peak the
	// timeline saw may trail the true one by up to half a second's drain.
	// A charge or two may be published before the cut takes hold.
	if b.PeakPending < 0.5*ops || b.Published < 0.99*ops || b.Published > ops {
		t.Errorf("peak pending %v, published after the cut %v: want the backlog of (nearly all) %d held back, then published", b.PeakPending, b.Published, ops)
	}
	if b.PublishRateLimit == nil || *b.PublishRateLimit != rate {
		t.Errorf("publish_rate_limit %v, want %v", b.PublishRateLimit, rate)
	}
	if b.PublishRate < 0.8*rate || b.PublishRate > 1.1*rate {
		t.Errorf("drained at %.0f events/s, want %.0f (at most 10%% above, 20%% below)", b.PublishRate, rate)
	}
	if b.DrainSeconds < 0.8*ops/rate {
		t.Errorf("drained %d in %.2f s: faster than %v/s allows", ops, b.DrainSeconds, rate)
	}
	if b.ConsumerInflightPeak < 1 || b.ConsumerInflightPeak > bound {
		t.Errorf("consumer in-flight peaked at %v, bound %d", b.ConsumerInflightPeak, bound)
	}
	if b.Redeliveries != 0 {
		t.Errorf("%v redeliveries while draining", b.Redeliveries)
	}

	urep, u := backlogRun(t, ops, []string{"--publish-rate=0"}, nil)
	if urep.Verdict != verify.VerdictHeld {
		t.Fatalf("unlimited drain: verdict %s, want held:\n%s", urep.Verdict, reportText(urep))
	}
	if c := paced(t, urep); c.Status != verify.StatusNothing {
		t.Errorf("unlimited drain: %s is %s, want nothing to check (no limit to judge against)", c.Name, c.Status)
	}
	t.Logf("unlimited vs %v/s: drained in %.2f s vs %.2f s (%.0f vs %.0f events/s), applied in %.2f s vs %.2f s, consumer in-flight peak %v vs %v, redeliveries %v vs %v",
		rate, u.DrainSeconds, b.DrainSeconds, u.PublishRate, b.PublishRate, u.ApplySeconds, b.ApplySeconds,
		u.ConsumerInflightPeak, b.ConsumerInflightPeak, u.Redeliveries, b.Redeliveries)
	if u.PublishRate < 1.2*b.PublishRate {
		t.Errorf("unlimited drain published at %.0f/s, not clearly faster than the %.0f/s limit: is the limit still on?", u.PublishRate, rate)
	}
}

// TestBacklogPacedFailsOnRedeliveries: a relay whose limit (50,000/s) is far
// above what the consumer applies hands it the backlog at once, and the
// broker gives the consumer only 20 ms to ack each event: with 256 events
// in flight, the last of them wait longer than that however fast this
// machine applies them, so the broker redelivers; backlog-paced fails and
// the run exits 1, although every charge is still applied exactly once (the
// inbox absorbs the redeliveries). A limit the consumer keeps up with is
// not enough to fail it: on an idle machine the consumer acks within 100 ms
// at 1000/s.
func TestBacklogPacedFailsOnRedeliveries(t *testing.T) {
	rep, b := backlogRun(t, 800, []string{"--publish-rate=50000", "--burst=5000"}, []string{"--ack-wait=20ms"})
	c := paced(t, rep)
	if c.Status != verify.StatusFailed || rep.ExitCode != 1 {
		t.Fatalf("%s is %s (%s), exit %d: want failed, exit 1\n%s", c.Name, c.Status, c.Detail, rep.ExitCode, reportText(rep))
	}
	if b.Redeliveries <= 0 || !strings.Contains(c.Detail, "redelivered") {
		t.Fatalf("redeliveries %v, detail %q: want the redeliveries named", b.Redeliveries, c.Detail)
	}
	for _, c := range rep.Checks {
		if c.Name != verify.CheckBacklogPaced && c.Status == verify.StatusFailed {
			t.Errorf("%s failed too (%s): only the pacing is broken", c.Name, c.Detail)
		}
	}
}
