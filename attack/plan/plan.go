// Package plan builds paytest's seeded attack plan: the logical operations,
// each with its own idempotency key and body, which of them are sent again
// by an independent sender (duplicates), which are released to several
// senders at once (same-key races), and which reuse an earlier key with a
// changed body (must get 422). The same seed always gives the same plan.
package plan

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"text/template"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/rundir"
)

// Merchant is a merchant the plan charges for, with its API key.
type Merchant struct {
	Name   string
	APIKey string
}

// MaxOps is the largest plan paytest builds. A plan is held in memory,
// bodies included, and a run keeps a record of every op besides: the bound
// keeps a run within a few hundred MB. Larger values are refused before
// anything starts.
const MaxOps = 250_000

// Config describes a plan. Rates are taken as given (0 means none); start
// from DefaultConfig for the documented defaults.
type Config struct {
	// Ops is the number of logical charges (0 means 1000, at most MaxOps).
	Ops int
	// DuplicateRate is the share of charges sent again, later, by an
	// independent sender.
	DuplicateRate float64
	// RaceRate is the share of charges whose senders (2 or 3) are released
	// together. A charge is a race or a duplicate, never both, so
	// DuplicateRate+RaceRate is at most 1.
	RaceRate float64
	// ReuseRate is the number of extra reuse ops (an earlier op's key with
	// a changed body), as a share of Ops.
	ReuseRate float64
	// Seed makes the plan reproducible.
	Seed int64
	// Merchants the charges are spread over (default: demo / sk_test_demo).
	Merchants []Merchant
	// Catalog is the number of SKUs, sku-1 .. sku-N (0 means 100).
	Catalog int
	// BodyTemplate, when set, produces each op's body from a BodyData
	// instead of the reference API's JSON.
	BodyTemplate *template.Template
}

// DefaultConfig returns the documented defaults: 1000 ops, 20% duplicates,
// 5% races, 2% reuse, one merchant, 100 SKUs.
func DefaultConfig() Config {
	return Config{Ops: 1000, DuplicateRate: 0.2, RaceRate: 0.05, ReuseRate: 0.02,
		Merchants: []Merchant{DefaultMerchant}, Catalog: 100}
}

// DefaultMerchant is the reference charge service's default API key.
var DefaultMerchant = Merchant{Name: "demo", APIKey: "sk_test_demo"}

// BodyData is what a BodyTemplate is executed with.
type BodyData struct {
	Op       int
	Key      string
	Amount   int64
	Currency string
	Customer string
	SKU      string
	Quantity int
	Merchant string
}

// Op is one operation of the plan: its record in plan.jsonl and the body
// every sender sends for it.
type Op struct {
	rundir.Op
	Body     []byte
	Currency string
	Customer string
	SKU      string
	Quantity int
}

// Plan is a generated plan. Ops are numbered 1..len(Ops) in order; a reuse
// op always comes after the op it reuses.
type Plan struct {
	// Seed is the seed the plan was made from.
	Seed int64
	Ops  []Op
	cfg  Config
}

var currencies = []string{"EUR", "USD", "GBP"}

// New generates the plan for cfg. Invalid values are apperr.EUSAGE errors.
func New(cfg Config) (*Plan, error) { return Build(context.Background(), cfg) }

// cancelEvery is how many ops Build generates between looks at its context:
// a few milliseconds of work.
const cancelEvery = 4096

// Build generates the plan for cfg, as New, and returns ctx's error as soon
// as ctx ends, so that an interrupt is not held up by a large plan.
func Build(ctx context.Context, cfg Config) (*Plan, error) {
	if cfg.Ops == 0 {
		cfg.Ops = 1000
	}
	if cfg.Catalog == 0 {
		cfg.Catalog = 100
	}
	if len(cfg.Merchants) == 0 {
		cfg.Merchants = []Merchant{DefaultMerchant}
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(cfg.Seed)^0x5851f42d4c957f2d))
	nReuse := int(float64(cfg.Ops)*cfg.ReuseRate + 0.5)
	// A reuse op follows its original after a short seeded gap.
	reuseAfter := make(map[int][]int, nReuse) // charge index -> originals reused after it
	for range nReuse {
		orig := rng.IntN(cfg.Ops)
		at := min(cfg.Ops-1, orig+rng.IntN(20))
		reuseAfter[at] = append(reuseAfter[at], orig)
	}
	p := &Plan{Seed: cfg.Seed, cfg: cfg, Ops: make([]Op, 0, cfg.Ops+nReuse)}
	idOf := make([]int, cfg.Ops) // charge index -> op id
	var body bytes.Buffer
	for i := range cfg.Ops {
		if i%cancelEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		m := cfg.Merchants[rng.IntN(len(cfg.Merchants))]
		op := Op{
			Op: rundir.Op{
				Op: len(p.Ops) + 1, Kind: rundir.KindCharge, Merchant: m.Name,
				Key: key(rng), Amount: 100 + rng.Int64N(99_900), Senders: 1,
			},
			Currency: currencies[rng.IntN(len(currencies))],
			Customer: "cus_" + strconv.Itoa(1+rng.IntN(1000)),
			SKU:      "sku-" + strconv.Itoa(1+rng.IntN(cfg.Catalog)),
			Quantity: 1 + rng.IntN(3),
		}
		switch u := rng.Float64(); {
		case u < cfg.RaceRate:
			op.Race = true
			op.Senders = 2 + rng.IntN(2)
		case u < cfg.RaceRate+cfg.DuplicateRate:
			op.Senders = 2
		}
		if err := p.setBody(&op, &body); err != nil {
			return nil, err
		}
		idOf[i] = op.Op.Op
		p.Ops = append(p.Ops, op)
		origs := reuseAfter[i]
		slices.Sort(origs)
		for _, o := range origs {
			orig := p.Ops[idOf[o]-1]
			r := orig
			r.Op = rundir.Op{
				Op: len(p.Ops) + 1, Kind: rundir.KindReuse, Merchant: orig.Merchant, Key: orig.Key,
				Amount: orig.Amount + 1 + rng.Int64N(1000), Senders: 1, ReuseOf: orig.Op.Op,
			}
			if err := p.setBody(&r, &body); err != nil {
				return nil, err
			}
			p.Ops = append(p.Ops, r)
		}
	}
	return p, nil
}

func (c Config) validate() error {
	switch {
	case c.Ops < 1:
		return apperr.Errorf(apperr.EUSAGE, "ops must be at least 1, got %d", c.Ops)
	case c.Ops > MaxOps:
		return apperr.Errorf(apperr.EUSAGE, "ops must be at most %d (a plan is held in memory), got %d", MaxOps, c.Ops)
	case c.Catalog < 1:
		return apperr.Errorf(apperr.EUSAGE, "catalog must be at least 1 SKU, got %d", c.Catalog)
	}
	for _, r := range []struct {
		name string
		v    float64
	}{{"duplicate-rate", c.DuplicateRate}, {"race-rate", c.RaceRate}, {"reuse-rate", c.ReuseRate}} {
		if !(r.v >= 0 && r.v <= 1) {
			return apperr.Errorf(apperr.EUSAGE, "%s must be between 0 and 1, got %v", r.name, r.v)
		}
	}
	if c.DuplicateRate+c.RaceRate > 1 {
		return apperr.Errorf(apperr.EUSAGE, "duplicate-rate + race-rate must be at most 1 (an op is a race or a duplicate, not both), got %v + %v",
			c.DuplicateRate, c.RaceRate)
	}
	for _, m := range c.Merchants {
		if m.Name == "" {
			return apperr.Errorf(apperr.EUSAGE, "a merchant needs a name")
		}
	}
	return nil
}

// key returns a UUID-shaped (version 4 layout) key drawn from rng.
func key(rng *rand.Rand) string {
	var b [16]byte
	hi, lo := rng.Uint64(), rng.Uint64()
	for i := range 8 {
		b[i] = byte(hi >> (56 - 8*i))
		b[8+i] = byte(lo >> (56 - 8*i))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// setBody renders op's body and digest.
func (p *Plan) setBody(op *Op, buf *bytes.Buffer) error {
	buf.Reset()
	if t := p.cfg.BodyTemplate; t != nil {
		err := t.Execute(buf, BodyData{Op: op.Op.Op, Key: op.Key, Amount: op.Amount, Currency: op.Currency,
			Customer: op.Customer, SKU: op.SKU, Quantity: op.Quantity, Merchant: op.Merchant})
		if err != nil {
			return apperr.Wrap(apperr.EUSAGE, err, "body template, op %d", op.Op.Op)
		}
	} else {
		b := buf.AvailableBuffer()
		b = append(b, `{"amount":`...)
		b = strconv.AppendInt(b, op.Amount, 10)
		b = append(b, `,"currency":"`...)
		b = append(b, op.Currency...)
		b = append(b, `","customer":"`...)
		b = append(b, op.Customer...)
		b = append(b, `","sku":"`...)
		b = append(b, op.SKU...)
		b = append(b, `","quantity":`...)
		b = strconv.AppendInt(b, int64(op.Quantity), 10)
		b = append(b, '}')
		buf.Write(b)
	}
	op.Body = bytes.Clone(buf.Bytes())
	sum := sha256.Sum256(op.Body)
	op.BodySHA256 = hex.EncodeToString(sum[:])
	return nil
}

// Config returns the configuration the plan was made from, defaults filled in.
func (p *Plan) Config() Config { return p.cfg }

// Charges returns the number of logical charges (ops of KindCharge).
func (p *Plan) Charges() int {
	n := 0
	for i := range p.Ops {
		if p.Ops[i].Kind == rundir.KindCharge {
			n++
		}
	}
	return n
}

// Op returns the op with the given id.
func (p *Plan) Op(id int) (*Op, bool) {
	i, ok := p.Index(id)
	if !ok {
		return nil, false
	}
	return &p.Ops[i], true
}

// Index returns the position in Ops of the op with the given id: id-1 in
// a whole plan, found by search in a shard's.
func (p *Plan) Index(id int) (int, bool) {
	if id >= 1 && id <= len(p.Ops) && p.Ops[id-1].Op.Op == id {
		return id - 1, true
	}
	return slices.BinarySearchFunc(p.Ops, id, func(o Op, id int) int { return cmp.Compare(o.Op.Op, id) })
}

// Shard returns part k of n of the plan (see rundir.Partition): its ops,
// in order and with the whole plan's ids, as a plan of their own. Every
// reuse op is in the same part as the op it reuses. n of 1 is p itself.
func (p *Plan) Shard(k, n int) *Plan {
	if n <= 1 {
		return p
	}
	part := rundir.NewPartition(n)
	sub := &Plan{Seed: p.Seed, cfg: p.cfg, Ops: make([]Op, 0, len(p.Ops)/n+1)}
	for i := range p.Ops {
		if part.Next(p.Ops[i].Op) == k {
			sub.Ops = append(sub.Ops, p.Ops[i])
		}
	}
	return sub
}

// APIKey returns the API key of the named merchant.
func (p *Plan) APIKey(merchant string) (string, bool) {
	for _, m := range p.cfg.Merchants {
		if m.Name == merchant {
			return m.APIKey, true
		}
	}
	return "", false
}

// Write writes the plan to path as plan.jsonl (one rundir.Op a line).
func (p *Plan) Write(path string) error {
	w, err := rundir.Create[rundir.Op](path)
	if err != nil {
		return fmt.Errorf("plan: %w", err)
	}
	for i := range p.Ops {
		if err := w.Write(p.Ops[i].Op); err != nil {
			w.Close()
			return fmt.Errorf("plan: write %s: %w", path, err)
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("plan: write %s: %w", path, err)
	}
	return nil
}

// Fingerprint is the hex SHA-256 of the plan: every op's record and body,
// in order. Two plans with the same fingerprint send the same requests.
func (p *Plan) Fingerprint() string {
	h := sha256.New()
	enc := json.NewEncoder(h)
	for i := range p.Ops {
		enc.Encode(p.Ops[i].Op)
		h.Write(p.Ops[i].Body)
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}
