package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/rundir"
)

// answer is a handler that answers every request with status, the given
// headers and body.
func answer(status int, header http.Header, body string) func(int, http.ResponseWriter, *http.Request) {
	return func(_ int, w http.ResponseWriter, _ *http.Request) {
		for k, v := range header {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// doOnce sends one charge with o and returns its result and attempts.
func doOnce(t *testing.T, o Options, url string, kind string) (Result, []rundir.Attempt) {
	t.Helper()
	c := newClient(t, o)
	var got []rundir.Attempt
	res := c.Do(context.Background(), Request{Op: 1, Kind: kind, URL: url, Key: "k1", Body: []byte(`{"amount":100}`)},
		func(a rundir.Attempt) { got = append(got, a) })
	if len(got) != res.Attempts {
		t.Fatalf("%d attempts recorded, result says %d", len(got), res.Attempts)
	}
	return res, got
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestIDFieldIsAJSONPointer(t *testing.T) {
	cases := []struct {
		name, field, body, want string
	}{
		{"default top-level string", "", `{"id":"ch_1","amount":100}`, "ch_1"},
		{"top-level number", "/id", `{"id":12345}`, "12345"},
		{"20-digit number keeps its text", "/id", `{"id":12345678901234567890}`, "12345678901234567890"},
		{"fractional number keeps its text", "/id", `{"id":1.50e3}`, "1.50e3"},
		{"nested", "/data/charge/id", `{"data":{"charge":{"id":"pi_9"}}}`, "pi_9"},
		{"nested number", "/data/charge/id", `{"data":{"charge":{"id":77}}}`, "77"},
		{"array index", "/data/1/id", `{"data":[{"id":"a"},{"id":"b"}]}`, "b"},
		{"top-level array", "/0/id", `[{"id":"first"}]`, "first"},
		{"escaped slash", "/a~1b", `{"a/b":"slash"}`, "slash"},
		{"escaped tilde", "/m~0n", `{"m~n":"tilde","m~0n":"wrong"}`, "tilde"},
		{"empty name", "/", `{"":"blank-key"}`, "blank-key"},
		{"unicode escape in the value", "/id", `{"id":"ch_\u00e9"}`, "ch_é"},
		{"missing field", "/id", `{"charge_id":"ch_1"}`, ""},
		{"missing nested field", "/data/charge/id", `{"data":{"id":"x"}}`, ""},
		{"index out of range", "/data/2/id", `{"data":[{"id":"a"}]}`, ""},
		{"index with a leading zero", "/data/01", `{"data":["a","b"]}`, ""},
		{"index that is not a number", "/data/x", `{"data":["a"]}`, ""},
		{"object id is no id", "/id", `{"id":{"value":"x"}}`, ""},
		{"null id is no id", "/id", `{"id":null}`, ""},
		{"boolean id is no id", "/id", `{"id":true}`, ""},
		{"path through a string", "/id/x", `{"id":"ch_1"}`, ""},
		{"non-JSON body", "/id", `charged ch_1`, ""},
		{"broken JSON", "/id", `{"id":"ch_1"`, ""},
		{"empty body", "/id", ``, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, url := serve(t, answer(200, nil, tc.body))
			res, got := doOnce(t, Options{IDField: tc.field}, url, rundir.KindCharge)
			a := got[0]
			if !res.Succeeded || !res.Definite || res.Attempts != 1 || a.Outcome != rundir.OutcomeNew {
				t.Fatalf("a complete 200 must succeed at once whatever its body: %+v", res)
			}
			if a.ChargeID != tc.want || res.ChargeID != tc.want {
				t.Fatalf("id %q (result %q), want %q", a.ChargeID, res.ChargeID, tc.want)
			}
			if a.BodySHA256 != sha(tc.body) || res.BodySHA256 != a.BodySHA256 {
				t.Fatalf("body digest %q (result %q), want %q", a.BodySHA256, res.BodySHA256, sha(tc.body))
			}
		})
	}
}

func TestNoIDOrDigestFromAnythingButA2xx(t *testing.T) {
	_, url := serve(t, answer(400, nil, `{"id":"err_1"}`))
	res, got := doOnce(t, Options{}, url, rundir.KindCharge)
	if got[0].ChargeID != "" || got[0].BodySHA256 != "" || res.ChargeID != "" || res.BodySHA256 != "" {
		t.Fatalf("a 400 gave id %q digest %q", got[0].ChargeID, got[0].BodySHA256)
	}
	if string(res.Body) != `{"id":"err_1"}` {
		t.Fatalf("body %q", res.Body)
	}
}

func TestLongBodyIsKeptShort(t *testing.T) {
	body := `{"id":"ch_long","pad":"` + strings.Repeat("x", 5000) + `"}`
	for _, tc := range []struct {
		status int
		digest string // a 2xx is read to its end and digested whole
	}{{200, sha(body)}, {400, ""}} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			_, url := serve(t, answer(tc.status, nil, body))
			res, got := doOnce(t, Options{MaxBody: 100}, url, rundir.KindCharge)
			if !res.Definite || len(res.Body) != 100 || got[0].BodySHA256 != tc.digest {
				t.Fatalf("kept %d bytes, digest %q; want 100 bytes and digest %q", len(res.Body), got[0].BodySHA256, tc.digest)
			}
			if got[0].ChargeID != "" {
				t.Fatalf("id %q read from a body cut at MaxBody", got[0].ChargeID)
			}
		})
	}
}

func TestReplayHeader(t *testing.T) {
	cases := []struct {
		name   string
		rule   string
		header http.Header
		replay bool
	}{
		{"default, marked", "", http.Header{"Idempotent-Replayed": {"true"}}, true},
		{"default, value in another case", "", http.Header{"Idempotent-Replayed": {"TRUE"}}, true},
		{"default, false", "", http.Header{"Idempotent-Replayed": {"false"}}, false},
		{"default, absent", "", nil, false},
		{"default ignores another header", "", http.Header{"X-Idempotent-Replay": {"true"}}, false},
		{"name only, present", "X-Cache-Replay", http.Header{"X-Cache-Replay": {"1"}}, true},
		{"name only, present and empty", "x-cache-replay", http.Header{"X-Cache-Replay": {""}}, true},
		{"name only, absent", "X-Cache-Replay", http.Header{"Idempotent-Replayed": {"true"}}, false},
		{"name=value, matching", "X-Idem-Status=replayed", http.Header{"X-Idem-Status": {"Replayed"}}, true},
		{"name=value, spaces around", " X-Idem-Status = replayed ", http.Header{"X-Idem-Status": {" replayed "}}, true},
		{"name=value, second value matches", "X-Idem-Status=replayed", http.Header{"X-Idem-Status": {"stored", "replayed"}}, true},
		{"name=value, other value", "X-Idem-Status=replayed", http.Header{"X-Idem-Status": {"created"}}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, url := serve(t, answer(201, tc.header, `{"id":"ch_1"}`))
			res, got := doOnce(t, Options{ReplayHeader: tc.rule}, url, rundir.KindCharge)
			want := rundir.OutcomeNew
			if tc.replay {
				want = rundir.OutcomeReplay
			}
			if a := got[0]; a.Outcome != want || a.Replayed != tc.replay || res.Outcome != want || !res.Succeeded || a.ChargeID != "ch_1" {
				t.Fatalf("outcome %q replayed %v (result %q), want %q", a.Outcome, a.Replayed, res.Outcome, want)
			}
		})
	}
}

func TestReuseStatusesDecideAReuseOpsMismatch(t *testing.T) {
	const reuse, charge = rundir.KindReuse, rundir.KindCharge
	cases := []struct {
		kind     string
		declared []int
		status   int
		outcome  string
		attempts int // 3 means retried until MaxAttempts
	}{
		// A charge keeps the usual mapping whatever is declared for reuses.
		{charge, nil, 400, rundir.OutcomeRejected, 1},
		{charge, nil, 409, rundir.OutcomeConflict, 3},
		{charge, nil, 417, rundir.OutcomeRejected, 1},
		{charge, nil, 422, rundir.OutcomeMismatch, 1},
		{charge, []int{400, 409, 417}, 400, rundir.OutcomeRejected, 1},
		{charge, []int{400, 409, 417}, 409, rundir.OutcomeConflict, 3},
		{charge, []int{400, 409, 417}, 417, rundir.OutcomeRejected, 1},
		// A reuse with the default: the draft's 422.
		{reuse, nil, 422, rundir.OutcomeMismatch, 1},
		{reuse, nil, 400, rundir.OutcomeRejected, 1},
		{reuse, nil, 409, rundir.OutcomeConflict, 3},
		{reuse, nil, 417, rundir.OutcomeRejected, 1},
		// A reuse with the team's own code declared.
		{reuse, []int{400}, 400, rundir.OutcomeMismatch, 1},
		{reuse, []int{400}, 422, rundir.OutcomeRejected, 1},
		{reuse, []int{409}, 409, rundir.OutcomeMismatch, 1},
		{reuse, []int{417}, 417, rundir.OutcomeMismatch, 1},
		{reuse, []int{417}, 409, rundir.OutcomeConflict, 3},
		{reuse, []int{400, 409, 417, 422}, 409, rundir.OutcomeMismatch, 1},
		{reuse, []int{400, 409, 417, 422}, 422, rundir.OutcomeMismatch, 1},
		{reuse, []int{400, 409, 417, 422}, 401, rundir.OutcomeRejected, 1},
		// A 2xx to a reuse is an answer, never the expected refusal.
		{reuse, []int{400}, 200, rundir.OutcomeNew, 1},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s/%d/declared=%v", tc.kind, tc.status, tc.declared), func(t *testing.T) {
			srv, url := serve(t, answer(tc.status, nil, ""))
			res, got := doOnce(t, Options{ReuseStatuses: tc.declared}, url, tc.kind)
			if res.Attempts != tc.attempts || srv.count() != tc.attempts {
				t.Fatalf("%d attempts (server saw %d), want %d", res.Attempts, srv.count(), tc.attempts)
			}
			for _, a := range got {
				if a.Outcome != tc.outcome || a.Status != tc.status {
					t.Fatalf("attempt %d: outcome %q status %d, want %q %d", a.Attempt, a.Outcome, a.Status, tc.outcome, tc.status)
				}
			}
			if definite := tc.attempts == 1; res.Definite != definite || res.Outcome != tc.outcome {
				t.Fatalf("result definite=%v outcome %q, want %v %q", res.Definite, res.Outcome, definite, tc.outcome)
			}
		})
	}
}

func TestNewChecksTheAnswerOptions(t *testing.T) {
	bad := []struct {
		o    Options
		says string
	}{
		{Options{IDField: "id"}, `must start with "/"`},
		{Options{IDField: "data.id"}, "not a JSON pointer"},
		{Options{IDField: "/a~2b"}, "~0"},
		{Options{IDField: "/a~"}, "~1"},
		{Options{ReplayHeader: "Idempotent Replayed"}, "not a header name"},
		{Options{ReplayHeader: "=true"}, "not a header name"},
		{Options{ReplayHeader: "X-Replay:true"}, "not a header name"},
		{Options{ReplayHeader: "X-Replay="}, "non-empty"},
		{Options{ReuseStatuses: []int{200}}, "not a 4xx"},
		{Options{ReuseStatuses: []int{422, 503}}, "503 is not a 4xx"},
	}
	for _, tc := range bad {
		_, err := New(tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("New(%+v) = %v, want an error saying %q", tc.o, err, tc.says)
		}
	}
	c, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	o := c.Options()
	if o.IDField != "/id" || o.ReplayHeader != "Idempotent-Replayed=true" || !slices.Equal(o.ReuseStatuses, []int{422}) {
		t.Fatalf("defaults: id %q replay %q reuse %v", o.IDField, o.ReplayHeader, o.ReuseStatuses)
	}
	declared := []int{400}
	c, err = New(Options{IDField: "/data/id", ReplayHeader: "X-Replayed", ReuseStatuses: declared, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	declared[0] = 500
	if o := c.Options(); o.IDField != "/data/id" || o.ReplayHeader != "X-Replayed" || !slices.Equal(o.ReuseStatuses, []int{400}) {
		t.Fatalf("options kept: %+v", o)
	}
}

// TestCappedBodyKeepsThePrefixAndDigestsAll: whatever the body's length
// beside the cap and however it arrives in pieces, the kept bytes are its
// first max and the digest is of all of it.
func TestCappedBodyKeepsThePrefixAndDigestsAll(t *testing.T) {
	body := strings.Repeat("0123456789abcdef", 40) // 640 bytes
	for _, size := range []int{0, 1, 99, 100, 101, 640} {
		for _, chunk := range []int{1, 7, 100, 1000} {
			t.Run(fmt.Sprintf("%d bytes in %d-byte pieces", size, chunk), func(t *testing.T) {
				w := cappedBody{buf: new(bytes.Buffer), max: 100, digest: true}
				for p := body[:size]; len(p) > 0; p = p[min(chunk, len(p)):] {
					w.write([]byte(p[:min(chunk, len(p))]))
				}
				if want := body[:min(size, 100)]; w.buf.String() != want {
					t.Errorf("kept %q, want %q", w.buf.String(), want)
				}
				if got, want := w.sum(), sha(body[:size]); got != want {
					t.Errorf("digest %s, want %s", got, want)
				}
			})
		}
	}
}
