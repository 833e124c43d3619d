package client

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Defaults of the Options that read a 2xx answer.
const (
	// DefaultIDField points at the resource id of a 2xx JSON body.
	DefaultIDField = "/id"
	// DefaultReplayHeader marks a 2xx as a replay.
	DefaultReplayHeader = "Idempotent-Replayed=true"
)

// DefaultReuseStatuses are the statuses a reuse op expects by default: the
// IETF idempotency-key draft's 422.
var DefaultReuseStatuses = []int{http.StatusUnprocessableEntity}

// jsonPointer is a parsed RFC 6901 pointer: its reference tokens, unescaped.
type jsonPointer []string

var pointerUnescape = strings.NewReplacer("~1", "/", "~0", "~")

// parsePointer parses a non-empty RFC 6901 pointer such as "/data/0/id".
func parsePointer(p string) (jsonPointer, error) {
	if !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("client: id field %q is not a JSON pointer: it must start with \"/\" (e.g. /id or /data/charge/id)", p)
	}
	toks := strings.Split(p[1:], "/")
	for i, t := range toks {
		for j := 0; j < len(t); j++ {
			if t[j] == '~' && (j+1 == len(t) || (t[j+1] != '0' && t[j+1] != '1')) {
				return nil, fmt.Errorf("client: id field %q: a \"~\" in a name is written ~0 and a \"/\" ~1", p)
			}
		}
		toks[i] = pointerUnescape.Replace(t)
	}
	return toks, nil
}

// lookup returns the text of the string or number the pointer designates in
// a JSON body, or "" when the body is not JSON, the pointer leads nowhere,
// or the value is neither a string nor a number. A number keeps its exact
// text, so a 20-digit id is not rounded through a float.
//
// It runs on every 2xx answer: the body is validated once, and an object's
// member is found by scanning it in place, as decoding it into a map (the
// last of duplicate names wins) would find it, without building the map.
func (p jsonPointer) lookup(body []byte) string {
	raw := bytes.TrimSpace(body)
	if !json.Valid(raw) {
		return ""
	}
	for _, tok := range p {
		if len(raw) == 0 {
			return ""
		}
		switch raw[0] {
		case '{':
			v, ok := member(raw, tok)
			if !ok {
				return ""
			}
			raw = v
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
	return scalarText(raw)
}

// member returns the value of obj's last member named name. obj is a valid
// JSON object (json.Valid), so the scan needs no syntax checks; its bounds
// checks only keep a malformed input from panicking.
func member(obj []byte, name string) (value []byte, found bool) {
	i := skipSpace(obj, 1)
	for i < len(obj) && obj[i] == '"' {
		keyEnd := valueEnd(obj, i)
		key := obj[i:keyEnd]
		i = skipSpace(obj, keyEnd)
		i = skipSpace(obj, i+1) // past the ':'
		end := valueEnd(obj, i)
		if end > len(obj) || i > end {
			return nil, false
		}
		if nameIs(key, name) {
			value, found = obj[i:end], true
		}
		i = skipSpace(obj, end)
		if i < len(obj) && obj[i] == ',' {
			i = skipSpace(obj, i+1)
		}
	}
	return value, found
}

// nameIs reports whether the quoted member name key decodes to name. A name
// without escapes and in valid UTF-8 is its own text; any other is decoded.
func nameIs(key []byte, name string) bool {
	if len(key) < 2 {
		return false
	}
	inner := key[1 : len(key)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return string(inner) == name
	}
	var s string
	return json.Unmarshal(key, &s) == nil && s == name
}

// valueEnd is the index just past the JSON value that starts at b[i].
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return len(b)
	}
	switch b[i] {
	case '"':
		for j := i + 1; j < len(b); j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1
			}
		}
		return len(b)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				j = valueEnd(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	j := i // a number, true, false or null: up to a delimiter
	for j < len(b) && !isDelim(b[j]) {
		j++
	}
	return j
}

func isDelim(c byte) bool {
	switch c {
	case ',', '}', ']', ' ', '\t', '\r', '\n':
		return true
	}
	return false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// arrayIndex parses an RFC 6901 array index: "0" or digits without a
// leading zero.
func arrayIndex(tok string) (int, bool) {
	if tok == "" || (len(tok) > 1 && tok[0] == '0') {
		return 0, false
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] < '0' || tok[i] > '9' {
			return 0, false
		}
	}
	i, err := strconv.Atoi(tok)
	return i, err == nil
}

func scalarText(raw []byte) string {
	if len(raw) == 0 {
		return ""
	}
	switch c := raw[0]; {
	case c == '"' && len(raw) >= 2:
		// Valid JSON: a string without escapes in valid UTF-8 is its text.
		if inner := raw[1 : len(raw)-1]; bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
			return string(inner)
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return ""
		}
		return s
	case c == '-' || (c >= '0' && c <= '9'):
		// A valid JSON number's text is the number (json.Number's too).
		return string(raw)
	}
	return ""
}

// replayRule says which response header marks a 2xx as a replay.
type replayRule struct {
	name     string // canonical header name
	value    string
	hasValue bool
}

// parseReplayHeader parses "Name" or "Name=Value".
func parseReplayHeader(s string) (replayRule, error) {
	name, value, hasValue := strings.Cut(s, "=")
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	if !validToken(name) {
		return replayRule{}, fmt.Errorf("client: replay header %q: %q is not a header name (want NAME or NAME=VALUE, e.g. Idempotent-Replayed=true)", s, name)
	}
	if hasValue && (value == "" || strings.ContainsAny(value, "\r\n\x00")) {
		return replayRule{}, fmt.Errorf("client: replay header %q: the value after \"=\" must be non-empty text (write NAME alone to mean \"present\")", s)
	}
	return replayRule{name: http.CanonicalHeaderKey(name), value: value, hasValue: hasValue}, nil
}

// marks reports whether h carries the replay header (with its value, case
// aside, when the rule names one).
func (r replayRule) marks(h http.Header) bool {
	vs, ok := h[r.name]
	if !ok {
		return false
	}
	if !r.hasValue {
		return true
	}
	for _, v := range vs {
		if strings.EqualFold(strings.TrimSpace(v), r.value) {
			return true
		}
	}
	return false
}

// validToken reports whether s is an RFC 9110 token, the syntax of a
// header field name.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// cappedBody keeps the first max bytes of a body in buf and, when it
// digests, hashes all of it: the kept bytes once the body is whole (one
// call, nothing allocated), or, for a body longer than max, every byte as
// it streams past from the moment it outgrows the cap.
type cappedBody struct {
	buf    *bytes.Buffer
	max    int64
	digest bool
	long   hash.Hash // the digest of a body past max; nil until then
}

func (w *cappedBody) write(p []byte) {
	room := w.max - int64(w.buf.Len())
	if w.digest && w.long == nil && int64(len(p)) > room {
		w.long = sha256.New()
		w.long.Write(w.buf.Bytes())
	}
	if w.long != nil {
		w.long.Write(p)
	}
	if room > 0 {
		w.buf.Write(p[:min(int64(len(p)), room)])
	}
}

// sum is the hex SHA-256 of everything written.
func (w *cappedBody) sum() string {
	var sum [sha256.Size]byte
	if w.long != nil {
		w.long.Sum(sum[:0])
	} else {
		sum = sha256.Sum256(w.buf.Bytes())
	}
	var hx [2 * sha256.Size]byte
	hex.Encode(hx[:], sum[:])
	return string(hx[:])
}
