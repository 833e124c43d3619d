// Package load executes a plan through the retrying client: a pool of
// workers sends every op, duplicates go out later from another worker as
// independent senders, a race's senders are released together by a barrier
// so they truly overlap, and a reuse op is sent only once the op whose key
// it reuses has completed. Every attempt streams to the history as it
// happens, so a run of any size holds only per-op flags in memory.
// Reconcile re-drives the ops whose fate is still unknown with their same
// key and body, and ends with a last look: one more attempt for each op
// still unconfirmed, so the history holds the endpoint's latest answer.
//
// With a Pacer, Run is an open model instead (open.go): ops arrive on a
// schedule whatever the target's pace, each attempt records when it was
// due, and an arrival that finds the in-flight cap full is dropped and
// counted, so latency measured from the due time includes every queue the
// target built (no coordinated omission).
package load

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paytest/paytest/attack/client"
	"github.com/paytest/paytest/attack/plan"
	"github.com/paytest/paytest/internal/rundir"
)

// Config says where and how to send a plan.
type Config struct {
	// URL is the charge endpoint.
	URL string
	// Header is sent with every request. Unless it sets Authorization,
	// each op carries "Authorization: Bearer <its merchant's API key>".
	Header http.Header
	// KeyHeader carries the idempotency key (default Idempotency-Key).
	KeyHeader string
	// Concurrency is the number of workers (default 32). A race op's
	// senders run beside the worker that releases them.
	Concurrency int
	// Client sends the requests (required).
	Client *client.Client
	// History, when set, gets every attempt.
	History *rundir.Writer[rundir.Attempt]
	// OnAttempt, when set, is called after every attempt (progress).
	OnAttempt func(rundir.Attempt)
	// OnOpDone, when set, is called once per op when all its senders are
	// done, with the most telling of their results (a 2xx first).
	OnOpDone func(op int, r client.Result)
	// DuplicateDelay bounds the seeded delay after which a duplicate
	// sender sends an op again (default 50ms).
	DuplicateDelay time.Duration
	// LastLook bounds the whole last look Reconcile takes at the ops its
	// rounds left unconfirmed (default DefaultLastLook; negative: none).
	LastLook time.Duration
	// Pacer, when set, makes Run an open model: every op arrives on the
	// Pacer's schedule, from its own goroutine, whether or not earlier ones
	// were answered; Concurrency is then unused. Nil: the closed pool of
	// Concurrency workers.
	Pacer Pacer
	// MaxInflight caps the open model's operations in flight (default
	// DefaultMaxInflight); an arrival that finds it full is dropped and
	// counted (Summary.Dropped), never delayed.
	MaxInflight int
	// OnLastArrival, when set, is called in the open model once the pacer
	// has made its last arrival, with the ids of the charges (not reuses)
	// it dropped at the in-flight cap, if any, while the ops still in
	// flight finish (their retries, Retry-After waits): the caller may send
	// the dropped ones then (Reconcile), no arrival being left to delay.
	OnLastArrival func(dropped []int)
}

// lastLookConcurrency bounds the last look's attempts in flight (and
// Config.Concurrency does too): an endpoint that serves a few requests at
// a time queues the rest, and a probe that waits behind a whole pool's
// worth of others times out and tells nothing.
const lastLookConcurrency = 8

// DefaultLastLook is Config.LastLook's default: long enough for one
// attempt at the client's default per-attempt timeout, short enough not to
// stretch a run whose reconcile deadline already passed.
const DefaultLastLook = 5 * time.Second

// LastLook is what Reconcile's last look sent and heard.
type LastLook struct {
	// Ops is the number of ops given a last look (one attempt each).
	Ops int
	// Answers counts them by what came back: "409 conflict", "200 replay",
	// "timeout", "network"...
	Answers map[string]int
}

// String says how many ops got a last look and what they answered, most
// frequent answer first: "41 ops: 40 × 409 conflict, 1 × timeout".
func (l LastLook) String() string {
	labels := slices.Collect(maps.Keys(l.Answers))
	slices.SortFunc(labels, func(a, b string) int {
		if c := cmp.Compare(l.Answers[b], l.Answers[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(labels))
	for i, k := range labels {
		parts[i] = fmt.Sprintf("%d × %s", l.Answers[k], k)
	}
	if len(parts) == 0 {
		return fmt.Sprintf("%d ops", l.Ops)
	}
	return fmt.Sprintf("%d ops: %s", l.Ops, strings.Join(parts, ", "))
}

// Summary is what a Run or Reconcile achieved. Every op is counted in
// exactly one of Succeeded (a 2xx), Rejected (a definite 4xx, including
// the refusal a reuse op expects) and Indeterminate (no definite answer, or
// never sent). Confirmed counts the charges that got a 2xx and the reuse
// ops that got their expected refusal (the client's mismatch outcome: 422
// unless client.Options.ReuseStatuses says otherwise).
type Summary struct {
	Ops           int
	Confirmed     int
	Succeeded     int
	Rejected      int
	Indeterminate int
	// Attempts is the number of attempts recorded (lines of history).
	Attempts int
	// Unconfirmed lists, in order, the ids of the ops whose fate is
	// unknown (the Indeterminate ones): the ones to reconcile.
	Unconfirmed []int
	Duration    time.Duration
	// LastLook is Reconcile's last look (zero for Run).
	LastLook LastLook
	// The open model's figures (Run with a Pacer): the arrivals dropped at
	// the in-flight cap, the most an arrival went out after it was due
	// (the pacer's own lateness: latency counts from the due time anyway),
	// and the pacer.
	Dropped int
	MaxLag  time.Duration
	Pacer   Pacer
}

// Op state flags.
const (
	fSucceeded uint32 = 1 << iota // a sender got a 2xx
	fMismatch                     // a sender got a mismatch (a reuse op's expected refusal)
	fRejected                     // a sender got another definite 4xx
	fDone                         // every sender finished
)

type opState struct {
	flags     atomic.Uint32
	remaining atomic.Int32
}

// runner is one Run or Reconcile in progress.
type runner struct {
	p       *plan.Plan
	cfg     Config
	headers map[string]http.Header
	state   []opState
	// rounds counts each op's reconcile rounds: its next fresh sender is
	// the plan's senders plus that.
	rounds []int32

	attempts atomic.Int64
	errOnce  sync.Once
	err      error
	cancel   context.CancelFunc

	mu   sync.Mutex
	best map[int]client.Result // multi-sender ops' best result so far, for OnOpDone

	onDone func(idx int) // when set, called as each op is done (the open model's bookkeeping)
}

func newRunner(p *plan.Plan, cfg Config) (*runner, error) {
	if cfg.Client == nil {
		return nil, errors.New("load: no client")
	}
	if cfg.URL == "" {
		return nil, errors.New("load: no URL")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 32
	}
	if cfg.DuplicateDelay <= 0 {
		cfg.DuplicateDelay = 50 * time.Millisecond
	}
	if cfg.LastLook == 0 {
		cfg.LastLook = DefaultLastLook
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = DefaultMaxInflight
	}
	r := &runner{p: p, cfg: cfg, state: make([]opState, p.Len()), rounds: make([]int32, p.Len()), headers: map[string]http.Header{}}
	for _, pm := range p.Config().Merchants {
		m := pm.Name
		if _, ok := r.headers[m]; ok {
			continue
		}
		h := cfg.Header.Clone()
		if h == nil {
			h = http.Header{}
		}
		if k, ok := p.APIKey(m); ok && k != "" && h.Get("Authorization") == "" {
			h.Set("Authorization", "Bearer "+k)
		}
		r.headers[m] = h
	}
	if cfg.OnOpDone != nil {
		r.best = map[int]client.Result{}
	}
	return r, nil
}

func (r *runner) fail(err error) {
	r.errOnce.Do(func() {
		r.err = err
		r.cancel()
	})
}

// record is the client's record callback.
func (r *runner) record(a rundir.Attempt) {
	r.attempts.Add(1)
	if r.cfg.History != nil {
		if err := r.cfg.History.Write(a); err != nil {
			r.fail(fmt.Errorf("load: write history: %w", err))
		}
	}
	if r.cfg.OnAttempt != nil {
		r.cfg.OnAttempt(a)
	}
}

// request is op idx's request as the given sender.
func (r *runner) request(idx, sender int) client.Request {
	op := r.p.Sendable(idx)
	return client.Request{
		Op: op.Op.Op, Kind: op.Kind, Sender: sender, Merchant: op.Merchant,
		URL: r.cfg.URL, Header: r.headers[op.Merchant], KeyHeader: r.cfg.KeyHeader,
		Key: op.Key, Body: op.Body,
	}
}

// send sends op idx as the given sender.
func (r *runner) send(ctx context.Context, idx, sender int, delay time.Duration, reason string) client.Result {
	req := r.request(idx, sender)
	req.FirstDelay, req.FirstReason = delay, reason
	return r.cfg.Client.Do(ctx, req, r.record)
}

func flagsOf(res client.Result) uint32 {
	switch {
	case res.Succeeded:
		return fSucceeded
	case res.Definite && res.Outcome == rundir.OutcomeMismatch:
		return fMismatch
	case res.Definite:
		return fRejected
	}
	return 0
}

func better(a, b client.Result) bool {
	rank := func(r client.Result) int {
		switch {
		case r.Succeeded:
			return 2
		case r.Definite:
			return 1
		}
		return 0
	}
	return rank(a) > rank(b)
}

// finish records one sender's result; the last sender of an op completes
// it and reports whether it did.
func (r *runner) finish(idx int, res client.Result) bool {
	st := &r.state[idx]
	st.flags.Or(flagsOf(res))
	last := st.remaining.Add(-1) == 0
	if r.cfg.OnOpDone != nil {
		r.mu.Lock()
		if b, ok := r.best[idx]; ok && !better(res, b) {
			res = b
		}
		if last {
			delete(r.best, idx)
		} else {
			r.best[idx] = res
		}
		r.mu.Unlock()
	}
	if !last {
		return false
	}
	st.flags.Or(fDone)
	if r.cfg.OnOpDone != nil {
		r.cfg.OnOpDone(r.p.ID(idx), res)
	}
	if r.onDone != nil {
		r.onDone(idx)
	}
	return true
}

// confirmed reports whether op idx reached the answer it expects.
func (r *runner) confirmed(idx int) bool {
	f := r.state[idx].flags.Load()
	if r.p.Kind(idx) == rundir.KindReuse {
		return f&fMismatch != 0
	}
	return f&fSucceeded != 0
}

// summarize counts the ops idxs.
func (r *runner) summarize(idxs func(yield func(int) bool), start time.Time) *Summary {
	s := &Summary{Attempts: int(r.attempts.Load()), Duration: time.Since(start)}
	for i := range idxs {
		s.Ops++
		f := r.state[i].flags.Load()
		switch {
		case f&fSucceeded != 0:
			s.Succeeded++
		case f&(fMismatch|fRejected) != 0:
			s.Rejected++
		default:
			s.Indeterminate++
			s.Unconfirmed = append(s.Unconfirmed, r.p.ID(i))
		}
		if r.confirmed(i) {
			s.Confirmed++
		}
	}
	return s
}

// job is one sender of one op, or all the senders of a race.
type job struct {
	idx    int
	sender int
	race   bool
}

type delayed struct {
	due time.Time
	job job
}

type delayHeap []delayed

func (h delayHeap) Len() int           { return len(h) }
func (h delayHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h delayHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)        { *h = append(*h, x.(delayed)) }
func (h *delayHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// dupDelay is the seeded delay before duplicate sender s of op id.
func dupDelay(seed int64, id, s int, max time.Duration) time.Duration {
	x := uint64(seed) ^ uint64(id)*0x9e3779b97f4a7c15 ^ uint64(s)*0xbf58476d1ce4e5b9
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return time.Duration(x % uint64(max))
}

// indexOf is the position in p of op id, which p holds: a shard's
// plan (plan.Plan.Shard) keeps the whole plan's ids, and every reuse op
// with the op it reuses.
func indexOf(p *plan.Plan, id int) int {
	i, ok := p.Index(id)
	if !ok {
		panic(fmt.Sprintf("load: op %d is not in the plan", id))
	}
	return i
}

// Run sends every op of p and returns when all are done or ctx ends. A
// charge is confirmed when any of its senders got a 2xx; a reuse op, sent
// only after the op it reuses succeeded, is confirmed by its expected
// refusal (the client's mismatch outcome, 422 by default; a reuse op
// whose original did not succeed is not sent and stays unconfirmed). The
// error is ctx's when it ended the run early, or a history write failure.
func Run(ctx context.Context, p *plan.Plan, cfg Config) (*Summary, error) {
	start := time.Now()
	r, err := newRunner(p, cfg)
	if err != nil {
		return nil, err
	}
	ctx, r.cancel = context.WithCancel(ctx)
	defer r.cancel()
	all := func(yield func(int) bool) {
		for i := range p.Len() {
			if !yield(i) {
				return
			}
		}
	}
	if cfg.Pacer != nil {
		o := runOpen(ctx, r)
		s := r.summarize(all, start)
		o.openSummary(s)
		if r.err != nil {
			return s, r.err
		}
		return s, context.Cause(ctx)
	}
	for i := range p.Len() {
		r.state[i].remaining.Store(int32(p.Senders(i)))
	}
	dependents := make([]bool, p.Len())
	nDep := 0
	for i := range p.Len() {
		if p.Kind(i) == rundir.KindReuse && !dependents[indexOf(p, p.ReuseOf(i))] {
			dependents[indexOf(p, p.ReuseOf(i))] = true
			nDep++
		}
	}
	done := make(chan int, nDep)
	jobs := make(chan job)
	var wg sync.WaitGroup
	for range r.cfg.Concurrency {
		wg.Go(func() {
			for j := range jobs {
				var last bool
				if j.race {
					r.race(ctx, j.idx)
					last = true
				} else {
					last = r.finish(j.idx, r.send(ctx, j.idx, j.sender, 0, ""))
				}
				if last && dependents[j.idx] {
					done <- j.idx
				}
			}
		})
	}
	r.dispatch(ctx, jobs, done)
	close(jobs)
	wg.Wait()
	s := r.summarize(all, start)
	if r.err != nil {
		return s, r.err
	}
	return s, context.Cause(ctx)
}

// race releases all of op idx's senders together and waits for them.
func (r *runner) race(ctx context.Context, idx int) {
	n := r.p.Senders(idx)
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for s := range n {
		wg.Go(func() {
			<-gate
			r.finish(idx, r.send(ctx, idx, s, 0, ""))
		})
	}
	close(gate)
	wg.Wait()
}

// dispatch feeds jobs in plan order, duplicates when their delay is up and
// reuse ops when their original is done, until everything is sent or ctx
// ends.
func (r *runner) dispatch(ctx context.Context, jobs chan<- job, done <-chan int) {
	var (
		cursor int
		ready  []job
		later  delayHeap
		parked = map[int][]int{} // original idx -> reuse idxs waiting for it
		nPark  int
		timer  = time.NewTimer(time.Hour)
	)
	defer timer.Stop()
	p := r.p
	// reuse handles a reuse op whose original is done: send it if the
	// original succeeded, otherwise leave it unsent and unconfirmed.
	reuse := func(ri int) {
		if r.state[indexOf(p, p.ReuseOf(ri))].flags.Load()&fSucceeded != 0 {
			ready = append(ready, job{idx: ri})
			return
		}
		r.state[ri].remaining.Store(1)
		r.finish(ri, client.Result{Outcome: "not-sent", Err: errors.New("load: the op it reuses did not succeed")})
	}
	for {
		now := time.Now()
		for later.Len() > 0 && !later[0].due.After(now) {
			ready = append(ready, heap.Pop(&later).(delayed).job)
		}
		var (
			next     job
			out      chan<- job
			fromPlan bool
		)
		switch {
		case len(ready) > 0:
			next, out = ready[0], jobs
		case cursor < p.Len():
			if p.Kind(cursor) == rundir.KindReuse {
				orig := indexOf(p, p.ReuseOf(cursor))
				if r.state[orig].flags.Load()&fDone != 0 {
					reuse(cursor)
				} else {
					parked[orig] = append(parked[orig], cursor)
					nPark++
				}
				cursor++
				continue
			}
			next, out, fromPlan = job{idx: cursor, race: p.Race(cursor)}, jobs, true
		case later.Len() == 0 && nPark == 0:
			return
		}
		var tc <-chan time.Time
		if later.Len() > 0 {
			timer.Reset(later[0].due.Sub(now))
			tc = timer.C
		}
		select {
		case out <- next:
			if !fromPlan {
				ready = ready[1:]
				break
			}
			cursor++
			for s := 1; s < p.Senders(next.idx) && !next.race; s++ {
				heap.Push(&later, delayed{now.Add(dupDelay(p.Seed, p.ID(next.idx), s, r.cfg.DuplicateDelay)), job{idx: next.idx, sender: s}})
			}
		case i := <-done:
			for _, ri := range parked[i] {
				reuse(ri)
				nPark--
			}
			delete(parked, i)
		case <-tc:
		case <-ctx.Done():
			return
		}
	}
}

// Reconcile re-drives the ops with the given ids, each with its same key
// and body (the first attempt of each round recorded with
// rundir.ReasonReconcile), until it is confirmed, definitely answered, or
// the deadline passes. Charges go first; a reuse op is re-driven only once
// the op it reuses is known to have succeeded (in this call, or before it
// when that op is not in ids). The ops still unconfirmed when the rounds
// end then get a last look (see lastLook), which may run past the deadline
// by up to Config.LastLook; Summary.LastLook says what it heard.
func Reconcile(ctx context.Context, p *plan.Plan, ops []int, cfg Config, deadline time.Time) (*Summary, error) {
	start := time.Now()
	r, err := newRunner(p, cfg)
	if err != nil {
		return nil, err
	}
	outer := ctx
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	ctx, r.cancel = context.WithCancel(ctx)
	defer r.cancel()
	var charges, reuses []int
	inSet := make([]bool, p.Len())
	for _, id := range ops {
		i, ok := p.Index(id)
		if !ok {
			return nil, fmt.Errorf("load: reconcile: no op %d in the plan", id)
		}
		inSet[i] = true
		if p.Kind(i) == rundir.KindReuse {
			reuses = append(reuses, i)
		} else {
			charges = append(charges, i)
		}
	}
	r.reconcile(ctx, charges)
	var ready []int
	for _, i := range reuses {
		orig := indexOf(p, p.ReuseOf(i))
		if !inSet[orig] || r.state[orig].flags.Load()&fSucceeded != 0 {
			ready = append(ready, i)
		}
	}
	r.reconcile(ctx, ready)
	var look LastLook
	if r.err == nil {
		look = r.lastLook(outer, slices.Concat(charges, ready))
	}
	idxs := slices.Concat(charges, reuses)
	slices.Sort(idxs)
	s := r.summarize(slices.Values(idxs), start)
	s.LastLook = look
	if r.err != nil {
		return s, r.err
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && len(s.Unconfirmed) > 0 {
		return s, fmt.Errorf("load: reconcile: %d ops still unconfirmed at the deadline: %w", len(s.Unconfirmed), ctx.Err())
	}
	return s, nil
}

// maxReconcileWorkers bounds the open model's reconciliation workers when
// MaxInflight is left at its (very large) default.
const maxReconcileWorkers = 256

// reconcileWorkers is how many ops the reconciliation re-drives at once:
// Concurrency, or in the open model as many as it let be in flight
// (MaxInflight, at most maxReconcileWorkers), so that the ops the cap
// dropped are caught up at the pace the load already held.
func (r *runner) reconcileWorkers() int {
	if r.cfg.Pacer == nil {
		return r.cfg.Concurrency
	}
	return max(r.cfg.Concurrency, min(r.cfg.MaxInflight, maxReconcileWorkers))
}

// reconcile re-drives idxs with reconcileWorkers workers.
func (r *runner) reconcile(ctx context.Context, idxs []int) {
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(r.reconcileWorkers(), max(1, len(idxs))) {
		wg.Go(func() {
			for idx := range work {
				r.redrive(ctx, idx)
			}
		})
	}
	for _, i := range idxs {
		select {
		case work <- i:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
}

// redrive sends op idx in rounds, each a fresh sender numbered after the
// plan's senders, until it has a definite answer or ctx ends.
func (r *runner) redrive(ctx context.Context, idx int) {
	id, senders := r.p.ID(idx), r.p.Senders(idx)
	r.state[idx].remaining.Store(1)
	var res client.Result
	var flags uint32
	for round := 0; ctx.Err() == nil; round++ {
		var delay time.Duration
		if round > 0 {
			// Full jitter between rounds, seeded per op and round.
			w := r.cfg.Client.Backoff(min(round, 10))
			delay = dupDelay(r.p.Seed, id, -round, w+1)
		}
		res = r.send(ctx, idx, senders+round, delay, rundir.ReasonReconcile)
		r.rounds[idx] = int32(round + 1)
		flags |= flagsOf(res)
		if res.Definite {
			break
		}
	}
	r.state[idx].flags.Or(flags)
	r.finish(idx, res)
}

// lastLook sends each of idxs still without a definite answer one more
// attempt with its same key and body, as a fresh sender, outside the retry
// budget and with no retry of its own, recorded with
// rundir.ReasonReconcile. The deadline may have cut a round's attempt, or
// left an op with budget refusals after its last answer; one answer from
// the endpoint is evidence either way: a 2xx confirms the op, a 409 shows
// its key is still in flight. It runs on ctx, not on the reconcile
// deadline, with at most lastLookConcurrency attempts in flight, and stops after
// Config.LastLook: an op not reached by then is not looked at.
func (r *runner) lastLook(ctx context.Context, idxs []int) LastLook {
	var todo []int
	for _, i := range idxs {
		if r.state[i].flags.Load()&(fSucceeded|fMismatch|fRejected) == 0 {
			todo = append(todo, i)
		}
	}
	look := LastLook{Answers: map[string]int{}}
	if len(todo) == 0 || r.cfg.LastLook < 0 || ctx.Err() != nil {
		return look
	}
	o := r.cfg.Client.Options()
	o.MaxAttempts, o.Budget, o.Rand = 1, nil, nil
	probe, err := client.New(o)
	if err != nil {
		r.fail(fmt.Errorf("load: last look: %w", err))
		return look
	}
	defer probe.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, r.cfg.LastLook)
	defer cancel()
	var mu sync.Mutex
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(r.cfg.Concurrency, lastLookConcurrency, len(todo)) {
		wg.Go(func() {
			for idx := range work {
				if ctx.Err() != nil {
					continue // out of time: not looked at, not recorded
				}
				res := r.probe(ctx, probe, idx)
				mu.Lock()
				look.Ops++
				look.Answers[answerLabel(res)]++
				mu.Unlock()
			}
		})
	}
feed:
	for _, i := range todo {
		select {
		case work <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	return look
}

// probe sends op idx once through c as its next fresh sender and keeps
// what the answer says about the op.
func (r *runner) probe(ctx context.Context, c *client.Client, idx int) client.Result {
	req := r.request(idx, r.p.Senders(idx)+int(r.rounds[idx]))
	req.FirstReason = rundir.ReasonReconcile
	res := c.Do(ctx, req, r.record)
	r.rounds[idx]++
	if r.state[idx].flags.Load()&fDone != 0 {
		r.state[idx].flags.Or(flagsOf(res))
		return res
	}
	// Never re-driven (the deadline came first): the probe completes it.
	r.state[idx].remaining.Store(1)
	r.finish(idx, res)
	return res
}

// answerLabel names an answer for LastLook.Answers: its status and
// outcome, or the outcome alone when no status arrived.
func answerLabel(res client.Result) string {
	switch {
	case res.Status > 0:
		return fmt.Sprintf("%d %s", res.Status, res.Outcome)
	case res.Outcome != "":
		return res.Outcome
	case res.Err != nil:
		return "not sent"
	}
	return "no answer"
}
