package verify

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/rundir"
)

// TestShardKilledAfterA409: a shard killed between a 409 and the retry
// that would have had the answer leaves a key whose last recorded answer
// is a 409. That is not a key stuck in flight (the run never ended for
// it): no-key-stuck-in-flight is inconclusive and so is the verdict, not
// violated. The same history in a shard that finished still fails.
func TestShardKilledAfterA409(t *testing.T) {
	for _, tt := range []struct {
		name          string
		finished      bool
		verdict       string
		status, label string
	}{
		{"killed", false, VerdictInconclusive, StatusInconclusive, "0 of 1 keys answered 409 stayed in flight, 1 unknown"},
		{"finished", true, VerdictViolated, StatusFailed, "1 of 1 keys answered 409 stayed in flight"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dirs, _ := buildShardedRun(t, t.TempDir(), 40, 2)
			if !tt.finished {
				editRun(t, dirs[1], func(r *rundir.Run) { r.Ended = time.Time{} })
			}
			// Shard 1's history up to its middle, then a 409 for the op
			// of the next line, never retried.
			editHistory(t, dirs[1], func(lines []string) []string {
				var a rundir.Attempt
				if err := json.Unmarshal([]byte(lines[len(lines)/2]), &a); err != nil {
					t.Fatal(err)
				}
				a.Status, a.Outcome, a.RetryAfterMS, a.Replayed = 409, rundir.OutcomeConflict, 100, false
				conflict, err := json.Marshal(a)
				if err != nil {
					t.Fatal(err)
				}
				return append(lines[:len(lines)/2:len(lines)/2], string(conflict)+"\n")
			})
			rep := verifyDirs(t, dirs)
			c := rep.Check(CheckNoKeyStuck)
			if rep.Verdict != tt.verdict || c.Status != tt.status || c.Figure != tt.label {
				t.Errorf("verdict %s, %s %s %q; want %s, %s %q (%s)", rep.Verdict, c.Name, c.Status, c.Figure, tt.verdict, tt.status, tt.label, c.Detail)
			}
		})
	}
}
