package client

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/rundir"
)

// cut answers 200 with the status line, the headers and part of the body,
// then ends the connection the way how says (the body never completes).
func cut(how string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if how == "content-length" || how == "reset" {
			w.Header().Set("Content-Length", "100")
		} // otherwise chunked: no length, flushed before the end
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, `{"id":"ch_cut","amo`)
		w.(http.Flusher).Flush()
		if how == "stall" {
			<-r.Context().Done()
			return
		}
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return // the server then closes the connection itself, short of the body
		}
		if tc, ok := conn.(*net.TCPConn); ok && how == "reset" {
			tc.SetLinger(0) // close with a RST
		}
		conn.Close()
	}
}

func TestA2xxWhoseBodyWasCutOffIsIndeterminate(t *testing.T) {
	cases := []struct {
		how     string
		outcome string
	}{
		{"content-length", rundir.OutcomeNetwork},
		{"chunked", rundir.OutcomeNetwork},
		{"reset", rundir.OutcomeNetwork},
		{"stall", rundir.OutcomeTimeout},
	}
	for _, tc := range cases {
		for _, cutOnly := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/every-attempt-cut=%v", tc.how, cutOnly), func(t *testing.T) {
				srv, url := serve(t, func(n int, w http.ResponseWriter, r *http.Request) {
					if n == 1 || cutOnly {
						cut(tc.how)(w, r)
						return
					}
					answer(200, http.Header{"Idempotent-Replayed": {"true"}}, `{"id":"ch_cut","amount":100}`)(n, w, r)
				})
				res, got := doOnce(t, Options{Timeout: 300 * time.Millisecond, MaxAttempts: 2}, url, rundir.KindCharge)
				if srv.count() != 2 || len(got) != 2 {
					t.Fatalf("server saw %d requests, %d recorded: a cut-off 2xx must be retried", srv.count(), len(got))
				}
				first := got[0]
				if first.Status != 200 || first.Outcome != tc.outcome || first.Error == "" || first.Replayed ||
					first.ChargeID != "" || first.BodySHA256 != "" {
					t.Fatalf("cut-off attempt recorded as %+v: want status 200 kept, outcome %q, an error, no id or digest", first, tc.outcome)
				}
				if cutOnly {
					if res.Definite || res.Succeeded || res.Err == nil || res.Status != 200 || res.Outcome != tc.outcome ||
						res.ChargeID != "" || res.BodySHA256 != "" || res.Body != nil {
						t.Fatalf("every answer cut off, yet result %+v", res)
					}
					return
				}
				if !res.Succeeded || !res.Definite || res.Outcome != rundir.OutcomeReplay || res.ChargeID != "ch_cut" ||
					res.BodySHA256 != sha(`{"id":"ch_cut","amount":100}`) {
					t.Fatalf("after a cut-off, the complete replay must decide: %+v", res)
				}
			})
		}
	}
}

// keepAliveDropper is a raw HTTP/1.1 server that answers the first request
// of every connection and, on a connection's second request, reads it whole
// and closes the connection without a word: the server has the request, the
// client has no answer, on a connection the client reused.
type keepAliveDropper struct {
	ln       net.Listener
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
	requests int
	dropped  int
}

func newKeepAliveDropper(t *testing.T) *keepAliveDropper {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &keepAliveDropper{ln: ln}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *keepAliveDropper) url() string { return "http://" + s.ln.Addr().String() + "/charges" }

func (s *keepAliveDropper) accept() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, conn)
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(conn)
	}
}

func (s *keepAliveDropper) serve(conn net.Conn) {
	defer s.wg.Done()
	defer conn.Close()
	br := bufio.NewReader(conn)
	for n := 1; ; n++ {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return
		}
		s.mu.Lock()
		s.requests++
		id := s.requests
		if n == 2 {
			s.dropped++
		}
		s.mu.Unlock()
		if n == 2 {
			return
		}
		body := `{"id":"ch_` + strconv.Itoa(id) + `"}`
		if _, err := io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "+
			strconv.Itoa(len(body))+"\r\n\r\n"+body); err != nil {
			return
		}
	}
}

func (s *keepAliveDropper) counts() (requests, dropped int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests, s.dropped
}

// hostRewriter wraps a transport the way attack's eat-response switch
// does: it clones every request and changes it before sending.
type hostRewriter struct{ rt http.RoundTripper }

func (h hostRewriter) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	r.Host = "charges.example"
	return h.rt.RoundTrip(r)
}

// net/http re-sends a POST carrying an Idempotency-Key when a reused
// keep-alive connection drops before the answer; the client must not let
// it, or the endpoint gets requests the history never saw.
func TestEveryRequestOnTheWireIsOneRecordedAttempt(t *testing.T) {
	const ops = 12
	wrapped := func() *http.Client {
		hc := NewHTTPClient(4)
		hc.Transport = hostRewriter{hc.Transport}
		return hc
	}
	cases := []struct {
		name   string
		hc     func() *http.Client
		method string
		body   string
	}{
		{"default client", func() *http.Client { return nil }, "", `{"amount":100}`},
		{"default client, empty body", func() *http.Client { return nil }, "", ""},
		{"default client, GET", func() *http.Client { return nil }, http.MethodGet, ""},
		{"wrapped transport", wrapped, "", `{"amount":100}`},
		{"wrapped transport, empty body", wrapped, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newKeepAliveDropper(t)
			c := newClient(t, Options{HTTPClient: tc.hc(), Timeout: 2 * time.Second, MaxAttempts: 3})
			recorded, network := 0, 0
			for op := 1; op <= ops; op++ {
				res := c.Do(context.Background(), Request{Op: op, Kind: rundir.KindCharge, Method: tc.method, URL: srv.url(),
					Key: "key-" + strconv.Itoa(op), Body: []byte(tc.body)}, func(a rundir.Attempt) {
					recorded++
					if a.Outcome == rundir.OutcomeNetwork {
						network++
					}
				})
				if !res.Succeeded {
					t.Fatalf("op %d: %+v", op, res)
				}
			}
			requests, dropped := srv.counts()
			t.Logf("%d ops: server got %d requests and dropped %d connections after reading one; %d attempts recorded, %d network errors",
				ops, requests, dropped, recorded, network)
			if dropped == 0 {
				t.Fatal("no keep-alive connection was reused and dropped: the test proves nothing")
			}
			if requests != recorded || network != dropped {
				t.Fatalf("server got %d requests, history records %d attempts (%d network errors for %d drops): the transport re-sent on its own",
					requests, recorded, network, dropped)
			}
		})
	}
}

// The hazard the client guards against is real in this Go version: a
// request built the ordinary way is re-sent by the transport itself.
func TestTheTransportItselfResendsAnIdempotencyKeyedPOST(t *testing.T) {
	srv := newKeepAliveDropper(t)
	hc := NewHTTPClient(4)
	t.Cleanup(hc.CloseIdleConnections)
	calls := 0
	for op := range 6 {
		req, err := http.NewRequest(http.MethodPost, srv.url(), strings.NewReader(`{"amount":100}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Idempotency-Key", "key-"+strconv.Itoa(op))
		resp, err := hc.Do(req)
		calls++
		if err != nil {
			t.Fatalf("call %d: %v (the transport did not retry?)", calls, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	requests, dropped := srv.counts()
	if dropped == 0 || requests != calls+dropped {
		t.Fatalf("%d calls, server got %d requests with %d drops; want one silent re-send per drop", calls, requests, dropped)
	}
}

// TestAFailedAttemptRecordsNoSecretOfItsURL: a failed attempt's error names
// the request's URL; a secret in its query or userinfo never reaches the
// history.
func TestAFailedAttemptRecordsNoSecretOfItsURL(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: every attempt is refused
	c, err := New(Options{MaxAttempts: 1, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{
		"http://" + addr + "/charge?token=s3cret",
		"http://user:s3cret@" + addr + "/charge",
	} {
		var got []rundir.Attempt
		res := c.Do(context.Background(), Request{Op: 1, URL: u, Key: "k", Body: []byte(`{}`)}, func(a rundir.Attempt) { got = append(got, a) })
		if res.Definite || len(got) != 1 || got[0].Outcome != rundir.OutcomeNetwork || got[0].Error == "" {
			t.Fatalf("%s: result %+v, attempts %+v", u, res, got)
		}
		if strings.Contains(got[0].Error, "s3cret") {
			t.Fatalf("the recorded error carries the secret: %q", got[0].Error)
		}
	}
}
