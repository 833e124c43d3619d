package charge

import (
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/testinfra"
)

// TestBadInput: every client mistake gets its status and problem type, as
// application/problem+json, and writes and claims nothing; the same key then
// carries a valid request to a new charge (no mistake wedges a key).
func TestBadInput(t *testing.T) {
	h := newHarness(t, Config{APIKeys: map[string]string{DefaultAPIKey: DefaultMerchant, "sk_test_acme": "acme"}})
	valid := demoBody
	with := func(old, new string) string {
		if !strings.Contains(valid, old) {
			t.Fatalf("test body lacks %q", old)
		}
		return strings.Replace(valid, old, new, 1)
	}
	for _, tc := range []struct {
		name   string
		method string
		auth   []string // Authorization headers; nil sends the demo key, {} none
		key    []string
		body   string
		status int
		ptype  string
		says   string // in the problem's detail
	}{
		{name: "missing key", key: []string{}, status: 400, ptype: "invalid"},
		{name: "empty key", key: []string{""}, status: 400, ptype: "invalid"},
		{name: "key over 255", key: []string{strings.Repeat("k", 256)}, status: 400, ptype: "invalid"},
		{name: "key with a tab", key: []string{"a\tb"}, status: 400, ptype: "invalid"},
		{name: "key not ASCII", key: []string{"caf\xc3\xa9"}, status: 400, ptype: "invalid"},
		{name: "two keys", key: []string{"a", "b"}, status: 400, ptype: "invalid"},
		{name: "bad JSON", body: `{"amount":`, status: 400, ptype: "invalid"},
		{name: "not an object", body: `[1]`, status: 400, ptype: "invalid"},
		{name: "empty body", body: ``, status: 400, ptype: "invalid"},
		{name: "trailing data", body: valid + `{}`, status: 400, ptype: "invalid"},
		{name: "unknown field", body: with(`"quantity":1`, `"quantity":1,"tip":5`), status: 400, ptype: "invalid"},
		{name: "zero amount", body: with("1299", "0"), status: 400, ptype: "invalid"},
		{name: "negative amount", body: with("1299", "-1299"), status: 400, ptype: "invalid"},
		{name: "amount over int64", body: with("1299", "9223372036854775808"), status: 400, ptype: "invalid"},
		{name: "amount at -2^63", body: with("1299", "-9223372036854775808"), status: 400, ptype: "invalid"},
		{name: "amount with an exponent", body: with("1299", "1e3"), status: 400, ptype: "invalid"},
		{name: "fractional amount", body: with("1299", "12.99"), status: 400, ptype: "invalid"},
		{name: "amount as string", body: with("1299", `"1299"`), status: 400, ptype: "invalid"},
		{name: "missing amount", body: with(`"amount":1299,`, ``), status: 400, ptype: "invalid"},
		{name: "lowercase currency", body: with("EUR", "eur"), status: 400, ptype: "invalid"},
		{name: "4-letter currency", body: with("EUR", "EURO"), status: 400, ptype: "invalid"},
		{name: "NUL in currency", body: with("EUR", `EU\u0000`), status: 400, ptype: "invalid"},
		{name: "missing currency", body: with(`"currency":"EUR",`, ``), status: 400, ptype: "invalid"},
		{name: "missing customer", body: with(`"customer":"cus_1",`, ``), status: 400, ptype: "invalid"},
		{name: "NUL in customer", body: with(`"cus_1"`, `"cus\u0000_1"`), status: 400, ptype: "invalid", says: "NUL"},
		{name: "customer is a NUL", body: with(`"cus_1"`, `"\u0000"`), status: 400, ptype: "invalid", says: "NUL"},
		{name: "NUL in sku", body: with(`"sku-1"`, `"sku-1\u0000"`), status: 400, ptype: "invalid", says: "NUL"},
		{name: "empty sku", body: with(`"sku-1"`, `""`), status: 400, ptype: "invalid"},
		{name: "unknown sku", body: with(`"sku-1"`, `"widget"`), status: 400, ptype: "invalid", says: `unknown sku "widget"`},
		{name: "sku past the catalog", body: with(`"sku-1"`, `"sku-101"`), status: 400, ptype: "invalid", says: "unknown sku"},
		{name: "sku-0", body: with(`"sku-1"`, `"sku-0"`), status: 400, ptype: "invalid", says: "unknown sku"},
		{name: "sku-01", body: with(`"sku-1"`, `"sku-01"`), status: 400, ptype: "invalid", says: "unknown sku"},
		{name: "zero quantity", body: with(`"quantity":1`, `"quantity":0`), status: 400, ptype: "invalid"},
		{name: "negative quantity", body: with(`"quantity":1`, `"quantity":-1`), status: 400, ptype: "invalid"},
		{name: "quantity 2^31", body: with(`"quantity":1`, `"quantity":2147483648`), status: 400, ptype: "invalid", says: "quantity"},
		{name: "quantity over int64", body: with(`"quantity":1`, `"quantity":9223372036854775808`), status: 400, ptype: "invalid"},
		{name: "missing quantity", body: with(`,"quantity":1`, ``), status: 400, ptype: "invalid"},
		{name: "oversized body", body: with(`"cus_1"`, `"cus_1"`+strings.Repeat(" ", MaxBodyBytes)), status: 413, ptype: "too_large"},
		{name: "GET", method: http.MethodGet, status: 405, ptype: "method_not_allowed"},
		{name: "PUT", method: http.MethodPut, status: 405, ptype: "method_not_allowed"},
		{name: "no API key", auth: []string{}, status: 401, ptype: "unauthorized"},
		{name: "unknown API key", auth: []string{"Bearer sk_live_nope"}, status: 401, ptype: "unauthorized"},
		{name: "API key with a suffix", auth: []string{"Bearer " + DefaultAPIKey + "x"}, status: 401, ptype: "unauthorized"},
		{name: "API key prefix", auth: []string{"Bearer " + DefaultAPIKey[:len(DefaultAPIKey)-1]}, status: 401, ptype: "unauthorized"},
		{name: "Basic auth", auth: []string{"Basic ZGVtbzpzZWNyZXQ="}, status: 401, ptype: "unauthorized"},
		{name: "empty bearer", auth: []string{"Bearer "}, status: 401, ptype: "unauthorized"},
		{name: "two merchants' keys", auth: []string{"Bearer " + DefaultAPIKey, "Bearer sk_test_acme"}, status: 400, ptype: "invalid", says: "Authorization"},
		{name: "a key and an unknown one", auth: []string{"Bearer " + DefaultAPIKey, "Bearer nope"}, status: 400, ptype: "invalid", says: "Authorization"},
		{name: "the same key twice", auth: []string{"Bearer " + DefaultAPIKey, "Bearer " + DefaultAPIKey}, status: 400, ptype: "invalid", says: "Authorization"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			body := tc.body
			if body == "" && tc.status != 400 {
				body = valid
			}
			if tc.name == "empty body" {
				body = ""
			}
			req, err := http.NewRequest(method, h.url+"/charge", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			auth := tc.auth
			if auth == nil {
				auth = []string{"Bearer " + DefaultAPIKey}
			}
			for _, a := range auth {
				req.Header.Add("Authorization", a)
			}
			keys := tc.key
			if keys == nil {
				keys = []string{"bad-input-" + tc.name}
			}
			for _, k := range keys {
				req.Header.Add("Idempotency-Key", k)
			}
			keys0, charges0, events0 := rows(t, h.pool)
			resp, err := h.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			p := mustProblem(t, resp, tc.status, tc.ptype)
			if !strings.Contains(p.Detail, tc.says) {
				t.Fatalf("detail %q does not say %q", p.Detail, tc.says)
			}
			if keys, charges, events := rows(t, h.pool); keys != keys0 || charges != charges0 || events != events0 {
				t.Fatalf("a client mistake wrote keys=%d charges=%d events=%d", keys-keys0, charges-charges0, events-events0)
			}
			if tc.key != nil {
				return
			}
			// The key is free: a valid request under it is a new charge.
			if r := h.post(t, DefaultAPIKey, keys[0], valid); r.status != 200 || r.replayed() {
				t.Fatalf("a valid request under the same key after the mistake: %s, want a new 200", r)
			}
			if keys, charges, events := rows(t, h.pool); keys != keys0+1 || charges != charges0+1 || events != events0+1 {
				t.Fatalf("the valid request wrote keys=%d charges=%d events=%d, want 1 each", keys-keys0, charges-charges0, events-events0)
			}
		})
	}
}

// mustProblem reads resp as a problem document with status and type
// ProblemTypePrefix+ptype.
func mustProblem(tb testing.TB, resp *http.Response, status int, ptype string) Problem {
	tb.Helper()
	var p Problem
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		tb.Fatalf("%s: body is not a problem document: %v", resp.Status, err)
	}
	if resp.StatusCode != status || p.Status != status || p.Type != ProblemTypePrefix+ptype ||
		resp.Header.Get("Content-Type") != "application/problem+json" || p.Title == "" || p.Detail == "" {
		tb.Fatalf("got %d %s %+v, want %d %s problem", resp.StatusCode, resp.Header.Get("Content-Type"), p, status, ptype)
	}
	return p
}

// TestPostgresDown: with the database unreachable the service answers 503
// with Retry-After (and /readyz fails), writes nothing, and recovers by
// itself once the database is back.
func TestPostgresDown(t *testing.T) {
	dbURL := testinfra.Postgres(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	px := startProxy(t, u.Host)
	u.Host = px.addr()
	h := newHarness(t, Config{DatabaseURL: u.String()})
	if r := h.post(t, DefaultAPIKey, "before", demoBody); r.status != 200 {
		t.Fatalf("before the outage: %s", r)
	}
	px.setUp(false)
	for i, key := range []string{"during-1", "during-2", "before"} {
		r := h.post(t, DefaultAPIKey, key, demoBody)
		var p Problem
		if err := json.Unmarshal(r.body, &p); err != nil {
			t.Fatalf("request %d during the outage: %s is not a problem: %v", i, r, err)
		}
		if r.status != 503 || r.header.Get("Retry-After") == "" || p.Type != ProblemTypePrefix+"unavailable" {
			t.Fatalf("request %d during the outage: %s Retry-After=%q", i, r, r.header.Get("Retry-After"))
		}
	}
	if resp, err := h.client.Get(h.url + "/readyz"); err != nil || resp.StatusCode != 503 {
		t.Fatalf("/readyz during the outage: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	px.setUp(true)
	testinfra.WaitFor(t, 10*time.Second, func() error {
		r, err := doPost(h.client, h.url, DefaultAPIKey, "after", demoBody)
		if err == nil && r.status != 200 {
			err = errorString(r.String())
		}
		return err
	})
	if r := h.post(t, DefaultAPIKey, "before", demoBody); r.status != 200 || !r.replayed() {
		t.Fatalf("replay after the outage: %s", r)
	}
	if n := count(t, h.pool, `SELECT count(*) FROM charges WHERE idempotency_key LIKE 'during-%'`); n != 0 {
		t.Fatalf("%d charges written by requests that got 503", n)
	}
	if _, charges, _ := rows(t, h.pool); charges != 2 {
		t.Fatalf("%d charges, want 2 (before, after)", charges)
	}
}

type errorString string

func (e errorString) Error() string { return string(e) }

// proxy is a TCP forwarder that can cut every connection and refuse new
// ones, to take "the database" away and bring it back.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	up     bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, up: true, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		p.setUp(false)
		p.wg.Wait()
	})
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		up := p.up
		p.mu.Unlock()
		if !up {
			_ = c.Close()
			continue
		}
		d, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[d] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			buf := make([]byte, 32<<10)
			for {
				n, err := src.Read(buf)
				if n > 0 {
					if _, werr := dst.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			_ = dst.Close()
			_ = src.Close()
		}
		p.wg.Go(func() { pipe(d, c) })
		p.wg.Go(func() { pipe(c, d) })
	}
}

func (p *proxy) setUp(up bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up = up
	if !up {
		for c := range p.conns {
			_ = c.Close()
		}
		clear(p.conns)
	}
}
