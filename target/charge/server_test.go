package charge

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestServerAnswersProblemsItself: what net/http refuses before the handler
// runs (oversized headers, a bad Content-Length or Transfer-Encoding, a
// malformed request) is answered application/problem+json too, and writes
// nothing.
func TestServerAnswersProblemsItself(t *testing.T) {
	h := newHarness(t, Config{})
	head := "POST /charge HTTP/1.1\r\nHost: charge\r\nAuthorization: Bearer " + DefaultAPIKey + "\r\nIdempotency-Key: raw\r\n"
	for _, tc := range []struct {
		name   string
		raw    string
		status int
		ptype  string
		says   string
	}{
		{"oversized header", head + "X-Big: " + strings.Repeat("a", 2*DefaultMaxHeaderBytes) + "\r\n\r\n", 431, "too_large", "header"},
		{"oversized header count", head + strings.Repeat("X-A: b\r\n", DefaultMaxHeaderBytes/4) + "\r\n", 431, "too_large", "header"},
		{"negative Content-Length", head + "Content-Length: -1\r\n\r\n" + demoBody, 400, "invalid", "Content-Length"},
		{"Content-Length not a number", head + "Content-Length: ten\r\n\r\n" + demoBody, 400, "invalid", "Content-Length"},
		{"two Content-Lengths", head + "Content-Length: 10\r\nContent-Length: 11\r\n\r\n" + demoBody, 400, "invalid", "Content-Length"},
		{"Content-Length over int64", head + "Content-Length: 99999999999999999999\r\n\r\n" + demoBody, 400, "invalid", "Content-Length"},
		{"unknown Transfer-Encoding", head + "Transfer-Encoding: gzip\r\n\r\n" + demoBody, 501, "invalid", "Transfer-Encoding"},
		{"NUL in a header value", head + "X-Note: a\x00b\r\nContent-Length: 2\r\n\r\n{}", 400, "invalid", "header"},
		{"NUL in the Idempotency-Key", strings.Replace(head, "Key: raw", "Key: r\x00w", 1) + fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(demoBody), demoBody), 400, "invalid", "header"},
		{"NUL in the API key", strings.Replace(head, "Bearer ", "Bearer \x00", 1) + fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(demoBody), demoBody), 400, "invalid", "header"},
		{"no Host", "POST /charge HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}", 400, "invalid", "Host"},
		{"malformed request line", "POST\r\n\r\n", 400, "invalid", "could not be parsed"},
		{"unknown Expect", head + "Expect: fish\r\nContent-Length: 2\r\n\r\n{}", 417, "invalid", "Expect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := rawRoundTrip(t, h.url, tc.raw)
			defer resp.Body.Close()
			p := mustProblem(t, resp, tc.status, tc.ptype)
			if !strings.Contains(p.Detail, tc.says) {
				t.Fatalf("detail %q does not say %q", p.Detail, tc.says)
			}
			if keys, charges, events := rows(t, h.pool); keys+charges+events != 0 {
				t.Fatalf("wrote keys=%d charges=%d events=%d", keys, charges, events)
			}
		})
	}
	// The rewrite leaves the handler's own answers alone.
	if r := h.post(t, DefaultAPIKey, "after", demoBody); r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("a valid charge after the refusals: %s", r)
	}
}

// rawRoundTrip sends raw on a new connection to base and reads one answer.
func rawRoundTrip(t *testing.T, base, raw string) *http.Response {
	t.Helper()
	c := dialRaw(t, base)
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	return resp
}

func dialRaw(tb testing.TB, base string) net.Conn {
	tb.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// TestSlowloris: 3,000 connections trickling a body at 1 byte a second do
// not exhaust the service: a normal charge meanwhile is answered at once,
// and every slow connection is cut off by the read timeout (a 400 problem,
// then the close) having charged and claimed nothing.
func TestSlowloris(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 3,000 connections for several seconds")
	}
	n := connBudget(t, 3000)
	const readTimeout = 8 * time.Second
	h := newServerHarness(t, Config{RequestTimeout: 2 * time.Second}, ServerConfig{
		ReadHeaderTimeout: time.Second, ReadTimeout: readTimeout, WriteTimeout: readTimeout + 3*time.Second})
	type result struct {
		status  int
		ctype   string
		body    string
		open    time.Time
		elapsed time.Duration // from the dial to the close
		err     error
	}
	results := make([]result, n)
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	var answered atomic.Int64
	for i := range n {
		// The server starts the read deadline when it begins reading the
		// connection, which can be before our first byte arrives: take the
		// time before the dial so that no close can come early by our clock.
		results[i].open = time.Now()
		c := dialRaw(t, h.url)
		conns[i] = c
		head := fmt.Sprintf("POST /charge HTTP/1.1\r\nHost: charge\r\nAuthorization: Bearer %s\r\nIdempotency-Key: slow-%d\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%c",
			DefaultAPIKey, i, len(demoBody), demoBody[0])
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		wg.Go(func() {
			r := &results[i]
			r.err = c.SetReadDeadline(r.open.Add(readTimeout + 20*time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err == nil {
				answered.Add(1)
				b, _ := io.ReadAll(resp.Body)
				r.status, r.ctype, r.body = resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
				// The server hangs up after the answer: a reset if it had
				// unread bytes of ours in hand.
				_, err = c.Read(make([]byte, 1))
				if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
					err = nil
				}
			}
			r.err = errors.Join(r.err, err)
			r.elapsed = time.Since(r.open)
		})
	}
	opened := time.Since(results[0].open)
	stopDrip := drip(conns, demoBody[1:])
	began := time.Now()
	r := h.post(t, DefaultAPIKey, "normal", demoBody)
	took := time.Since(began)
	early := answered.Load()
	if r.status != 200 || took > 2*time.Second {
		t.Fatalf("a normal charge among %d slow connections: %s in %s, want 200 at once", n, r, took)
	}
	if early != 0 || time.Since(results[0].open) >= readTimeout {
		t.Fatalf("the slow connections were not all open during the normal charge (%d answered, %s since the first opened): the test proves nothing", early, time.Since(results[0].open))
	}
	t.Logf("%d slow connections opened in %s; a normal charge among them took %s", n, opened.Round(time.Millisecond), took.Round(time.Millisecond))

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(readTimeout + 30*time.Second):
		t.Fatalf("slow connections still open %s after the read timeout (%d of %d answered)", 30*time.Second, answered.Load(), n)
	}
	stopDrip()
	var slowest time.Duration
	for i, r := range results {
		if r.err != nil || r.status != 400 || r.ctype != "application/problem+json" || !strings.Contains(r.body, "read timeout") {
			t.Fatalf("slow connection %d: %d %s %s (%v), want a 400 problem saying the read timeout passed", i, r.status, r.ctype, r.body, r.err)
		}
		// open was taken before the dial, so before the server's deadline
		// started: none may close early; more slack above for a busy machine.
		if r.elapsed < readTimeout || r.elapsed > readTimeout+15*time.Second {
			t.Fatalf("slow connection %d closed after %s, want about the read timeout %s", i, r.elapsed, readTimeout)
		}
		slowest = max(slowest, r.elapsed)
	}
	t.Logf("every slow connection got its 400 and was closed %s..%s after it opened (read timeout %s)", readTimeout, slowest.Round(time.Millisecond), readTimeout)
	if keys, charges, events := rows(t, h.pool); keys != 1 || charges != 1 || events != 1 {
		t.Fatalf("keys=%d charges=%d events=%d, want only the normal charge's", keys, charges, events)
	}
}

// drip writes body to every connection one byte a second, until stopped.
func drip(conns []net.Conn, body string) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for i := 0; i < len(body); i++ {
			select {
			case <-quit:
				return
			case <-t.C:
			}
			for _, c := range conns {
				_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				_, _ = c.Write([]byte{body[i]}) // a closed connection refuses: expected
			}
		}
	})
	return func() { close(quit); wg.Wait() }
}

// TestSlowHeadersAndIdleConnectionsClosed: a request whose headers trickle
// in is dropped after the read-header timeout, and a keep-alive connection
// left idle is closed after the idle timeout, each not long before.
func TestSlowHeadersAndIdleConnectionsClosed(t *testing.T) {
	const headerTimeout, idle = time.Second, 1500 * time.Millisecond
	h := newServerHarness(t, Config{RequestTimeout: 2 * time.Second}, ServerConfig{
		ReadHeaderTimeout: headerTimeout, ReadTimeout: 3 * time.Second, WriteTimeout: 6 * time.Second, IdleTimeout: idle})
	closedAfter := func(c net.Conn, from time.Time) time.Duration {
		t.Helper()
		if err := c.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := c.Read(make([]byte, 512))
		if n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("read %d bytes, %v; want the server to hang up", n, err)
		}
		return time.Since(from)
	}

	from := time.Now() // before the dial: the server's deadline starts when it begins reading
	slow := dialRaw(t, h.url)
	if _, err := io.WriteString(slow, "POST /charge HTTP/1.1\r\nHost: charge\r\n"); err != nil {
		t.Fatal(err)
	}
	if d := closedAfter(slow, from); d < headerTimeout || d > headerTimeout+5*time.Second {
		t.Fatalf("unfinished headers closed after %s, want about %s", d, headerTimeout)
	}

	kept := dialRaw(t, h.url)
	req := fmt.Sprintf("POST /charge HTTP/1.1\r\nHost: charge\r\nAuthorization: Bearer %s\r\nIdempotency-Key: idle\r\nContent-Length: %d\r\n\r\n%s",
		DefaultAPIKey, len(demoBody), demoBody)
	from = time.Now() // before the request: the idle clock starts after the server's answer
	if _, err := io.WriteString(kept, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(kept)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil || resp.StatusCode != 200 || resp.Close {
		t.Fatalf("keep-alive charge: %s close=%v %v", resp.Status, resp.Close, err)
	}
	if br.Buffered() != 0 {
		t.Fatalf("%d stray bytes after the answer", br.Buffered())
	}
	if d := closedAfter(kept, from); d < idle || d > idle+5*time.Second {
		t.Fatalf("an idle keep-alive connection closed after %s, want about %s", d, idle)
	}
}

// TestServerConfigRefused: limits that would cut off a charge's answer are
// a usage error.
func TestServerConfigRefused(t *testing.T) {
	h := newHarness(t, Config{RequestTimeout: 10 * time.Second})
	for _, sc := range []ServerConfig{
		{ReadTimeout: 15 * time.Second, WriteTimeout: 20 * time.Second},
		{ReadHeaderTimeout: 20 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: time.Minute},
		{IdleTimeout: -time.Second},
	} {
		if _, err := h.svc.Server(sc); err == nil || !strings.Contains(err.Error(), "timeout") {
			t.Errorf("Server(%+v) = %v, want a usage error", sc, err)
		}
	}
	if srv, err := h.svc.Server(ServerConfig{}); err != nil || srv.ReadTimeout != DefaultReadTimeout ||
		srv.WriteTimeout != DefaultWriteTimeout || srv.IdleTimeout != DefaultIdleTimeout ||
		srv.ReadHeaderTimeout != DefaultReadHeaderTimeout || srv.MaxHeaderBytes != DefaultMaxHeaderBytes {
		t.Fatalf("defaults: %+v %v", srv, err)
	}
}
