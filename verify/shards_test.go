package verify

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/rundir"
)

// editRun rewrites dir's run.yaml through edit.
func editRun(t *testing.T, dir string, edit func(*rundir.Run)) {
	t.Helper()
	path := filepath.Join(dir, rundir.RunFile)
	r, err := rundir.ReadRun(path)
	if err != nil {
		t.Fatal(err)
	}
	edit(&r)
	if err := rundir.WriteRun(path, r); err != nil {
		t.Fatal(err)
	}
}

// editHistory rewrites dir's history.jsonl: edit gets its lines, each
// with its newline, and returns the lines to keep.
func editHistory(t *testing.T, dir string, edit func(lines []string) []string) {
	t.Helper()
	path := filepath.Join(dir, rundir.HistoryFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	kept := edit(strings.SplitAfter(string(b), "\n"))
	if err := os.WriteFile(path, []byte(strings.Join(kept, "")), 0o644); err != nil {
		t.Fatal(err)
	}
}

// verifySet merges set into a fresh directory, with the evidence of the
// shard EvidenceDir picks, and returns the merged report.
func verifySet(t *testing.T, set *ShardSet) *Report {
	t.Helper()
	evDir, _ := set.EvidenceDir()
	rep, err := VerifyShards(context.Background(), set, filepath.Join(t.TempDir(), "merged"), evDir, Options{NoHTML: true})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// verifyDirs opens dirs as the shards of one run and merges them
// (verifySet).
func verifyDirs(t *testing.T, dirs []string) *Report {
	t.Helper()
	set, err := OpenShards(dirs)
	if err != nil {
		t.Fatal(err)
	}
	return verifySet(t, set)
}

func TestMergedShardsHold(t *testing.T) {
	dirs, attempts := buildShardedRun(t, t.TempDir(), 400, 4)
	set, err := OpenShards(dirs)
	if err != nil {
		t.Fatal(err)
	}
	evDir, why := set.EvidenceDir()
	if evDir != dirs[3] || !strings.Contains(why, "with a ledger that ended last") {
		t.Errorf("evidence from %s (%s), want the last shard, the one with the ledger", evDir, why)
	}
	out := filepath.Join(t.TempDir(), "merged")
	rep, err := VerifyShards(context.Background(), set, out, evDir, Options{NoHTML: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Verdict != VerdictHeld || rep.Ops != 400 || rep.Attempts != attempts || rep.ShardCount != 4 || len(rep.Shards) != 4 {
		t.Fatalf("verdict %s, %d ops, %d attempts (want %d), %d shards: %v", rep.Verdict, rep.Ops, rep.Attempts, attempts, len(rep.Shards), rep.Err())
	}
	sum := 0
	for k, f := range rep.Shards {
		sum += f.Attempts
		if f.K != k || f.Dir != dirs[k] || f.Ops != 100 || !f.Finished || f.Missing || f.Acknowledged != 100 || f.NeverSent != 0 {
			t.Errorf("shard %d: %+v", k, f)
		}
	}
	if sum != attempts {
		t.Errorf("the shards' attempts add up to %d, want %d", sum, attempts)
	}
	if _, err := os.Stat(filepath.Join(out, rundir.ReportFile)); err != nil {
		t.Errorf("no merged report: %v", err)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"shard 0/4: 100 ops", "shard 3/4: 100 ops", "evidence of the system from shard 3/4"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text verdict lacks %q:\n%s", want, text.String())
		}
	}
}

// TestOpenShardsRefuses: shards of other plans or seeds, mixed counts and
// a shard given twice are usage errors naming the directories.
func TestOpenShardsRefuses(t *testing.T) {
	tests := []struct {
		name string
		edit func(*rundir.Run)
		dup  bool
		want string
	}{
		{"other seed", func(r *rundir.Run) { r.Seed = 2 }, false, "different seeds"},
		{"other plan", func(r *rundir.Run) { r.PlanFingerprint = "other" }, false, "different plans"},
		{"other count", func(r *rundir.Run) { r.Shard = "1/3" }, false, "mixed shard counts"},
		{"bad shard", func(r *rundir.Run) { r.Shard = "5/4" }, false, "shard"},
		{"twice", func(*rundir.Run) {}, true, "shard 0/4 given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dirs, _ := buildShardedRun(t, t.TempDir(), 40, 4)
			editRun(t, dirs[1], tt.edit)
			if tt.dup {
				dirs = append(dirs, dirs[0])
			}
			_, err := OpenShards(dirs)
			if apperr.Code(err) != apperr.EUSAGE || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("%v: want a usage error mentioning %q", err, tt.want)
			}
			if !tt.dup && !strings.Contains(err.Error(), dirs[1]) {
				t.Errorf("%v: does not name %s", err, dirs[1])
			}
		})
	}
	if _, err := OpenShards([]string{t.TempDir()}); apperr.Code(err) != apperr.EUSAGE {
		t.Errorf("a directory without run.yaml: %v", err)
	}
}

// TestMergedShardMissing: a shard not given, or one whose run never ended
// with part of its history, is inconclusive however the rest went, its
// ops named; a real failure in the rest still makes it violated.
func TestMergedShardMissing(t *testing.T) {
	dirs, _ := buildShardedRun(t, t.TempDir(), 400, 4)
	set, err := OpenShards(append([]string{}, dirs[0], dirs[1], dirs[3]))
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Missing) != 1 || set.Missing[0] != 2 {
		t.Fatalf("missing %v, want [2]", set.Missing)
	}
	rep := verifySet(t, set)
	errs := strings.Join(rep.EvidenceErrors, "; ")
	if rep.Verdict != VerdictInconclusive || !strings.Contains(errs, "shard 2/4 missing (no run directory given): its 100 ops never sent (ops 3, 7, 11, 15, 19 and 95 more)") {
		t.Fatalf("verdict %s, evidence errors %q", rep.Verdict, errs)
	}
	if c := rep.Check(CheckExactlyOncePerOp); c.Status != StatusHeld || !strings.HasPrefix(c.Figure, "0 of 300 ops wrong") {
		t.Errorf("%s: %s %q: the missing shard's ops are not judged", c.Name, c.Status, c.Figure)
	}
	if c := rep.Check(CheckEffectsEqualOps); c.Status != StatusInconclusive || !strings.Contains(c.Detail, "shard 2/4 missing") {
		t.Errorf("%s: %s %q", c.Name, c.Status, c.Detail)
	}

	// Shard 1 died mid-run: its run.yaml has no end, its history lost the
	// records of its last ops; its ledger effects are the ledger's.
	editRun(t, dirs[1], func(r *rundir.Run) { r.Ended = time.Time{} })
	editHistory(t, dirs[1], func(lines []string) []string { return lines[:len(lines)/2] })
	if set, err = OpenShards(dirs); err != nil {
		t.Fatal(err)
	}
	rep = verifySet(t, set)
	f := rep.Shards[1]
	if rep.Verdict != VerdictInconclusive || f.Finished || f.NeverSent < 40 || !strings.Contains(strings.Join(rep.EvidenceErrors, "; "), "shard 1/4 ("+dirs[1]+") did not finish") {
		t.Fatalf("verdict %s, shard 1 %+v, evidence errors %q", rep.Verdict, f, rep.EvidenceErrors)
	}

	// A double charge in a shard that did finish stands.
	ledger := filepath.Join(dirs[3], rundir.LedgerFile)
	lf, err := os.OpenFile(ledger, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lf.WriteString(`{"merchant":"demo","key":"key-00000001","effects":1}` + "\n"); err != nil {
		t.Fatal(err)
	}
	lf.Close()
	rep = verifySet(t, set)
	if c := rep.Check(CheckExactlyOncePerOp); rep.Verdict != VerdictViolated || c.Status != StatusFailed || c.Counterexamples[0].Op != 1 {
		t.Errorf("a double charge of op 1 beside a dead shard: verdict %s, %s %s", rep.Verdict, c.Status, c.Figure)
	}
}

// TestVerifyOneShardAlone: Verify over one shard's directory judges it as
// a merge missing the others, never held.
func TestVerifyOneShardAlone(t *testing.T) {
	dirs, _ := buildShardedRun(t, t.TempDir(), 40, 2)
	rep, err := Verify(context.Background(), dirs[1], Options{NoHTML: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Verdict != VerdictInconclusive || rep.ShardCount != 2 || !rep.Shards[0].Missing {
		t.Errorf("one shard of two alone: %s, shards %+v", rep.Verdict, rep.Shards)
	}
}

// TestMergedShardDiedAtStart: a shard that died before building its plan
// (no fingerprint, plan or history) is merged, not refused: its ops are
// never sent and named.
func TestMergedShardDiedAtStart(t *testing.T) {
	dirs, _ := buildShardedRun(t, t.TempDir(), 40, 2)
	for _, f := range []string{rundir.PlanFile, rundir.HistoryFile} {
		if err := os.Remove(filepath.Join(dirs[0], f)); err != nil {
			t.Fatal(err)
		}
	}
	editRun(t, dirs[0], func(r *rundir.Run) { r.PlanFingerprint, r.Ended = "", time.Time{} })
	rep := verifyDirs(t, dirs)
	if f := rep.Shards[0]; rep.Verdict != VerdictInconclusive || rep.Ops != 40 || f.NeverSent != 20 || f.Finished {
		t.Errorf("verdict %s, %d ops, shard 0 %+v", rep.Verdict, rep.Ops, f)
	}
}
