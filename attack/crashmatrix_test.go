package attack

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/paytest/paytest/internal/rundir"
	"github.com/paytest/paytest/profiles"
	"github.com/paytest/paytest/verify"
)

// crashCase is one row of the crash matrix: a built-in crash profile run
// against the reference system, safe (the verdict must hold) or with the
// unsafe mode that breaks the guarantee the crash tests (it must be caught).
type crashCase struct {
	profile string
	unsafe  string
	// fails is the check that must fail for an unsafe row: the one that
	// points at the broken component.
	fails string
	// alsoFail lists the checks that may fail with it, because the same
	// broken property shows in their evidence too; any other failure is
	// blame on the wrong component.
	alsoFail []string
	// fired is how many kills the run must record: 1, or 0 when the unsafe
	// mode bypasses the crash point (no claim under no-idempotency).
	fired int
	// extra bounds the ledger's effects beyond the plan's charges
	// (negative: effects lost); nil for a safe row, where it must be 0.
	extra func(rep *verify.Report) (lo, hi int)
	// minDups is how many repeats the crash must bring to the consumer's
	// inbox (its duplicates counter): the event it died on comes back.
	minDups int
	// brokerDedups: publish dedup is on, so the broker drops every
	// republished event and the inbox must count none.
	brokerDedups bool
	// soakOnly keeps a row out of make test's short version: it repeats
	// what another row there already shows.
	soakOnly bool
}

// Bounds on the ledger's extra effects, each justified by where the
// property breaks.
var (
	// doubleCharged: a service that ignores keys charges every attempt
	// that reaches it, so at least one op (a duplicate sender's) is charged
	// twice and at most every attempt beyond an op's first adds one.
	doubleCharged = func(rep *verify.Report) (int, int) { return 1, rep.Attempts - rep.Ops }
	// reapplied: a crash at the 50% mark repeats at least the event it
	// fired on and at most the events handled before it: half the ops.
	reapplied = func(rep *verify.Report) (int, int) { return 1, rep.Ops / 2 }
	// lostAtCrash: the crashing request's event, and those of the others
	// between commit and publish at that moment (at most the profile's 16
	// senders), are lost.
	lostAtCrash = func(*verify.Report) (int, int) { return -16, -1 }
)

// noKeys is what a service that ignores keys fails besides
// exactly-once-per-op, all from the same double charges: the totals, the
// races' single winner and the reused keys' 422.
var noKeys = []string{verify.CheckEffectsEqualOps, verify.CheckRaceSingleWinner, verify.CheckKeyReuse422}

// crashMatrix is every crash point of every bundled component, plain kills
// of each, and the unsafe mode that breaks what each crash tests.
var crashMatrix = []crashCase{
	{profile: "crash-charge-after-claim", fired: 1},
	{profile: "crash-charge-after-commit", fired: 1},
	{profile: "crash-relay-after-publish-dedup", fired: 1, brokerDedups: true},
	{profile: "crash-relay-after-publish-nodedup", fired: 1, minDups: 1},
	{profile: "crash-consumer-after-apply", fired: 1, minDups: 1},
	{profile: "kill-charge", fired: 1},
	{profile: "kill-relay", fired: 1, brokerDedups: true},
	{profile: "kill-consumer", fired: 1},

	// No false alarm: with publish dedup on, the broker drops the
	// republished batch, so no repeat reaches the consumer and even an
	// inbox that dedups nothing applies each charge once.
	{profile: "crash-relay-after-publish-dedup", unsafe: "no-inbox-dedup", fired: 1, brokerDedups: true},

	// A request's answer lost at the crash (or at a duplicate sender) is
	// retried and, with no key to find, charged again.
	{profile: "crash-charge-after-commit", unsafe: "no-idempotency", fired: 1,
		fails: verify.CheckExactlyOncePerOp, alsoFail: noKeys,
		extra: doubleCharged},
	// Without keys no claim is taken, so no unsafe mode reaches the
	// after-claim point (none breaks the lease takeover it tests); the row
	// shows the crash not firing and the duplicates double-charging.
	{profile: "crash-charge-after-claim", unsafe: "no-idempotency", fired: 0, soakOnly: true,
		fails: verify.CheckExactlyOncePerOp, alsoFail: noKeys,
		extra: doubleCharged},
	// A key read and then written in separate steps: same-key senders in
	// flight together (a duplicate sender, a race) both read "absent" and
	// both charge. The crash after commit is survived (the key is written
	// with the charge); the overlapping senders are what breaks.
	{profile: "crash-charge-after-commit", unsafe: "non-atomic-create", fired: 1,
		fails: verify.CheckExactlyOncePerOp, alsoFail: []string{verify.CheckEffectsEqualOps, verify.CheckRaceSingleWinner},
		extra: doubleCharged},
	// The crashing request committed its charge and dies before its
	// publish: its event, and those of requests between commit and
	// publish at that moment (at most the 16 senders), are lost.
	{profile: "crash-charge-after-commit", unsafe: "dual-write", fired: 1,
		fails: verify.CheckEffectsEqualOps, alsoFail: []string{verify.CheckExactlyOncePerOp},
		extra: lostAtCrash},
	// The republished batch reaches the consumer (dedup off) and an inbox
	// that dedups nothing applies it again: at least the event the relay
	// died on, at most the ops published before the crash.
	{profile: "crash-relay-after-publish-nodedup", unsafe: "no-inbox-dedup", fired: 1,
		fails: verify.CheckExactlyOncePerOp, alsoFail: []string{verify.CheckEffectsEqualOps, verify.CheckRelayCrashDeduped},
		extra: reapplied},
	// The event the consumer died on was applied and not acked: the broker
	// redelivers it (with whatever else was in flight) and it is applied
	// again: at least 1, at most the ops applied before the crash.
	{profile: "crash-consumer-after-apply", unsafe: "no-inbox-dedup", fired: 1,
		fails: verify.CheckExactlyOncePerOp, alsoFail: []string{verify.CheckEffectsEqualOps},
		extra: reapplied},
	// A plain kill of a service that ignores keys: the duplicates
	// double-charge.
	{profile: "kill-charge", unsafe: "no-idempotency", fired: 1, soakOnly: true,
		fails: verify.CheckExactlyOncePerOp, alsoFail: noKeys,
		extra: doubleCharged},
}

func (c crashCase) name() string {
	if c.unsafe == "" {
		return c.profile
	}
	return c.profile + "+" + c.unsafe
}

// crashRow is one run's line in the matrix table.
type crashRow struct {
	name     string
	seed     int64
	verdict  string
	failing  []string
	figures  string
	duration time.Duration
}

// soakEnv, when "1", runs the whole matrix at full size over three seeds
// (make soak); otherwise one seed of a smaller version keeps make test short.
const soakEnv = "PAYTEST_SOAK"

// TestCrashMatrix runs every crash profile against the reference system:
// safe rows must hold (each check, and the ledger equal to the plan),
// unsafe rows must be violated on the check that points at the broken
// component, with the ledger's extra or lost effects inside the row's
// bounds, and no other check failing. The short version runs 100 ops, one
// seed, with a 2 s lease and ack wait (so a crashed request's key and a
// crashed consumer's events come back within seconds); PAYTEST_SOAK=1 runs
// the profiles as shipped (300 ops, the components' defaults) over three
// seeds and prints the table.
func TestCrashMatrix(t *testing.T) {
	soak := os.Getenv(soakEnv) == "1"
	if testing.Short() && !soak {
		t.Skip("end to end")
	}
	seeds := []int64{1}
	if soak {
		seeds = []int64{1, 2, 3}
	}
	var rows []crashRow
	for _, c := range crashMatrix {
		if c.soakOnly && !soak {
			continue
		}
		for _, seed := range seeds {
			t.Run(fmt.Sprintf("%s/seed-%d", c.name(), seed), func(t *testing.T) {
				// A run that ends without a report stays in the table.
				row := crashRow{name: c.name(), seed: seed, verdict: "no report", figures: "-"}
				defer func() { rows = append(rows, row) }()
				runCrashCase(t, c, soak, &row)
			})
		}
	}
	t.Log("crash matrix:\n" + crashTable(rows))
}

// runCrashCase runs one row, fills its table line and checks it.
func runCrashCase(t *testing.T, c crashCase, soak bool, row *crashRow) {
	cfg := bundled(t, c.profile)
	cfg.Plan.Seed = row.seed
	if !soak {
		cfg.Plan.Ops = 100
		shorten(&cfg.Profile)
	}
	if c.unsafe != "" {
		cfg.Bundled.Unsafe = []string{c.unsafe}
	}
	res := run(t, cfg)
	rep := res.Report
	row.verdict, row.duration = rep.Verdict, res.Duration.Round(100*time.Millisecond)
	for _, ch := range rep.Checks {
		switch ch.Status {
		case verify.StatusFailed:
			row.failing = append(row.failing, ch.Name)
		case verify.StatusInconclusive:
			row.failing = append(row.failing, ch.Name+" (inconclusive)")
		}
	}
	wrong, dups := -1, -1
	if ch := rep.Check(verify.CheckExactlyOncePerOp); ch != nil {
		wrong = ch.CounterexamplesTotal
	}
	if rep.InboxDuplicates != nil {
		dups = int(*rep.InboxDuplicates)
	}
	row.figures = fmt.Sprintf("ops %d, metrics %d, ledger %d (%+d), ops wrong %d, inbox dups %d, kills %d, drained %v",
		rep.Ops, rep.SideEffects, rep.LedgerEffects, rep.LedgerEffects-rep.Ops, wrong, dups, rep.Faults["kill"], res.Drained)
	t.Log(row.figures)

	var text strings.Builder
	_ = rep.WriteText(&text)
	if got := rep.Faults["kill"]; got != c.fired {
		t.Errorf("%d kills recorded, want %d:\n%s", got, c.fired, text.String())
	}
	if dups < c.minDups || (c.brokerDedups && dups != 0) {
		t.Errorf("the inbox counted %d duplicates; want at least %d (none when the broker dedups):\n%s", dups, c.minDups, text.String())
	}
	if c.fails == "" {
		judgeSafe(t, rep, killsConsumer(cfg.Profile), row.failing, text.String())
	} else {
		judgeUnsafe(t, c, rep, text.String())
	}
}

// judgeSafe: held, the ledger exact, no check failed or inconclusive, and
// the metrics exact too unless the consumer was killed (its counter loses
// what it counted after the last scrape).
func judgeSafe(t *testing.T, rep *verify.Report, consumerKilled bool, failing []string, text string) {
	t.Helper()
	if rep.Verdict != verify.VerdictHeld || rep.ExitCode != 0 || rep.LedgerEffects != rep.Ops || len(failing) > 0 {
		t.Errorf("verdict %s (exit %d), ledger %d of %d, checks not held %v; want held, the ledger exact, no check failed or inconclusive:\n%s",
			rep.Verdict, rep.ExitCode, rep.LedgerEffects, rep.Ops, failing, text)
	}
	if rep.SideEffects > rep.Ops || (rep.SideEffects < rep.Ops && !consumerKilled) {
		t.Errorf("side effects %d from metrics for %d ops", rep.SideEffects, rep.Ops)
	}
}

// judgeUnsafe: violated, on the row's check, no check failing that the
// broken property does not explain, the ledger's extra within bounds.
func judgeUnsafe(t *testing.T, c crashCase, rep *verify.Report, text string) {
	t.Helper()
	if rep.Verdict != verify.VerdictViolated || rep.ExitCode != 1 {
		t.Errorf("verdict %s (exit %d), want violated:\n%s", rep.Verdict, rep.ExitCode, text)
	}
	if ch := rep.Check(c.fails); ch == nil || ch.Status != verify.StatusFailed {
		t.Errorf("%s did not fail:\n%s", c.fails, text)
	}
	for _, ch := range rep.Checks {
		if ch.Status == verify.StatusFailed && ch.Name != c.fails && !slices.Contains(c.alsoFail, ch.Name) {
			t.Errorf("%s failed too (%s): blame on a component that did its job:\n%s", ch.Name, ch.Figure, text)
		}
	}
	extra := rep.LedgerEffects - rep.Ops
	if lo, hi := c.extra(rep); extra < lo || extra > hi {
		t.Errorf("ledger %d for %d ops (%+d); want %+d..%+d:\n%s", rep.LedgerEffects, rep.Ops, extra, lo, hi, text)
	}
}

// killsConsumer says whether the profile kills the consumer.
func killsConsumer(p profiles.Profile) bool {
	return slices.ContainsFunc(p.Faults, func(f rundir.FaultSpec) bool { return f.Fault == rundir.FaultKill && f.Target == "consumer" })
}

// shorten makes a crash profile quick for make test: a crashed request's
// key is taken over after 2 s instead of the 30 s lease, and a crashed
// consumer's events come back after a 2 s ack wait instead of 30 s. Both
// flags go to the first start and to every restart of that component.
func shorten(p *profiles.Profile) {
	quick := map[string][]string{"charge": {"--lease=2s"}, "consumer": {"--ack-wait=2s"}}
	p.Charge = append(slices.Clone(p.Charge), quick["charge"]...)
	p.Consumer = append(slices.Clone(p.Consumer), quick["consumer"]...)
	faults := slices.Clone(p.Faults)
	for i, f := range faults {
		if f.Fault == "kill" {
			faults[i].Restart = append(slices.Clone(f.Restart), quick[f.Target]...)
		}
	}
	p.Faults = faults
}

// crashTable formats the matrix's runs.
func crashTable(rows []crashRow) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "profile\tseed\tverdict\tfailing checks\tfigures\tduration")
	for _, r := range rows {
		failing := "-"
		if len(r.failing) > 0 {
			failing = strings.Join(r.failing, "; ")
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", r.name, r.seed, r.verdict, failing, r.figures, r.duration)
	}
	_ = w.Flush()
	return b.String()
}
