package load

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paytest/paytest/attack/client"
	"github.com/paytest/paytest/attack/plan"
	"github.com/paytest/paytest/internal/rundir"
)

// stuckServer answers every request for a key with status after hold: 409
// for keys left in progress by a crash, which never expire.
type stuckServer struct {
	hold   atomic.Int64 // time.Duration
	status atomic.Int32

	mu       sync.Mutex
	requests map[string]int
}

func newStuckServer(t *testing.T) (*stuckServer, string) {
	t.Helper()
	s := &stuckServer{requests: map[string]int{}}
	s.status.Store(409)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv.URL
}

func (s *stuckServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	s.mu.Lock()
	s.requests[r.Header.Get("Idempotency-Key")]++
	s.mu.Unlock()
	select {
	case <-time.After(time.Duration(s.hold.Load())):
	case <-r.Context().Done():
		return
	}
	code := int(s.status.Load())
	w.WriteHeader(code)
	if code/100 == 2 {
		_, _ = io.WriteString(w, `{"id":"ch_1"}`)
	}
}

func (s *stuckServer) requestsFor(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[key]
}

// TestReconcileTakesALastLook: keys answer 409 forever, the retry budget
// refuses every retry, and after the chaos the endpoint answers more
// slowly than the reconcile deadline allows, so no reconcile round gets
// an answer. Every op the rounds leave unconfirmed then gets exactly one
// more attempt, recorded, outside the budget: its answer is the evidence
// (a 409: the key is stuck; a 2xx: the op is confirmed). A reuse op whose
// original never succeeded is not sent.
func TestReconcileTakesALastLook(t *testing.T) {
	for _, tc := range []struct {
		name      string
		status    int
		answer    string
		confirmed bool
	}{
		{name: "stuck-forever", status: 409, answer: "409 " + rundir.OutcomeConflict},
		{name: "released-after-the-deadline", status: 200, answer: "200 " + rundir.OutcomeNew, confirmed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, url := newStuckServer(t)
			p := newPlan(t, plan.Config{Ops: 24, DuplicateRate: 0.2, ReuseRate: 0.2, Seed: 7})
			path := filepath.Join(t.TempDir(), rundir.HistoryFile)
			hw, err := rundir.Create[rundir.Attempt](path)
			if err != nil {
				t.Fatal(err)
			}
			budget := client.NewBudget(client.BudgetOptions{Capacity: 1, RetryCost: 5})
			cfg := Config{URL: url, Concurrency: 16, History: hw,
				Client: newClient(t, client.Options{MaxAttempts: 3, Budget: budget, Timeout: 2 * time.Second})}

			sum, err := Run(context.Background(), p, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if sum.Confirmed != 0 || len(sum.Unconfirmed) != p.Len() {
				t.Fatalf("chaos: %d confirmed, %d unconfirmed of %d; want none confirmed", sum.Confirmed, len(sum.Unconfirmed), p.Len())
			}

			// The reconcile rounds' attempts are all cut by the deadline.
			srv.hold.Store(int64(600 * time.Millisecond))
			srv.status.Store(int32(tc.status))
			deadline := time.Now().Add(250 * time.Millisecond)
			rsum, rerr := Reconcile(context.Background(), p, sum.Unconfirmed, cfg, deadline)
			if err := hw.Close(); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(deadline); took > DefaultLastLook {
				t.Errorf("the last look ran %v past the deadline, bound %v", took, DefaultLastLook)
			}

			want := 0 // the ops a last look is for: the charges
			var reuses []int
			for _, op := range p.All() {
				if op.Kind == rundir.KindReuse {
					reuses = append(reuses, op.Op.Op)
				} else {
					want++
				}
			}
			if len(reuses) == 0 || want == 0 {
				t.Fatalf("plan has %d charges and %d reuse ops; want both", want, len(reuses))
			}
			if rsum.LastLook.Ops != want || rsum.LastLook.Answers[tc.answer] != want || len(rsum.LastLook.Answers) != 1 {
				t.Fatalf("last look %s; want %d × %s", rsum.LastLook, want, tc.answer)
			}
			wantUnconfirmed := p.Len()
			if tc.confirmed {
				wantUnconfirmed = len(reuses)
			}
			if rsum.Confirmed != p.Len()-wantUnconfirmed || len(rsum.Unconfirmed) != wantUnconfirmed {
				t.Fatalf("after the last look: %d confirmed, %d unconfirmed; want %d unconfirmed", rsum.Confirmed, len(rsum.Unconfirmed), wantUnconfirmed)
			}
			if !errors.Is(rerr, context.DeadlineExceeded) {
				t.Fatalf("reconcile error %v; want the deadline's, with ops still unconfirmed", rerr)
			}

			// The history: per op, exactly one attempt after the deadline,
			// answered, from a sender never used before, with no budget
			// refusal after it.
			after := map[int][]rundir.Attempt{}
			senders := map[int]map[int]bool{}
			sent := map[string]int{}
			for _, a := range readHistory(t, path) {
				if a.Outcome != rundir.OutcomeBudget {
					sent[a.Key]++
				}
				if a.Start.Before(deadline) {
					if senders[a.Op] == nil {
						senders[a.Op] = map[int]bool{}
					}
					senders[a.Op][a.Sender] = true
					if a.DelayReason == rundir.ReasonReconcile && a.Status != 0 {
						t.Fatalf("reconcile round attempt %+v got an answer before the deadline; the test wants none", a)
					}
					continue
				}
				after[a.Op] = append(after[a.Op], a)
			}
			var probes []rundir.Attempt
			for _, as := range after {
				probes = append(probes, as...)
			}
			if n := maxOverlap(probes); n > lastLookConcurrency {
				t.Errorf("%d last-look attempts in flight at once; want at most %d", n, lastLookConcurrency)
			}
			for key, n := range sent {
				if got := srv.requestsFor(key); got != n {
					t.Errorf("key %s: the endpoint got %d requests, the history records %d sent", key, got, n)
				}
			}
			for _, op := range p.All() {
				id := op.Op.Op
				if op.Kind == rundir.KindReuse {
					if len(after[id]) != 0 {
						t.Errorf("reuse op %d of an op that never succeeded got a last look: %+v", id, after[id])
					}
					continue
				}
				if len(after[id]) != 1 {
					t.Errorf("op %d: %d attempts after the deadline %+v; want exactly one last look", id, len(after[id]), after[id])
					continue
				}
				a := after[id][0]
				if a.Status != tc.status || a.Attempt != 1 || a.DelayReason != rundir.ReasonReconcile || a.Key != op.Key || senders[id][a.Sender] {
					t.Errorf("op %d's last look %+v; want a fresh sender's first attempt with its key, answered %d", id, a, tc.status)
				}
			}
		})
	}
}

// maxOverlap is the largest number of attempts in flight at once.
func maxOverlap(as []rundir.Attempt) int {
	most := 0
	for _, a := range as {
		n := 0
		for _, b := range as {
			if !b.Start.After(a.Start) && b.End.After(a.Start) {
				n++
			}
		}
		most = max(most, n)
	}
	return most
}
