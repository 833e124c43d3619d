package rundir

import (
	"strconv"
	"time"
)

// lineDecoder is a record that decodes the lines its own writer wrote
// without reflection: a flat object of known keys, plain ASCII strings,
// numbers, booleans and nulls. decodeLine reports false for anything else
// (an escape, an unknown key, a nested value, a malformed number), and
// Decode then reads the line with encoding/json, whose result, or error,
// stands. A large run's history, plan and ledger are read this way several
// times faster.
type lineDecoder interface {
	decodeLine(b []byte) bool
}

// flatScanner walks the members of one flat JSON object.
type flatScanner struct {
	b   []byte
	i   int
	n   int // members read
	bad bool
}

func (s *flatScanner) space() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\r' || s.b[s.i] == '\n') {
		s.i++
	}
}

// open consumes the object's "{".
func (s *flatScanner) open() bool {
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != '{' {
		return false
	}
	s.i++
	return true
}

// next returns the next member's key and raw value (a string's value
// without its quotes; str says it was one); ok is false at the object's
// end, and s.bad is set for anything the fast path does not take.
func (s *flatScanner) next() (key, val []byte, str, ok bool) {
	s.space()
	if s.i >= len(s.b) {
		s.bad = true
		return nil, nil, false, false
	}
	if s.b[s.i] == '}' {
		s.i++
		s.space()
		if s.i != len(s.b) {
			s.bad = true
		}
		return nil, nil, false, false
	}
	if s.n > 0 {
		if s.b[s.i] != ',' {
			s.bad = true
			return nil, nil, false, false
		}
		s.i++
		s.space()
	}
	s.n++
	key, okKey := s.str()
	s.space()
	if !okKey || s.i >= len(s.b) || s.b[s.i] != ':' {
		s.bad = true
		return nil, nil, false, false
	}
	s.i++
	s.space()
	if s.i >= len(s.b) {
		s.bad = true
		return nil, nil, false, false
	}
	if s.b[s.i] == '"' {
		val, okVal := s.str()
		if !okVal {
			s.bad = true
			return nil, nil, false, false
		}
		return key, val, true, true
	}
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		if c == ',' || c == '}' || c == ' ' || c == '\t' || c == '\r' || c == '\n' {
			break
		}
		if c == '{' || c == '[' || c == '"' {
			s.bad = true
			return nil, nil, false, false
		}
		s.i++
	}
	if s.i == start {
		s.bad = true
		return nil, nil, false, false
	}
	return key, s.b[start:s.i], false, true
}

// str reads a string with no escapes and only ASCII.
func (s *flatScanner) str() ([]byte, bool) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil, false
	}
	s.i++
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			v := s.b[start:s.i]
			s.i++
			return v, true
		case c == '\\' || c < 0x20 || c >= 0x80:
			return nil, false
		}
		s.i++
	}
	return nil, false
}

// vocabulary are the strings most records repeat: kinds, outcomes, delay
// reasons, the call site.
var vocabulary = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{KindCharge, KindReuse, OutcomeNew, OutcomeReplay, OutcomeConflict, OutcomeMismatch,
		OutcomeUnavailable, OutcomeRejected, OutcomeServerError, OutcomeTimeout, OutcomeNetwork, OutcomeBudget,
		OutcomeDropped, ReasonFirst, ReasonBackoff, ReasonRetryAfter, ReasonReconcile} {
		m[s] = s
	}
	return m
}()

// intern returns a vocabulary word without allocating, else a new string.
func intern(b []byte) string {
	if s, ok := vocabulary[string(b)]; ok {
		return s
	}
	return string(b)
}

// Field setters: each returns false for a value of the wrong kind, which
// sends the line to encoding/json.

func setString(dst *string, val []byte, str bool) bool {
	switch {
	case str:
		*dst = intern(val)
	case string(val) != "null":
		return false
	}
	return true
}

func setInt(dst *int, val []byte, str bool) bool {
	var x int64
	if !setInt64(&x, val, str) {
		return false
	}
	if string(val) != "null" {
		*dst = int(x)
	}
	return true
}

func setInt64(dst *int64, val []byte, str bool) bool {
	if str {
		return false
	}
	if string(val) == "null" {
		return true
	}
	if !jsonNumber(val) {
		return false
	}
	x, err := strconv.ParseInt(string(val), 10, 64)
	if err != nil {
		return false
	}
	*dst = x
	return true
}

func setFloat(dst *float64, val []byte, str bool) bool {
	if str {
		return false
	}
	if string(val) == "null" {
		return true
	}
	x, err := strconv.ParseFloat(string(val), 64)
	if err != nil || !jsonNumber(val) {
		return false
	}
	*dst = x
	return true
}

// jsonNumber says whether val is a number as JSON writes one: -?int frac?
// exp?, the int without leading zeros (strconv also takes "+1", "01",
// "Inf", hex and underscores, which encoding/json refuses).
func jsonNumber(val []byte) bool {
	i := 0
	if i < len(val) && val[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(val) && val[i] >= '0' && val[i] <= '9' {
			i++
			n++
		}
		return n
	}
	start := i
	if n := digits(); n == 0 || (n > 1 && val[start] == '0') {
		return false
	}
	if i < len(val) && val[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(val) && (val[i] == 'e' || val[i] == 'E') {
		i++
		if i < len(val) && (val[i] == '+' || val[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(val)
}

func setBool(dst *bool, val []byte, str bool) bool {
	if str {
		return false
	}
	switch string(val) {
	case "true":
		*dst = true
	case "false":
		*dst = false
	case "null":
	default:
		return false
	}
	return true
}

func setTime(dst *time.Time, val []byte, str bool) bool {
	if !str {
		return string(val) == "null"
	}
	t, err := time.Parse(time.RFC3339Nano, string(val))
	if err != nil {
		return false
	}
	*dst = t
	return true
}

// decodeFlat walks a flat JSON object's fields through field, which
// reports whether it took the field; false (or a malformed line) hands the
// line to encoding/json.
func decodeFlat(b []byte, field func(k, v []byte, str bool) bool) bool {
	s := flatScanner{b: b}
	if !s.open() {
		return false
	}
	for {
		k, v, str, ok := s.next()
		if !ok {
			return !s.bad
		}
		if !field(k, v, str) {
			return false
		}
	}
}

func (a *Attempt) decodeLine(b []byte) bool {
	return decodeFlat(b, func(k, v []byte, str bool) bool {
		switch string(k) {
		case "op":
			return setInt(&a.Op, v, str)
		case "kind":
			return setString(&a.Kind, v, str)
		case "sender":
			return setInt(&a.Sender, v, str)
		case "call_site":
			return setString(&a.CallSite, v, str)
		case "merchant":
			return setString(&a.Merchant, v, str)
		case "key":
			return setString(&a.Key, v, str)
		case "attempt":
			return setInt(&a.Attempt, v, str)
		case "delay_ms":
			return setFloat(&a.DelayMS, v, str)
		case "delay_reason":
			return setString(&a.DelayReason, v, str)
		case "cap_ms":
			return setFloat(&a.CapMS, v, str)
		case "retry_after_ms":
			return setFloat(&a.RetryAfterMS, v, str)
		case "status":
			return setInt(&a.Status, v, str)
		case "outcome":
			return setString(&a.Outcome, v, str)
		case "replayed":
			return setBool(&a.Replayed, v, str)
		case "charge_id":
			return setString(&a.ChargeID, v, str)
		case "body_sha256":
			return setString(&a.BodySHA256, v, str)
		case "error":
			return setString(&a.Error, v, str)
		case "intended":
			return setTime(&a.Intended, v, str)
		case "start":
			return setTime(&a.Start, v, str)
		case "end":
			return setTime(&a.End, v, str)
		}
		return false // a key the fast path does not know: encoding/json decides
	})
}

func (o *Op) decodeLine(b []byte) bool {
	return decodeFlat(b, func(k, v []byte, str bool) bool {
		switch string(k) {
		case "op":
			return setInt(&o.Op, v, str)
		case "kind":
			return setString(&o.Kind, v, str)
		case "merchant":
			return setString(&o.Merchant, v, str)
		case "key":
			return setString(&o.Key, v, str)
		case "amount":
			return setInt64(&o.Amount, v, str)
		case "body_sha256":
			return setString(&o.BodySHA256, v, str)
		case "senders":
			return setInt(&o.Senders, v, str)
		case "race":
			return setBool(&o.Race, v, str)
		case "reuse_of":
			return setInt(&o.ReuseOf, v, str)
		}
		return false // a key the fast path does not know: encoding/json decides
	})
}

func (r *LedgerRow) decodeLine(b []byte) bool {
	return decodeFlat(b, func(k, v []byte, str bool) bool {
		switch string(k) {
		case "merchant":
			return setString(&r.Merchant, v, str)
		case "key":
			return setString(&r.Key, v, str)
		case "amount":
			if string(v) == "null" && !str {
				r.Amount = nil
				return true
			}
			var x int64
			if !setInt64(&x, v, str) {
				return false
			}
			r.Amount = &x
			return true
		case "effects":
			return setInt64(&r.Effects, v, str)
		}
		return false // a key the fast path does not know: encoding/json decides
	})
}
