package rundir

import (
	"math"
	"strconv"
	"time"
)

// lineEncoder is a record that writes its own line without reflection,
// byte for byte as encoding/json's Encoder writes it (HTML characters
// escaped, the newline at the end). appendLine reports false for anything
// it does not take (a string with non-ASCII bytes, a float that is not
// finite, a time that is not strict RFC 3339), and the Writer then encodes
// the record with encoding/json, whose line, or error, stands. The open
// model writes a line per attempt on the sending path, where reflection
// was a visible share of the sender's CPU at high rates.
type lineEncoder interface {
	appendLine(dst []byte) ([]byte, bool)
}

// lineBuf appends one flat JSON object's members; ok turns false at the
// first value it does not take.
type lineBuf struct {
	b     []byte
	first bool
	ok    bool
}

func newLineBuf(dst []byte) lineBuf { return lineBuf{b: append(dst, '{'), first: true, ok: true} }

// key appends the member's name (a plain ASCII constant) and its colon.
func (l *lineBuf) key(k string) {
	if !l.first {
		l.b = append(l.b, ',')
	}
	l.first = false
	l.b = append(l.b, '"')
	l.b = append(l.b, k...)
	l.b = append(l.b, '"', ':')
}

func (l *lineBuf) int(k string, v int) {
	l.key(k)
	l.b = strconv.AppendInt(l.b, int64(v), 10)
}

func (l *lineBuf) bool(k string, v bool) {
	l.key(k)
	l.b = strconv.AppendBool(l.b, v)
}

const hexDigits = "0123456789abcdef"

// str appends s quoted as encoding/json quotes an ASCII string: \" and \\,
// the short escapes for \b \f \n \r \t, \u00XX for other control bytes and
// for <, > and & (HTML-safe, the Encoder's default).
func (l *lineBuf) str(k, s string) {
	l.key(k)
	l.b = append(l.b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			l.ok = false // UTF-8 validation and U+2028/U+2029: encoding/json's
			return
		}
		if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
			continue
		}
		l.b = append(l.b, s[start:i]...)
		switch c {
		case '"', '\\':
			l.b = append(l.b, '\\', c)
		case '\b':
			l.b = append(l.b, '\\', 'b')
		case '\f':
			l.b = append(l.b, '\\', 'f')
		case '\n':
			l.b = append(l.b, '\\', 'n')
		case '\r':
			l.b = append(l.b, '\\', 'r')
		case '\t':
			l.b = append(l.b, '\\', 't')
		default:
			l.b = append(l.b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	l.b = append(l.b, s[start:]...)
	l.b = append(l.b, '"')
}

// float appends f as encoding/json does: the shortest 'f' form, or the
// 'e' form (with a one-digit negative exponent unpadded) below 1e-6 and
// from 1e21.
func (l *lineBuf) float(k string, f float64) {
	l.key(k)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		l.ok = false
		return
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	l.b = strconv.AppendFloat(l.b, f, format, -1, 64)
	if n := len(l.b); format == 'e' && n >= 4 && l.b[n-4] == 'e' && l.b[n-3] == '-' && l.b[n-2] == '0' {
		l.b[n-2] = l.b[n-1]
		l.b = l.b[:n-1]
	}
}

// time appends t as time.Time's MarshalJSON does: quoted RFC 3339 with
// nanoseconds, for a four-digit year and a zone offset under 24 hours
// (the others are MarshalJSON's errors).
func (l *lineBuf) time(k string, t time.Time) {
	l.key(k)
	l.b = append(l.b, '"')
	n0 := len(l.b)
	l.b = t.AppendFormat(l.b, time.RFC3339Nano)
	switch {
	case len(l.b) < n0+5 || l.b[n0+4] != '-':
		l.ok = false
	case l.b[len(l.b)-1] != 'Z':
		z := l.b[len(l.b)-len("Z07:00"):]
		if c := z[0]; c != '+' && c != '-' || 10*(z[1]-'0')+(z[2]-'0') >= 24 {
			l.ok = false
		}
	}
	l.b = append(l.b, '"')
}

// end closes the object and the line.
func (l *lineBuf) end() ([]byte, bool) { return append(l.b, '}', '\n'), l.ok }

// appendLine writes the attempt as its json tags say, omitempty and
// omitzero included.
func (a *Attempt) appendLine(dst []byte) ([]byte, bool) {
	l := newLineBuf(dst)
	l.int("op", a.Op)
	l.str("kind", a.Kind)
	l.int("sender", a.Sender)
	l.str("call_site", a.CallSite)
	if a.Merchant != "" {
		l.str("merchant", a.Merchant)
	}
	l.str("key", a.Key)
	l.int("attempt", a.Attempt)
	l.float("delay_ms", a.DelayMS)
	l.str("delay_reason", a.DelayReason)
	if a.CapMS != 0 {
		l.float("cap_ms", a.CapMS)
	}
	if a.RetryAfterMS != 0 {
		l.float("retry_after_ms", a.RetryAfterMS)
	}
	l.int("status", a.Status)
	l.str("outcome", a.Outcome)
	if a.Replayed {
		l.bool("replayed", a.Replayed)
	}
	if a.ChargeID != "" {
		l.str("charge_id", a.ChargeID)
	}
	if a.BodySHA256 != "" {
		l.str("body_sha256", a.BodySHA256)
	}
	if a.Error != "" {
		l.str("error", a.Error)
	}
	if !a.Intended.IsZero() {
		l.time("intended", a.Intended)
	}
	l.time("start", a.Start)
	l.time("end", a.End)
	return l.end()
}
