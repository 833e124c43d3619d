// Package redact removes secrets from what paytest writes down: passwords in
// URLs (user:password@ and query parameters such as ?password= or ?token=),
// keyword=value connection strings, and credential headers. Run files,
// transcripts and error messages go through it, so that a run directory can
// be shared without leaking what the run was given.
package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// Mask replaces every secret.
const Mask = "xxxxx"

// secretName matches a parameter, keyword or flag name whose value is a
// secret: anything naming a password, secret, token, API key, signature or
// credential, and the short names pass, pwd, key, sig and auth.
var secretName = regexp.MustCompile(`(?i)^(?:[a-z0-9_.-]*(?:password|passwd|secret|token|api[_-]?key|signature|credential|session)[a-z0-9_.-]*|pass|pwd|key|sig|auth|authorization)$`)

// SecretName reports whether a parameter, keyword, flag or header named
// name carries a secret value.
func SecretName(name string) bool {
	name = strings.TrimLeft(name, "-")
	return secretName.MatchString(name) || secretHeader(name)
}

// secretHeader reports whether an HTTP header of this name carries a
// credential.
func secretHeader(name string) bool {
	switch strings.ToLower(name) {
	case "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "api-key", "x-auth-token":
		return true
	}
	return false
}

// URL returns raw with its password and every secret query parameter
// masked. Anything that does not parse as a URL is redacted as free text
// (String).
func URL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return String(raw)
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), Mask)
		}
	}
	u.RawQuery = query(u.RawQuery)
	if u.Fragment != "" {
		u.Fragment = String(u.Fragment)
		u.RawFragment = ""
	}
	return u.String()
}

// query masks the secret parameters of a raw query, keeping the others
// byte for byte and in order.
func query(raw string) string {
	if raw == "" {
		return raw
	}
	parts := strings.Split(raw, "&")
	for i, p := range parts {
		k, _, ok := strings.Cut(p, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			name = k
		}
		if ok && SecretName(name) {
			parts[i] = k + "=" + Mask
		}
	}
	return strings.Join(parts, "&")
}

var (
	// userinfo is scheme://user:password@ anywhere in a text.
	userinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://[^/?#@\s:]*):[^@\s/]*@`)
	// keyValue is name=value after a start, a space, a separator of a query
	// or of a flag list; a value may be single-quoted (libpq).
	keyValue = regexp.MustCompile(`(^|[\s?&;,"'])(-{0,2}[A-Za-z0-9_.-]+)=('(?:[^'\\]|\\.)*'|[^\s&;,"']*)`)
	// credentialHeader is "Authorization: ..." (and its kin) in a text.
	credentialHeader = regexp.MustCompile(`(?i)\b(authorization|proxy-authorization|cookie|x-api-key|api-key|x-auth-token)(\s*:\s*)[^\n"']*`)
	// bearer is a bearer or basic credential on its own.
	bearer = regexp.MustCompile(`(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+`)
)

// String masks every secret in a free text: URL passwords, secret
// name=value pairs (query parameters, connection-string keywords, flags
// such as --api-key=...), credential headers and bearer tokens.
func String(s string) string {
	if !strings.ContainsAny(s, "=@:") && !strings.Contains(strings.ToLower(s), "bearer") && !strings.Contains(strings.ToLower(s), "basic") {
		return s
	}
	s = userinfo.ReplaceAllString(s, "${1}:"+Mask+"@")
	s = keyValue.ReplaceAllStringFunc(s, func(m string) string {
		sub := keyValue.FindStringSubmatch(m)
		if !SecretName(sub[2]) {
			return m
		}
		return sub[1] + sub[2] + "=" + Mask
	})
	s = credentialHeader.ReplaceAllString(s, "${1}${2}"+Mask)
	s = bearer.ReplaceAllString(s, "${1} "+Mask)
	return s
}

// Header returns a "Name: value" header line with the value masked: any
// header given on the command line may carry a credential.
func Header(line string) string {
	name, _, ok := strings.Cut(line, ":")
	if !ok {
		return String(line)
	}
	return strings.TrimSpace(name) + ": " + Mask
}
