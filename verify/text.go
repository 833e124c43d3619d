package verify

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strings"
)

// statusWord is how the text report marks a check.
func statusWord(c Check) string {
	switch c.Status {
	case StatusHeld:
		return "held"
	case StatusFailed:
		return "FAILED"
	case StatusInconclusive:
		return "inconclusive"
	default:
		return "nothing"
	}
}

// WriteText writes the human verdict: a headline, one line per check with
// its figure, and the counterexamples under each failed check.
func (r *Report) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "verdict: %s (exit %d)\n", strings.ToUpper(r.Verdict), r.ExitCode)
	if r.Stopped != "" {
		fmt.Fprintf(bw, "stopped early: %s (judged from what was collected)\n", r.Stopped)
	}
	fmt.Fprintf(bw, "seed %d", r.Seed)
	if r.Profile != "" {
		fmt.Fprintf(bw, ", profile %s", r.Profile)
	}
	if r.Target != "" {
		fmt.Fprintf(bw, ", target %s", r.Target)
	}
	if len(r.Unsafe) > 0 {
		fmt.Fprintf(bw, ", unsafe %s", strings.Join(r.Unsafe, ","))
	}
	if r.NoJitter {
		fmt.Fprint(bw, ", no-jitter")
	}
	fmt.Fprintf(bw, ", %.1f s: %d ops, %d attempts, %s side effects, %s ledger effects\n",
		r.DurationSeconds, r.Ops, r.Attempts, orMissing(r.SideEffects, r.SideEffectsSource), orMissing(r.LedgerEffects, r.LedgerSource))
	if len(r.Faults) > 0 {
		fmt.Fprintf(bw, "faults: %s\n", faultList(r.Faults))
	}
	if c := r.IdempotencyCache; c != nil {
		fmt.Fprintf(bw, "idempotency cache: %.0f Redis hits, %.0f fell through to Postgres (hit ratio %.3f), %.0f Redis busy, %.0f Redis errors\n",
			c.RedisHit, c.FallThrough, c.HitRatio, c.RedisBusy, c.RedisError)
	}
	for _, b := range r.Backlog {
		fmt.Fprintf(bw, "backlog: %s\n", b.Summary())
	}
	if o := r.Outage; o != nil {
		fmt.Fprintf(bw, "outage: %s\n", o.Summary())
	}
	for _, l := range loadLines(r) {
		fmt.Fprintln(bw, l)
	}
	for _, f := range r.Shards {
		fmt.Fprintln(bw, f.TextLine(r.ShardCount))
	}
	if r.EvidenceFrom != "" {
		fmt.Fprintf(bw, "evidence of the system from %s\n", r.EvidenceFrom)
	}
	for _, e := range r.EvidenceErrors {
		fmt.Fprintf(bw, "evidence missing: %s\n", e)
	}
	writeResets(bw, r.CounterResets)
	width := 0
	for _, c := range r.Checks {
		width = max(width, len(c.Name))
	}
	for _, c := range r.Checks {
		fmt.Fprintf(bw, "  %-12s %-*s  %s", statusWord(c), width, c.Name, c.Figure)
		if c.Evidence != "" {
			fmt.Fprintf(bw, " [%s]", c.Evidence)
		}
		fmt.Fprintln(bw)
		if c.Detail != "" && c.Status != StatusHeld {
			fmt.Fprintf(bw, "  %-12s %-*s  %s\n", "", width, "", c.Detail)
		}
		if c.Status != StatusFailed {
			continue
		}
		for _, x := range c.Counterexamples {
			fmt.Fprintf(bw, "      - %s\n", x.String())
		}
		if more := c.CounterexamplesTotal - len(c.Counterexamples); more > 0 {
			fmt.Fprintf(bw, "      ... and %d more (report.json has the first %d)\n", more, len(c.Counterexamples))
		}
	}
	return bw.Flush()
}

// writeResets tells the counter resets, one line per page and time (a
// process's restart resets all its counters at once).
func writeResets(w io.Writer, resets []CounterReset) {
	for i := 0; i < len(resets); {
		x := resets[i]
		var parts []string
		for ; i < len(resets) && resets[i].Page == x.Page && resets[i].Time.Equal(x.Time); i++ {
			parts = append(parts, fmt.Sprintf("%s %s -> %s", resets[i].Metric, fmtNum(resets[i].Before), fmtNum(resets[i].After)))
		}
		fmt.Fprintf(w, "counter reset: %s at %s: %s (summed across it)\n", x.Page, x.Time.UTC().Format("15:04:05.000"), strings.Join(parts, ", "))
	}
}

// String renders one counterexample on a line.
func (x Counterexample) String() string {
	var b strings.Builder
	if x.Op >= 0 {
		fmt.Fprintf(&b, "op %d", x.Op)
	}
	if x.Key != "" {
		if b.Len() > 0 {
			b.WriteString(" ")
		}
		b.WriteString("key ")
		if x.Merchant != "" {
			b.WriteString(x.Merchant + "/")
		}
		b.WriteString(x.Key)
	}
	if x.Sender > 0 {
		fmt.Fprintf(&b, " sender %d", x.Sender)
	}
	switch {
	case x.Attempts == 1:
		b.WriteString(", 1 attempt")
	case x.Attempts > 1:
		fmt.Fprintf(&b, ", %d attempts", x.Attempts)
	}
	if x.LedgerEffects != nil {
		fmt.Fprintf(&b, ", ledger effects %d", *x.LedgerEffects)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(x.Why)
	return b.String()
}

func orMissing(n int, source string) string {
	if source == "" {
		return "?"
	}
	return fmt.Sprint(n)
}

func faultList(m map[string]int) string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// transcriptMarker starts verify's part of transcript.txt; everything from
// it on is rewritten when Verify runs again on the same directory.
const transcriptMarker = "== verify: retry delays and verdict =="

// appendTranscript adds the retry-delay section and the verdict to
// transcript.txt (attack writes the part before), replacing the section a
// previous Verify wrote.
func appendTranscript(path string, r *Report) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if i := bytes.Index(old, []byte(transcriptMarker)); i >= 0 {
		old = old[:i]
	}
	var b bytes.Buffer
	b.Write(old)
	if len(old) > 0 && !bytes.HasSuffix(old, []byte("\n\n")) {
		if !bytes.HasSuffix(old, []byte("\n")) {
			b.WriteByte('\n')
		}
		b.WriteByte('\n')
	}
	b.WriteString(transcriptMarker + "\n")
	writeJitterText(&b, r)
	b.WriteString("\n")
	if err := r.WriteText(&b); err != nil {
		return err
	}
	return writeFileAtomic(path, b.Bytes())
}

// writeJitterText tells the retry delays in words: per group, the sample
// size, the window, the statistics and a histogram of delay/cap.
func writeJitterText(w io.Writer, r *Report) {
	if len(r.Jitter) == 0 {
		fmt.Fprintln(w, "retry delays: no retry waited a backoff or a Retry-After window")
		return
	}
	fmt.Fprintln(w, "retry delays (delay/cap in tenths of the window; full jitter is flat, --no-jitter piles up at the cap):")
	for _, g := range r.Jitter {
		label := groupLabel(jitterKey{g.Reason, g.Attempt})
		fmt.Fprintf(w, "  %s: %d retries, window %s ms", label, g.N, fmtMS(g.CapMS))
		if g.Insufficient {
			fmt.Fprintf(w, ", insufficient samples\n")
		} else {
			fmt.Fprintf(w, ", KS %.3f (threshold %.3f), fullest slot %d vs ~%d by chance (p<%g at %d)", g.KS, g.KSThreshold, g.MaxSlot, g.MaxSlotExpected, g.Alpha, g.MaxSlotCritical)
			if g.Held {
				fmt.Fprintln(w, ": spread")
			} else {
				fmt.Fprintln(w, ": SYNCHRONISED")
			}
		}
		peak := 0
		for _, c := range g.Hist {
			peak = max(peak, c)
		}
		for i, c := range g.Hist {
			bar := 0
			if peak > 0 {
				bar = (c*40 + peak - 1) / peak
			}
			fmt.Fprintf(w, "    %.1f-%.1f %7d %s\n", float64(i)/10, float64(i+1)/10, c, strings.Repeat("#", bar))
		}
	}
}
