package load

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// chargeServer is a tiny charge endpoint: idempotent (per merchant and key,
// 409 while in flight, 422 or reuseCode on a changed body, the stored answer
// replayed)
// or, with idempotent false, one that charges every request it gets.
type chargeServer struct {
	idempotent bool
	hold       time.Duration // how long a new charge takes
	reuseCode  int           // the status refusing a changed body (422)
	merchants  map[string]string

	mu         sync.Mutex
	entries    map[string]*entry
	active     map[string]int
	overlapped map[string]bool // keys that had two requests in flight at once
	requests   map[string]int
	charges    map[string]int
	statuses   map[int]int
	eat        func(key string) bool // when true, charge but drop the answer
}

type entry struct {
	sum  [32]byte
	done bool
	resp string
}

func newChargeServer(t *testing.T, idempotent bool) (*chargeServer, string) {
	s := &chargeServer{
		idempotent: idempotent, hold: 5 * time.Millisecond, reuseCode: 422,
		merchants: map[string]string{"sk_test_demo": "demo", "sk_b": "b"},
		entries:   map[string]*entry{}, active: map[string]int{}, overlapped: map[string]bool{},
		requests: map[string]int{}, charges: map[string]int{}, statuses: map[int]int{},
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv.URL
}

func (s *chargeServer) reply(w http.ResponseWriter, code int, header, body string) {
	s.mu.Lock()
	s.statuses[code]++
	s.mu.Unlock()
	if header != "" {
		k, v, _ := strings.Cut(header, ": ")
		w.Header().Set(k, v)
	}
	w.WriteHeader(code)
	io.WriteString(w, body)
}

func (s *chargeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	merchant, ok := s.merchants[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	if !ok {
		s.reply(w, 401, "", "")
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		s.reply(w, 400, "", "")
		return
	}
	body, _ := io.ReadAll(r.Body)
	sum := sha256.Sum256(body)
	mk := merchant + "/" + key
	s.mu.Lock()
	s.requests[mk]++
	s.active[mk]++
	if s.active[mk] > 1 {
		s.overlapped[mk] = true
	}
	eat := s.eat != nil && s.eat(key)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.active[mk]--
		s.mu.Unlock()
	}()
	// The answer the first request of a race waits for lets the others in.
	time.Sleep(s.hold)
	s.mu.Lock()
	e := s.entries[mk]
	switch {
	case !s.idempotent:
	case e != nil && e.sum != sum:
		s.mu.Unlock()
		s.reply(w, s.reuseCode, "", `{"title":"key reused with another body"}`)
		return
	case e != nil && !e.done:
		s.mu.Unlock()
		s.reply(w, 409, "Retry-After: 0.01", "")
		return
	case e != nil:
		s.mu.Unlock()
		if eat {
			drop(w)
			return
		}
		s.reply(w, 200, "Idempotent-Replayed: true", e.resp)
		return
	}
	e = &entry{sum: sum}
	s.entries[mk] = e
	s.mu.Unlock()
	time.Sleep(s.hold)
	s.mu.Lock()
	s.charges[mk]++
	e.done = true
	e.resp = fmt.Sprintf(`{"id":"ch_%d","key":%q}`, len(s.entries), key)
	s.mu.Unlock()
	if eat {
		drop(w)
		return
	}
	s.reply(w, 200, "", e.resp)
}

func (s *chargeServer) snapshot() (charges, requests int, statuses map[int]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.charges {
		charges += n
	}
	for _, n := range s.requests {
		requests += n
	}
	statuses = map[int]int{}
	for k, v := range s.statuses {
		statuses[k] = v
	}
	return charges, requests, statuses
}

// drop closes the connection without an answer.
func drop(w http.ResponseWriter) {
	hj, _ := w.(http.Hijacker)
	conn, _, _ := hj.Hijack()
	conn.Close()
}
