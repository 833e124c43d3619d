package verify

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/rundir"
)

// ShardRun is one shard's run directory.
type ShardRun struct {
	K   int
	Dir string
	Run rundir.Run
}

// finished says whether the shard's attack reached its end (run.yaml is
// written again, with the end, only then).
func (s ShardRun) finished() bool { return !s.Run.Ended.IsZero() }

// ShardSet is the run directories of the shards of one plan (attack
// --shard K/N), to be judged as one run: VerifyShards.
type ShardSet struct {
	// N is the number of shards the plan was split into; Seed and
	// Fingerprint are the whole plan's.
	N           int
	Seed        int64
	Fingerprint string
	// Shards are the shards given, by K; Missing the Ks not given.
	Shards  []ShardRun
	Missing []int
}

// OpenShards reads the run.yaml of each directory and checks that they
// are shards of one plan: the same seed, shard count and plan fingerprint
// (where recorded: a shard that died before building its plan has none),
// each shard once. Anything else is refused with EUSAGE, naming the
// directories. Shards not given are listed in Missing: VerifyShards
// judges what there is and says what is missing.
func OpenShards(dirs []string) (*ShardSet, error) {
	if len(dirs) == 0 {
		return nil, apperr.Errorf(apperr.EUSAGE, "no run directory to verify")
	}
	set := &ShardSet{}
	byK := map[int]string{}
	for i, dir := range dirs {
		run, err := rundir.ReadRun(filepath.Join(dir, rundir.RunFile))
		if err != nil {
			return nil, apperr.Wrap(apperr.EUSAGE, err, "--run %s: not a run directory of an attack (no readable %s)", dir, rundir.RunFile)
		}
		sh, err := run.ShardOf()
		if err != nil {
			return nil, apperr.Wrap(apperr.EUSAGE, err, "--run %s: shard %q", dir, run.Shard)
		}
		if i == 0 {
			set.N, set.Seed = sh.N, run.Seed
		}
		first := set.Shards
		switch {
		case sh.N != set.N:
			return nil, apperr.Errorf(apperr.EUSAGE, "mixed shard counts: %s is shard %s, %s is shard %s", first[0].Dir, first[0].Run.Shard, dir, sh)
		case run.Seed != set.Seed:
			return nil, apperr.Errorf(apperr.EUSAGE, "shards of different seeds: %s has seed %d, %s has seed %d", first[0].Dir, set.Seed, dir, run.Seed)
		case run.PlanFingerprint != "" && set.Fingerprint != "" && run.PlanFingerprint != set.Fingerprint:
			return nil, apperr.Errorf(apperr.EUSAGE, "shards of different plans: %s has plan %s, %s has plan %s", set.fingerprintDir(), set.Fingerprint, dir, run.PlanFingerprint)
		}
		// A shard that died before its plan was built recorded none: its
		// seed still says which plan it was part of.
		if set.Fingerprint == "" {
			set.Fingerprint = run.PlanFingerprint
		}
		if other, dup := byK[sh.K]; dup {
			return nil, apperr.Errorf(apperr.EUSAGE, "shard %s given twice: %s and %s", sh, other, dir)
		}
		byK[sh.K] = dir
		set.Shards = append(set.Shards, ShardRun{K: sh.K, Dir: dir, Run: run})
	}
	slices.SortFunc(set.Shards, func(a, b ShardRun) int { return a.K - b.K })
	for k := range set.N {
		if _, ok := byK[k]; !ok {
			set.Missing = append(set.Missing, k)
		}
	}
	return set, nil
}

// fingerprintDir is the first shard that recorded the plan's fingerprint.
func (s *ShardSet) fingerprintDir() string {
	for _, sh := range s.Shards {
		if sh.Run.PlanFingerprint != "" {
			return sh.Dir
		}
	}
	return ""
}

// planFile is the whole plan: every shard writes it, but one that died
// before building it has none.
func (s *ShardSet) planFile() string {
	for _, sh := range s.Shards {
		p := filepath.Join(sh.Dir, rundir.PlanFile)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return filepath.Join(s.Shards[0].Dir, rundir.PlanFile)
}

// shardOf opens runDir as a shard set of one when its run.yaml says it is
// one shard of several (ok false for a whole run or no run.yaml).
func shardOf(runDir string) (*ShardSet, bool, error) {
	run, err := rundir.ReadRun(filepath.Join(runDir, rundir.RunFile))
	if err != nil || run.Shard == "" {
		return nil, false, nil
	}
	if sh, err := run.ShardOf(); err != nil || !sh.Sharded() {
		return nil, false, nil
	}
	set, err := OpenShards([]string{runDir})
	return set, err == nil, err
}

// EvidenceDir is the shard whose evidence of the system (metrics pages and
// timeline, ledger.jsonl, events.jsonl) stands for all, with why. Each
// shard collected it when it ended; the system's evidence covers every
// shard's effects, so the latest collection is the most complete: the
// shard with a ledger.jsonl (the authority for every per-operation check)
// that ended last, else the shard that ended last.
func (s *ShardSet) EvidenceDir() (dir, why string) {
	best := -1
	bestLedger := false
	for i, sh := range s.Shards {
		_, err := os.Stat(filepath.Join(sh.Dir, rundir.LedgerFile))
		ledger := err == nil
		switch {
		case best < 0, ledger && !bestLedger:
		case ledger == bestLedger && sh.Run.Ended.After(s.Shards[best].Run.Ended):
		default:
			continue
		}
		best, bestLedger = i, ledger
	}
	sh := s.Shards[best]
	why = "the shard that ended last"
	if bestLedger {
		why = "the shard with a ledger that ended last"
	}
	return sh.Dir, fmt.Sprintf("shard %d/%d (%s), %s", sh.K, s.N, sh.Dir, why)
}

// VerifyShards judges the shards of one plan as one run, as Verify judges
// a run directory: the whole plan (from the first shard that has its
// plan.jsonl),
// every shard's history and faults, and the system's evidence from
// evidenceDir (a shard's, see EvidenceDir, or one Collect filled once for
// all). The reports go to out. Ops no given shard sent (a missing shard's,
// or those of a shard that stopped before sending them) are not judged:
// the verdict is then inconclusive at best, naming the shards and how many
// ops. report.json's shards lists each shard's own figures.
func VerifyShards(ctx context.Context, set *ShardSet, out, evidenceDir string, opts Options) (*Report, error) {
	opts = opts.withDefaults()
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, apperr.Wrap(apperr.EINCONCLUSIVE, err, "writing the verdict to %s", out)
	}
	in, err := set.inputs(evidenceDir)
	if err != nil {
		return nil, err
	}
	return verifyInputs(ctx, in, out, opts)
}

// inputs are the files of every shard given, with the evidence of
// evidenceDir and a run.yaml merged from the shards': the whole plan's
// seed and ops, the earliest start and the latest end.
func (s *ShardSet) inputs(evidenceDir string) (inputs, error) {
	in := inputs{dir: evidenceDir, plan: s.planFile()}
	layout := &shardLayout{set: s, attempts: map[int]int{}, unfinished: map[int]bool{}, missing: map[int]bool{}}
	for _, k := range s.Missing {
		layout.missing[k] = true
	}
	run := s.Shards[0].Run
	if r, err := rundir.ReadRun(filepath.Join(evidenceDir, rundir.RunFile)); err == nil {
		run = r
	} else if !errors.Is(err, fs.ErrNotExist) {
		return in, apperr.Wrap(apperr.EINCONCLUSIVE, err, "reading %s", evidenceDir)
	}
	run.Shard, run.Stopped = "", ""
	for _, sh := range s.Shards {
		in.histories = append(in.histories, shardFile{sh.K, filepath.Join(sh.Dir, rundir.HistoryFile)})
		in.faults = append(in.faults, shardFile{sh.K, filepath.Join(sh.Dir, rundir.FaultsFile)})
		if t := sh.Run.Started; !t.IsZero() && (run.Started.IsZero() || t.Before(run.Started)) {
			run.Started = t
		}
		if sh.Run.Ended.After(run.Ended) {
			run.Ended = sh.Run.Ended
		}
		if !sh.finished() {
			layout.unfinished[sh.K] = true
		}
	}
	if len(layout.unfinished) > 0 {
		run.Ended = time.Time{}
	}
	layout.evidenceFrom = "collected once into " + evidenceDir
	for _, sh := range s.Shards {
		if filepath.Clean(sh.Dir) == filepath.Clean(evidenceDir) {
			layout.evidenceFrom = fmt.Sprintf("shard %d/%d (%s)", sh.K, s.N, sh.Dir)
		}
	}
	in.run, in.shards = &run, layout
	return in, nil
}

// shardLayout is what the analysis of a sharded plan needs to know of its
// shards, and what it counts per shard.
type shardLayout struct {
	set        *ShardSet
	missing    map[int]bool
	unfinished map[int]bool
	// attempts counts each shard's history; unsent each shard's ops that
	// were set aside, by shard, with their ids (the first few).
	attempts map[int]int
	unsent   map[int][]int
	nUnsent  map[int]int
	// evidenceFrom says whose evidence of the system was used.
	evidenceFrom string
}

// partition assigns the plan's ops to the shards (nil for a whole run).
func (l *shardLayout) partition() *rundir.Partition {
	if l == nil {
		return nil
	}
	return rundir.NewPartition(l.set.N)
}

// label prefixes a note about one shard's file ("" for a whole run).
func (l *shardLayout) label(k int) string {
	if l == nil {
		return ""
	}
	return fmt.Sprintf("shard %d/%d: ", k, l.set.N)
}

// maxNamed is how many op ids a missing or unfinished shard's line names.
const maxNamed = 20

// setAside takes the ops no given shard sent out of the judgement: every
// op of a missing shard, and those a shard that did not finish never sent
// (an op in flight when a shard died may have its effect without its
// record). Their keys stay planned, so their effects are never counted
// as effects under keys no op used.
func (a *analysis) setAside(l *shardLayout) {
	if l == nil {
		return
	}
	l.unsent, l.nUnsent = map[int][]int{}, map[int]int{}
	for i := range a.ops {
		o := &a.ops[i]
		if o.kind != kindCharge && o.kind != kindReuse {
			continue
		}
		k := int(o.shard)
		if o.kind == kindCharge && l.unfinished[k] && o.stuck() {
			// Its shard died between a 409 and the retry that would have
			// had the answer: whether the key stayed in flight is not
			// known, and the run never ended for it to be stuck at.
			o.endedInConflict = false
			a.cutInConflict++
		}
		if !l.missing[k] && !(l.unfinished[k] && o.attempts == 0) {
			continue
		}
		if o.kind == kindReuse {
			a.nReuse--
		} else if o.race {
			a.nRace--
		}
		o.kind = kindUnsent
		l.nUnsent[k]++
		if len(l.unsent[k]) < maxNamed {
			l.unsent[k] = append(l.unsent[k], o.op)
		}
	}
}

// ShardFigures are one shard's own figures in a merged verdict.
type ShardFigures struct {
	K   int    `json:"k"`
	Dir string `json:"dir,omitempty"`
	// Missing: no run directory was given for the shard. Finished: its
	// attack reached its end.
	Missing  bool `json:"missing,omitempty"`
	Finished bool `json:"finished"`
	// Ops are the plan's ops the shard owned; Attempts its history's.
	Ops      int `json:"ops"`
	Attempts int `json:"attempts"`
	// Acknowledged, Failed and Indeterminate are its charges as its
	// client saw them (a 2xx; only definite rejections; neither).
	Acknowledged  int `json:"acknowledged"`
	Failed        int `json:"failed"`
	Indeterminate int `json:"indeterminate"`
	// NeverSent counts its ops no given shard sent (not judged);
	// NeverSentOps names the first of them.
	NeverSent    int   `json:"never_sent,omitempty"`
	NeverSentOps []int `json:"never_sent_ops,omitempty"`
	// Stopped is why the shard's attack stopped early, if it did.
	Stopped string `json:"stopped,omitempty"`
}

// describe adds the shards to the report: each one's figures, what is
// missing (as evidence errors, so the verdict is never held), why shards
// stopped early, and effects-equal-ops made inconclusive when ops of the
// plan were never sent.
func (l *shardLayout) describe(r *Report, a *analysis) {
	if l == nil {
		return
	}
	r.ShardCount = l.set.N
	figs := make([]ShardFigures, l.set.N)
	for k := range figs {
		figs[k] = ShardFigures{K: k, Missing: l.missing[k], Attempts: l.attempts[k], NeverSent: l.nUnsent[k], NeverSentOps: l.unsent[k]}
	}
	for _, sh := range l.set.Shards {
		figs[sh.K].Dir, figs[sh.K].Finished, figs[sh.K].Stopped = sh.Dir, sh.finished(), sh.Run.Stopped
	}
	for i := range a.ops {
		o := &a.ops[i]
		if o.kind == kindUnplanned || int(o.shard) >= len(figs) {
			continue
		}
		f := &figs[o.shard]
		f.Ops++
		if o.kind != kindCharge {
			continue
		}
		switch {
		case o.ok() > 0:
			f.Acknowledged++
		case o.definite():
			f.Failed++
		default:
			f.Indeterminate++
		}
	}
	var stops, unsent []string
	for _, f := range figs {
		name := fmt.Sprintf("shard %d/%d", f.K, l.set.N)
		switch {
		case f.Missing:
			unsent = append(unsent, fmt.Sprintf("%s missing (no run directory given): its %d ops never sent (%s)", name, f.Ops, opsNamed(f.NeverSentOps, f.NeverSent)))
		case !f.Finished:
			unsent = append(unsent, fmt.Sprintf("%s (%s) did not finish (its run.yaml has no end): %d of its %d ops never sent (%s)", name, f.Dir, f.NeverSent, f.Ops, opsNamed(f.NeverSentOps, f.NeverSent)))
		}
		if f.Stopped != "" {
			stops = append(stops, name+": "+f.Stopped)
		}
	}
	r.Shards = figs
	r.EvidenceFrom = l.evidenceFrom
	r.EvidenceErrors = append(r.EvidenceErrors, unsent...)
	if len(stops) > 0 {
		r.Stopped = strings.Join(append(nonEmpty(r.Stopped), stops...), "; ")
	}
	if c := r.Check(CheckEffectsEqualOps); c != nil && len(unsent) > 0 && c.Status != StatusInconclusive {
		c.Status, c.Held = StatusInconclusive, false
		c.Detail = "ops of the plan were never sent from the run directories given (" + strings.Join(unsent, "; ") + "): the effects cannot be held to the whole plan"
		c.Counterexamples, c.CounterexamplesTotal = nil, 0
	}
}

// opsNamed names the first few of n ops: "ops 3, 7, 9 and 12 more".
func opsNamed(ids []int, n int) string {
	if n == 0 {
		return "none"
	}
	shown := ids[:min(len(ids), 5)]
	parts := make([]string, len(shown))
	for i, id := range shown {
		parts[i] = fmt.Sprint(id)
	}
	s := "ops " + strings.Join(parts, ", ")
	if more := n - len(shown); more > 0 {
		s += fmt.Sprintf(" and %d more", more)
	}
	return s
}

// TextLine is the shard's line in the text verdict.
func (f ShardFigures) TextLine(n int) string {
	s := fmt.Sprintf("shard %d/%d: ", f.K, n)
	if f.Missing {
		return s + fmt.Sprintf("missing, %d ops never sent", f.Ops)
	}
	s += fmt.Sprintf("%d ops, %d attempts; charges %d acknowledged, %d failed, %d indeterminate", f.Ops, f.Attempts, f.Acknowledged, f.Failed, f.Indeterminate)
	if f.NeverSent > 0 {
		s += fmt.Sprintf("; %d never sent", f.NeverSent)
	}
	if !f.Finished {
		s += "; did not finish"
	}
	return s + " (" + f.Dir + ")"
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}
