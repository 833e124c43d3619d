package attack

import (
	"strings"

	"github.com/paytest/paytest/internal/redact"
)

// redactSettings returns a copy of the resolved settings fit for run.yaml:
// every --header value, every password or secret query parameter of a URL,
// every secret name=value in a free value (a component flag such as
// --api-key=...) and the whole value of a setting named like a secret are
// masked. run.yaml is written from it from the first write on, so that a
// run that is interrupted, killed or fails early leaves no secret either.
func redactSettings(settings map[string]any) map[string]any {
	out := make(map[string]any, len(settings))
	for k, v := range settings {
		out[k] = redactSetting(k, v)
	}
	return out
}

// redactSetting masks the secrets of one setting's value.
func redactSetting(key string, v any) any {
	str := redact.String
	switch {
	case key == "header":
		str = redact.Header
	case key == "target" || strings.HasSuffix(key, "-url"):
		str = redact.URL
	case redact.SecretName(key):
		str = func(s string) string {
			if s == "" {
				return s
			}
			return redact.Mask
		}
	}
	switch v := v.(type) {
	case string:
		return str(v)
	case []string:
		out := make([]string, len(v))
		for i, s := range v {
			out[i] = str(s)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = redactSetting(key, e)
		}
		return out
	case map[string]any:
		return redactSettings(v)
	default:
		return v
	}
}
