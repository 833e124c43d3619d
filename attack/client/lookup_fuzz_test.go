package client

import (
	"bytes"
	"encoding/json"
	"testing"
)

// lookupByDecoding is the pointer lookup by the book: each object decoded
// into a map, each array into a slice, the scalar through encoding/json.
// lookup must agree with it on every input.
func lookupByDecoding(p jsonPointer, body []byte) string {
	raw := bytes.TrimSpace(body)
	for _, tok := range p {
		if len(raw) == 0 {
			return ""
		}
		switch raw[0] {
		case '{':
			var m map[string]json.RawMessage
			if json.Unmarshal(raw, &m) != nil {
				return ""
			}
			v, ok := m[tok]
			if !ok {
				return ""
			}
			raw = bytes.TrimSpace(v)
		case '[':
			i, ok := arrayIndex(tok)
			if !ok {
				return ""
			}
			var a []json.RawMessage
			if json.Unmarshal(raw, &a) != nil || i >= len(a) {
				return ""
			}
			raw = bytes.TrimSpace(a[i])
		default:
			return ""
		}
	}
	if len(raw) == 0 {
		return ""
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return ""
		}
		return s
	case c == '-' || (c >= '0' && c <= '9'):
		var n json.Number
		if json.Unmarshal(raw, &n) != nil {
			return ""
		}
		return n.String()
	}
	return ""
}

// FuzzLookupAgreesWithDecoding: the in-place scan finds what decoding
// finds, for any body and pointer: duplicate names (the last wins), escaped
// and non-UTF-8 names and values, nesting, whitespace, broken JSON.
func FuzzLookupAgreesWithDecoding(f *testing.F) {
	for _, seed := range []struct{ ptr, body string }{
		{"/id", `{"id":"ch_1","amount":100}`},
		{"/id", `{"id":"a","id":"b"}`},
		{"/id", ` { "x" : [1, {"id":"no"}, "}"] , "id" : 42 } `},
		{"/id", `{"\u0069d":"escaped-name"}`},
		{"/id", `{"id":"ch_\u00e9\n"}`},
		{"/id", "{\"id\":\"\xff\"}"},
		{"/\xffx", "{\"\xffx\":\"bad-utf8-name\"}"},
		{"/data/0/id", `{"data":[{"id":"a"},{"id":"b"}]}`},
		{"/data/charge/id", `{"data":{"charge":{"id":-1.5e3}}}`},
		{"/a~1b", `{"a/b":"slash","a\/b":"escaped slash"}`},
		{"/id", `{"id":"ch_1"`},
		{"/id", `{"id":true,"id":null}`},
		{"/", `{"":"blank"}`},
		{"/0", `["first",2]`},
	} {
		f.Add(seed.ptr, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, ptr string, body []byte) {
		p, err := parsePointer(ptr)
		if err != nil {
			return
		}
		if got, want := p.lookup(body), lookupByDecoding(p, body); got != want {
			t.Fatalf("pointer %q in %q: lookup %q, decoding %q", ptr, body, got, want)
		}
	})
}

// TestLookupAllocatesOnlyTheID: finding a plain id in a charge's answer
// costs one allocation (the id's string), not a map of the body.
func TestLookupAllocatesOnlyTheID(t *testing.T) {
	p, err := parsePointer("/id")
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"id":"ch_4c624de854b34e6582e6050304766170","amount":1299,"currency":"EUR","customer":"cus_1","metadata":{"order":"o-1"}}`)
	if got := p.lookup(body); got != "ch_4c624de854b34e6582e6050304766170" {
		t.Fatalf("lookup %q", got)
	}
	if n := testing.AllocsPerRun(100, func() { _ = p.lookup(body) }); n > 1 {
		t.Fatalf("%.0f allocations per lookup, want at most 1", n)
	}
}
