package plan

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"text/template"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/rundir"
)

func mustNew(t *testing.T, cfg Config) *Plan {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSameSeedSamePlan(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Seed = 42
	a, b := mustNew(t, cfg), mustNew(t, cfg)
	if a.Fingerprint() != b.Fingerprint() {
		t.Fatal("same seed, different fingerprints")
	}
	for i := range a.Len() {
		if ao, bo := a.At(i), b.At(i); ao.Op != bo.Op || string(ao.Body) != string(bo.Body) {
			t.Fatalf("op %d differs: %+v vs %+v", i+1, ao, bo)
		}
	}
	cfg.Seed = 43
	c := mustNew(t, cfg)
	if c.Fingerprint() == a.Fingerprint() || c.At(0).Key == a.At(0).Key {
		t.Fatal("different seeds gave the same plan")
	}
	// The written plan.jsonl is identical too.
	dir := t.TempDir()
	var files [2][]rundir.Op
	for i, p := range []*Plan{a, b} {
		path := filepath.Join(dir, "plan"+string(rune('a'+i))+".jsonl")
		if err := p.Write(path); err != nil {
			t.Fatal(err)
		}
		if err := rundir.ReadFile(path, func(o rundir.Op) error { files[i] = append(files[i], o); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if len(files[0]) != a.Len() || len(files[1]) != a.Len() {
		t.Fatalf("plan.jsonl has %d and %d lines, want %d", len(files[0]), len(files[1]), a.Len())
	}
	for i := range files[0] {
		if files[0][i] != files[1][i] || files[0][i] != a.At(i).Op {
			t.Fatalf("plan.jsonl line %d differs", i+1)
		}
	}
}

func TestRatesAreRespected(t *testing.T) {
	cases := []struct {
		name              string
		ops               int
		dup, race, reuse  float64
		wantDup, wantRace float64
		wantReuse         int
	}{
		{"default", 10000, 0.2, 0.05, 0.02, 0.2, 0.05, 200},
		{"none", 2000, 0, 0, 0, 0, 0, 0},
		{"race profile", 5000, 0.5, 0.5, 0, 0.5, 0.5, 0},
		{"all duplicates", 1000, 1, 0, 0.1, 1, 0, 100},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := mustNew(t, Config{Ops: tc.ops, DuplicateRate: tc.dup, RaceRate: tc.race, ReuseRate: tc.reuse, Seed: 7})
			var charges, dups, races, reuses int
			for _, op := range p.All() {
				switch {
				case op.Kind == rundir.KindReuse:
					reuses++
				case op.Race:
					races++
					if op.Senders < 2 || op.Senders > 3 {
						t.Fatalf("race op %d has %d senders", op.Op.Op, op.Senders)
					}
				case op.Senders == 2:
					dups++
				case op.Senders != 1:
					t.Fatalf("op %d: %d senders", op.Op.Op, op.Senders)
				}
				if op.Kind == rundir.KindCharge {
					charges++
				}
			}
			if charges != tc.ops || p.Charges() != tc.ops || reuses != tc.wantReuse || p.Len() != tc.ops+tc.wantReuse {
				t.Fatalf("%d charges, %d reuses, %d ops; want %d, %d", charges, reuses, p.Len(), tc.ops, tc.wantReuse)
			}
			// Within 4 standard deviations of a binomial.
			for _, r := range []struct {
				name string
				got  int
				want float64
			}{{"duplicates", dups, tc.wantDup}, {"races", races, tc.wantRace}} {
				sd := math.Sqrt(float64(tc.ops) * r.want * (1 - r.want))
				if math.Abs(float64(r.got)-r.want*float64(tc.ops)) > 4*sd+0.5 {
					t.Errorf("%s: %d of %d, want about %.0f", r.name, r.got, tc.ops, r.want*float64(tc.ops))
				}
			}
		})
	}
}

func TestReuseOpsReuseAnEarlierKeyWithAnotherBody(t *testing.T) {
	p := mustNew(t, Config{Ops: 2000, ReuseRate: 0.05, Seed: 1, Merchants: []Merchant{{"a", "ka"}, {"b", "kb"}}})
	n := 0
	for i, op := range p.All() {
		if op.Op.Op != i+1 {
			t.Fatalf("op at %d has id %d: ids must be 1..n in order", i, op.Op.Op)
		}
		if op.Kind != rundir.KindReuse {
			continue
		}
		n++
		orig, ok := p.Op(op.ReuseOf)
		if !ok || orig.Kind != rundir.KindCharge || orig.Op.Op >= op.Op.Op {
			t.Fatalf("reuse op %d reuses %d, which is not an earlier charge", op.Op.Op, op.ReuseOf)
		}
		if op.Key != orig.Key || op.Merchant != orig.Merchant {
			t.Fatalf("reuse op %d: key %s/%s, original %s/%s", op.Op.Op, op.Merchant, op.Key, orig.Merchant, orig.Key)
		}
		if string(op.Body) == string(orig.Body) || op.BodySHA256 == orig.BodySHA256 || op.Amount == orig.Amount {
			t.Fatalf("reuse op %d has the same body as op %d", op.Op.Op, orig.Op.Op)
		}
	}
	if n != 100 {
		t.Fatalf("%d reuse ops, want 100", n)
	}
}

func TestKeysAreUniqueAndUUIDShaped(t *testing.T) {
	p := mustNew(t, Config{Ops: 20000, Seed: 9})
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for _, op := range p.All() {
		if !re.MatchString(op.Key) {
			t.Fatalf("key %q is not UUID-shaped", op.Key)
		}
		if seen[op.Key] {
			t.Fatalf("key %q used twice by charges", op.Key)
		}
		seen[op.Key] = true
		if !strings.HasPrefix(op.SKU, "sku-") || op.Quantity < 1 || op.Amount < 100 {
			t.Fatalf("op %+v", op)
		}
	}
}

func TestBodyTemplate(t *testing.T) {
	tmpl := template.Must(template.New("b").Parse(`{"op":{{.Op}},"cents":{{.Amount}},"ref":"{{.Key}}","m":"{{.Merchant}}"}`))
	p := mustNew(t, Config{Ops: 3, Seed: 5, BodyTemplate: tmpl})
	op := p.At(1)
	want := `{"op":2,"cents":` + strconv.FormatInt(op.Amount, 10) + `,"ref":"` + op.Key + `","m":"demo"}`
	if string(op.Body) != want {
		t.Fatalf("body %s, want %s", op.Body, want)
	}
	bad := template.Must(template.New("b").Parse(`{{.Nope}}`))
	if _, err := New(Config{Ops: 1, BodyTemplate: bad}); apperr.Code(err) != apperr.EUSAGE {
		t.Fatalf("a failing template: %v", err)
	}
}

func TestDefaultBodyIsTheReferenceAPI(t *testing.T) {
	p := mustNew(t, Config{Ops: 1, Seed: 1})
	op := p.At(0)
	re := regexp.MustCompile(`^\{"amount":\d+,"currency":"(EUR|USD|GBP)","customer":"cus_\d+","sku":"sku-\d+","quantity":[1-3]\}$`)
	if !re.Match(op.Body) {
		t.Fatalf("body %s", op.Body)
	}
	if k, ok := p.APIKey("demo"); !ok || k != "sk_test_demo" {
		t.Fatalf("default merchant key %q", k)
	}
}

func TestInvalidConfigIsAUsageError(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		msg  string
	}{
		{"negative ops", Config{Ops: -1}, "ops must be at least 1"},
		{"more ops than fit", Config{Ops: 99_999_999_999}, "ops must be at most 1000000"},
		{"one op too many", Config{Ops: MaxOps + 1}, "ops must be at most"},
		{"duplicate rate above 1", Config{DuplicateRate: 1.5}, "duplicate-rate must be between 0 and 1"},
		{"negative race rate", Config{RaceRate: -0.1}, "race-rate must be between 0 and 1"},
		{"NaN reuse rate", Config{ReuseRate: math.NaN()}, "reuse-rate must be between 0 and 1"},
		{"races plus duplicates above 1", Config{DuplicateRate: 0.7, RaceRate: 0.5}, "at most 1"},
		{"nameless merchant", Config{Merchants: []Merchant{{APIKey: "k"}}}, "merchant needs a name"},
		{"catalog past 32 bits", Config{Catalog: math.MaxUint32 + 1}, "catalog must be at most 4294967295"},
		{"merchants past 16 bits", Config{Merchants: make([]Merchant, math.MaxUint16+2)}, "at most 65536 merchants"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if apperr.Code(err) != apperr.EUSAGE || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v (%s), want EUSAGE %q", err, apperr.Code(err), tc.msg)
			}
		})
	}
}

// endsAfter is a context that ends after its Err has been asked n times:
// a cancel that lands midway through a build, deterministically.
type endsAfter struct {
	context.Context
	n int
}

func (c *endsAfter) Err() error {
	if c.n--; c.n < 0 {
		return context.Canceled
	}
	return nil
}

func TestBuildStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Build(ctx, Config{Ops: MaxOps}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Build with an ended context: %v, want context.Canceled", err)
	}
	// Cancelled after three looks, the largest plan stops there: not at
	// its end, and not before its context ended.
	mid := &endsAfter{Context: t.Context(), n: 3}
	if _, err := Build(mid, Config{Ops: MaxOps, Seed: 1}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Build cancelled midway: %v, want context.Canceled", err)
	}
	if mid.n != -1 {
		t.Fatalf("Build went on %d looks past its context's end", -1-mid.n)
	}
	// Saving the largest plan stops at an interrupt too, at the next look.
	p := mustNew(t, Config{Ops: MaxOps, Seed: 1})
	path := filepath.Join(t.TempDir(), "plan.jsonl")
	if _, err := p.Save(ctx, path); !errors.Is(err, context.Canceled) {
		t.Fatalf("Save with an ended context: %v, want context.Canceled", err)
	}
	mid = &endsAfter{Context: t.Context(), n: 3}
	if _, err := p.Save(mid, path); !errors.Is(err, context.Canceled) || mid.n != -1 {
		t.Fatalf("Save cancelled midway: %v, %d looks past the end", err, -1-mid.n)
	}
	// Not cancelled, the same plan is built whole.
	if p, err := Build(&endsAfter{Context: t.Context(), n: MaxOps}, Config{Ops: 5000, Seed: 1}); err != nil || p.Charges() != 5000 {
		t.Fatalf("Build: %v", err)
	}
}

// TestLargestPlanIsCompact: the largest plan holds about 40 bytes an op
// (not its records and bodies, which At renders), and its accessors agree
// with what At renders.
func TestLargestPlanIsCompact(t *testing.T) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	cfg := DefaultConfig()
	cfg.Ops, cfg.Seed = MaxOps, 3
	p := mustNew(t, cfg)
	runtime.GC()
	runtime.ReadMemStats(&after)
	perOp := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(p.Len())
	t.Logf("%d ops: %.1f heap bytes an op", p.Len(), perOp)
	if perOp > 48 {
		t.Errorf("the plan holds %.1f heap bytes an op, want at most 48", perOp)
	}
	for _, i := range []int{0, 1, p.Len() / 2, p.Len() - 1} {
		op := p.At(i)
		if p.ID(i) != op.Op.Op || p.Kind(i) != op.Kind || p.Senders(i) != op.Senders || p.Race(i) != op.Race || p.ReuseOf(i) != op.ReuseOf ||
			p.Key(i) != op.Key || p.Merchant(i) != op.Merchant || !sendableAgrees(p, i, op) {
			t.Errorf("op at %d: accessors disagree with %+v", i, op.Op)
		}
		if got, ok := p.Op(op.Op.Op); !ok || got.Op != op.Op || string(got.Body) != string(op.Body) {
			t.Errorf("Op(%d) = %+v, %v; At(%d) = %+v", op.Op.Op, got.Op, ok, i, op.Op)
		}
	}
	runtime.KeepAlive(p)
}

// sendableAgrees reports whether p.Sendable(i) is op (as At renders it)
// but for the digest, which Sendable leaves empty.
func sendableAgrees(p *Plan, i int, op Op) bool {
	s := p.Sendable(i)
	if s.BodySHA256 != "" {
		return false
	}
	s.BodySHA256 = op.BodySHA256
	return s.Op == op.Op && string(s.Body) == string(op.Body) && s.Currency == op.Currency &&
		s.Customer == op.Customer && s.SKU == op.SKU && s.Quantity == op.Quantity
}
