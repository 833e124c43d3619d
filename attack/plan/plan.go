// Package plan builds paytest's seeded attack plan: the logical operations,
// each with its own idempotency key and body, which of them are sent again
// by an independent sender (duplicates), which are released to several
// senders at once (same-key races), and which reuse an earlier key with a
// changed body (must get 422). The same seed always gives the same plan.
package plan

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"iter"
	"math"
	"math/rand/v2"
	"os"
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

// MaxOps is the largest plan paytest builds. A plan holds 40 bytes an op
// (its body and record are rendered when asked for) and a run a few bytes
// more: the bound keeps a run of the largest plan well within 256 MB.
// Larger values are refused before anything starts.
const MaxOps = 1_000_000

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

// Op is one operation of the plan, as At renders it: its record in
// plan.jsonl and the body every sender sends for it.
type Op struct {
	rundir.Op
	Body     []byte
	Currency string
	Customer string
	SKU      string
	Quantity int
}

// Plan is a generated plan. Ops are numbered 1..Len() in order; a reuse op
// always comes after the op it reuses. A plan holds each op as the few
// numbers it is drawn from, not as its record and body: At renders an op
// whole; ID, Kind, Senders, Race, ReuseOf, Key and Merchant answer
// without rendering a body, and Sendable renders all but the digest.
type Plan struct {
	// Seed is the seed the plan was made from.
	Seed int64
	ops  []entry
	cfg  Config
}

// entry is one op as a plan holds it, 40 bytes: every field of its record
// and body, as the numbers they are drawn from.
type entry struct {
	key      [16]byte // the UUID's bytes, version and variant bits set
	id       int32
	reuseOf  int32
	amount   uint32
	sku      uint32 // sku-N
	customer uint16 // cus_N
	merchant uint16 // index in Config.Merchants
	currency uint8  // index in currencies
	quantity uint8
	senders  uint8
	flags    uint8 // eReuse, eRace
}

const (
	eReuse uint8 = 1 << iota // a KindReuse op
	eRace                    // its senders are released together
)

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
	p := &Plan{Seed: cfg.Seed, cfg: cfg, ops: make([]entry, 0, cfg.Ops+nReuse)}
	idOf := make([]int32, cfg.Ops) // charge index -> op id
	var body []byte
	for i := range cfg.Ops {
		if i%cancelEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		// The draws, and their order, are the plan: a change here changes
		// every plan's fingerprint.
		e := entry{id: int32(len(p.ops) + 1), merchant: uint16(rng.IntN(len(cfg.Merchants))), senders: 1}
		e.key = key(rng)
		e.amount = uint32(100 + rng.Int64N(99_900))
		e.currency = uint8(rng.IntN(len(currencies)))
		e.customer = uint16(1 + rng.IntN(1000))
		e.sku = uint32(1 + rng.IntN(cfg.Catalog))
		e.quantity = uint8(1 + rng.IntN(3))
		switch u := rng.Float64(); {
		case u < cfg.RaceRate:
			e.flags |= eRace
			e.senders = uint8(2 + rng.IntN(2))
		case u < cfg.RaceRate+cfg.DuplicateRate:
			e.senders = 2
		}
		var err error
		if body, err = p.checkBody(&e, body); err != nil {
			return nil, err
		}
		idOf[i] = e.id
		p.ops = append(p.ops, e)
		origs := reuseAfter[i]
		slices.Sort(origs)
		for _, o := range origs {
			orig := p.ops[idOf[o]-1]
			r := orig
			r.id, r.flags, r.senders, r.reuseOf = int32(len(p.ops)+1), eReuse, 1, orig.id
			r.amount = orig.amount + 1 + uint32(rng.Int64N(1000))
			if body, err = p.checkBody(&r, body); err != nil {
				return nil, err
			}
			p.ops = append(p.ops, r)
		}
	}
	return p, nil
}

// checkBody renders e's body when a BodyTemplate makes it, so that a
// template that fails does so here, as a usage error, and not at its op's
// send. The reference API's body cannot fail.
func (p *Plan) checkBody(e *entry, buf []byte) ([]byte, error) {
	if p.cfg.BodyTemplate == nil {
		return buf, nil
	}
	op := p.fields(e)
	return p.appendBody(buf[:0], &op)
}

func (c Config) validate() error {
	switch {
	case c.Ops < 1:
		return apperr.Errorf(apperr.EUSAGE, "ops must be at least 1, got %d", c.Ops)
	case c.Ops > MaxOps:
		return apperr.Errorf(apperr.EUSAGE, "ops must be at most %d, got %d", MaxOps, c.Ops)
	case c.Catalog < 1:
		return apperr.Errorf(apperr.EUSAGE, "catalog must be at least 1 SKU, got %d", c.Catalog)
	case c.Catalog > math.MaxUint32:
		return apperr.Errorf(apperr.EUSAGE, "catalog must be at most %d SKUs, got %d", uint32(math.MaxUint32), c.Catalog)
	case len(c.Merchants) > math.MaxUint16+1:
		return apperr.Errorf(apperr.EUSAGE, "at most %d merchants, got %d", math.MaxUint16+1, len(c.Merchants))
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

// key draws a UUID-shaped (version 4 layout) key's bytes from rng.
func key(rng *rand.Rand) [16]byte {
	var b [16]byte
	hi, lo := rng.Uint64(), rng.Uint64()
	for i := range 8 {
		b[i] = byte(hi >> (56 - 8*i))
		b[8+i] = byte(lo >> (56 - 8*i))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return b
}

// keyString formats a key's bytes as a UUID.
func keyString(b *[16]byte) string {
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

// fields renders e's record, except its body's digest, and its body's
// fields.
func (p *Plan) fields(e *entry) Op {
	kind := rundir.KindCharge
	if e.flags&eReuse != 0 {
		kind = rundir.KindReuse
	}
	return Op{
		Op: rundir.Op{
			Op: int(e.id), Kind: kind, Merchant: p.cfg.Merchants[e.merchant].Name, Key: keyString(&e.key),
			Amount: int64(e.amount), Senders: int(e.senders), Race: e.flags&eRace != 0, ReuseOf: int(e.reuseOf),
		},
		Currency: currencies[e.currency],
		Customer: "cus_" + strconv.Itoa(int(e.customer)),
		SKU:      "sku-" + strconv.FormatUint(uint64(e.sku), 10),
		Quantity: int(e.quantity),
	}
}

// appendBody appends op's body to b: the BodyTemplate executed with op's
// fields, or the reference API's JSON.
func (p *Plan) appendBody(b []byte, op *Op) ([]byte, error) {
	if t := p.cfg.BodyTemplate; t != nil {
		buf := bytes.NewBuffer(b)
		err := t.Execute(buf, BodyData{Op: op.Op.Op, Key: op.Key, Amount: op.Amount, Currency: op.Currency,
			Customer: op.Customer, SKU: op.SKU, Quantity: op.Quantity, Merchant: op.Merchant})
		if err != nil {
			return b, apperr.Wrap(apperr.EUSAGE, err, "body template, op %d", op.Op.Op)
		}
		return buf.Bytes(), nil
	}
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
	return append(b, '}'), nil
}

// Len returns the number of ops.
func (p *Plan) Len() int { return len(p.ops) }

// At renders the op at position i (0 to Len()-1): its record, digest
// included, and its body, which the caller may keep.
func (p *Plan) At(i int) Op { return p.render(i, nil) }

// render renders op i as At does, its body appended to buf.
func (p *Plan) render(i int, buf []byte) Op {
	op := p.fields(&p.ops[i])
	op.Body = p.mustBody(buf, &op)
	sum := sha256.Sum256(op.Body)
	op.BodySHA256 = hex.EncodeToString(sum[:])
	return op
}

// mustBody appends op's body to buf. Build rendered this very body from
// the same fields, and a template is a pure function of them: it cannot
// fail now.
func (p *Plan) mustBody(buf []byte, op *Op) []byte {
	body, err := p.appendBody(buf, op)
	if err != nil {
		panic(fmt.Sprintf("plan: op %d's body rendered at build, not now: %v", op.Op.Op, err))
	}
	return body
}

// Sendable renders the op at position i as a sender needs it, in one
// pass: its record and its body, which the caller may keep, without the
// digest At adds (a hash per attempt that no sender reads).
func (p *Plan) Sendable(i int) Op {
	op := p.fields(&p.ops[i])
	op.Body = p.mustBody(nil, &op)
	return op
}

// Key returns the idempotency key of the op at position i.
func (p *Plan) Key(i int) string { return keyString(&p.ops[i].key) }

// Merchant returns the name of the merchant of the op at position i.
func (p *Plan) Merchant(i int) string { return p.cfg.Merchants[p.ops[i].merchant].Name }

// All yields every op in order with its position, rendered as At does.
func (p *Plan) All() iter.Seq2[int, Op] {
	return func(yield func(int, Op) bool) {
		for i := range p.ops {
			if !yield(i, p.At(i)) {
				return
			}
		}
	}
}

// ID returns the id of the op at position i.
func (p *Plan) ID(i int) int { return int(p.ops[i].id) }

// Kind returns the kind of the op at position i (rundir.KindCharge or
// rundir.KindReuse).
func (p *Plan) Kind(i int) string {
	if p.ops[i].flags&eReuse != 0 {
		return rundir.KindReuse
	}
	return rundir.KindCharge
}

// Senders returns how many independent senders send the op at position i.
func (p *Plan) Senders(i int) int { return int(p.ops[i].senders) }

// Race reports whether the op at position i is a race: its senders are
// released together.
func (p *Plan) Race(i int) bool { return p.ops[i].flags&eRace != 0 }

// ReuseOf returns, for a reuse op at position i, the id of the op whose
// key it reuses (0 for a charge).
func (p *Plan) ReuseOf(i int) int { return int(p.ops[i].reuseOf) }

// Config returns the configuration the plan was made from, defaults filled in.
func (p *Plan) Config() Config { return p.cfg }

// Charges returns the number of logical charges (ops of KindCharge).
func (p *Plan) Charges() int {
	n := 0
	for i := range p.ops {
		if p.ops[i].flags&eReuse == 0 {
			n++
		}
	}
	return n
}

// Op returns the op with the given id, rendered as At does.
func (p *Plan) Op(id int) (Op, bool) {
	i, ok := p.Index(id)
	if !ok {
		return Op{}, false
	}
	return p.At(i), true
}

// Index returns the position of the op with the given id: id-1 in a whole
// plan, found by search in a shard's.
func (p *Plan) Index(id int) (int, bool) {
	if id >= 1 && id <= len(p.ops) && int(p.ops[id-1].id) == id {
		return id - 1, true
	}
	return slices.BinarySearchFunc(p.ops, id, func(e entry, id int) int { return cmp.Compare(int(e.id), id) })
}

// Shard returns part k of n of the plan (see rundir.Partition): its ops,
// in order and with the whole plan's ids, as a plan of their own. Every
// reuse op is in the same part as the op it reuses. n of 1 is p itself.
func (p *Plan) Shard(k, n int) *Plan {
	if n <= 1 {
		return p
	}
	part := rundir.NewPartition(n)
	sub := &Plan{Seed: p.Seed, cfg: p.cfg, ops: make([]entry, 0, len(p.ops)/n+1)}
	for i := range p.ops {
		if part.Next(rundir.Op{Op: p.ID(i), Kind: p.Kind(i), ReuseOf: p.ReuseOf(i)}) == k {
			sub.ops = append(sub.ops, p.ops[i])
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
	_, err := p.Save(context.Background(), path)
	return err
}

// Save writes the plan to path as Write does and returns its Fingerprint,
// both from one rendering of each op, and returns ctx's error as soon as
// ctx ends, so that an interrupt is not held up by a large plan.
func (p *Plan) Save(ctx context.Context, path string) (fingerprint string, err error) {
	f, err := os.Create(path)
	if err != nil {
		return "", fmt.Errorf("plan: %w", err)
	}
	bw := bufio.NewWriterSize(f, 256<<10)
	h := sha256.New()
	// ctx's error comes back as it is; a write's, wrapped.
	err = p.walk(ctx, func(line, body []byte) error {
		hashOp(h, line, body)
		if _, err := bw.Write(line); err != nil {
			return fmt.Errorf("plan: write %s: %w", path, err)
		}
		return nil
	})
	if err == nil {
		if err = bw.Flush(); err != nil {
			err = fmt.Errorf("plan: write %s: %w", path, err)
		}
	}
	if cerr := f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("plan: write %s: %w", path, cerr)
	}
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Fingerprint is the hex SHA-256 of the plan: every op's record and body,
// in order. Two plans with the same fingerprint send the same requests.
func (p *Plan) Fingerprint() string {
	h := sha256.New()
	p.walk(context.Background(), func(line, body []byte) error {
		hashOp(h, line, body)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))
}

// hashOp adds one op to a fingerprint: its plan.jsonl line (newline
// included), its body, a newline.
func hashOp(h hash.Hash, line, body []byte) {
	h.Write(line)
	h.Write(body)
	h.Write([]byte{'\n'})
}

// walk renders every op in order and gives fn its plan.jsonl line (the
// record as a json.Encoder writes it, newline included) and its body, both
// valid only during the call. It stops at fn's first error, or with ctx's
// as soon as ctx ends.
func (p *Plan) walk(ctx context.Context, fn func(line, body []byte) error) error {
	var line bytes.Buffer
	enc := json.NewEncoder(&line)
	var body []byte
	for i := range p.ops {
		if i%cancelEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		op := p.render(i, body[:0])
		body = op.Body
		line.Reset()
		if err := enc.Encode(op.Op); err != nil {
			return err
		}
		if err := fn(line.Bytes(), body); err != nil {
			return err
		}
	}
	return nil
}
