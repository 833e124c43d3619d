package main

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/paytest/paytest/attack"
	"github.com/paytest/paytest/attack/client"
	"github.com/paytest/paytest/attack/plan"
	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/redact"
)

// Everything here runs before a command starts anything, so that a bad
// value is a usage error (exit 2) at once rather than a failure after the
// whole run.

// parseHeaders turns --header "Name: value" flags into a header. A name must
// be an HTTP token and a value must hold no control character but a tab: a
// CR or LF would split the request (or make Go's client refuse every one of
// them, late).
func parseHeaders(vals []string) (http.Header, error) {
	h := http.Header{}
	for _, raw := range vals {
		k, val, ok := strings.Cut(raw, ":")
		k, val = strings.TrimSpace(k), strings.TrimSpace(val)
		switch {
		case !ok || k == "":
			return nil, apperr.Errorf(apperr.EUSAGE, "--header %q: want Name: value", redactHeader(raw))
		case !validHeaderName(k):
			return nil, apperr.Errorf(apperr.EUSAGE, "--header %q: %q is not a valid header name (letters, digits and !#$%%&'*+-.^_`|~ only)", redactHeader(raw), k)
		case !validHeaderValue(val):
			return nil, apperr.Errorf(apperr.EUSAGE, "--header %q: the value holds a control character (CR, LF or NUL)", k)
		}
		h.Add(k, val)
	}
	return h, nil
}

// redactHeader keeps a header's name for an error message, never its value.
func redactHeader(raw string) string {
	name, _, ok := strings.Cut(raw, ":")
	if !ok {
		if len(raw) > 40 {
			return raw[:40] + "..."
		}
		return raw
	}
	return name + ": " + redact.Mask
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}

// validHeaderValue reports whether s holds no control character but HTAB.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// checkURL returns a usage error unless raw is an absolute URL with a host
// and one of schemes. The message never repeats a password.
func checkURL(flag, raw string, schemes ...string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return apperr.Errorf(apperr.EUSAGE, "--%s %q: not a URL", flag, redact.String(raw))
	}
	if !slices.Contains(schemes, strings.ToLower(u.Scheme)) || u.Host == "" {
		return apperr.Errorf(apperr.EUSAGE, "--%s %q: want a URL with a host (%s://)", flag, redact.String(raw), strings.Join(schemes, ":// or "))
	}
	return nil
}

// checkDatabaseURL accepts what pgx accepts: a postgres:// URL or a
// keyword=value connection string.
func checkDatabaseURL(flag, raw string) error {
	if scheme, _, ok := strings.Cut(raw, "://"); ok {
		// No host is fine: postgres:///db?host=/run/postgresql is a socket.
		if s := strings.ToLower(scheme); s != "postgres" && s != "postgresql" {
			return apperr.Errorf(apperr.EUSAGE, "--%s %q: want a postgres:// URL or a keyword=value connection string", flag, redact.String(raw))
		}
	}
	if _, err := pgx.ParseConfig(raw); err != nil {
		return apperr.Errorf(apperr.EUSAGE, "--%s %q: not a PostgreSQL connection URL or string", flag, redact.String(raw))
	}
	return nil
}

// checkNATSURL accepts a comma-separated list of nats://, tls://, ws:// or
// wss:// URLs, as the NATS client does.
func checkNATSURL(flag, raw string) error {
	for _, one := range strings.Split(raw, ",") {
		if err := checkURL(flag, strings.TrimSpace(one), "nats", "tls", "ws", "wss"); err != nil {
			return err
		}
	}
	return nil
}

// checkRedisURL accepts what go-redis accepts: redis://, rediss:// or unix://.
func checkRedisURL(flag, raw string) error {
	if _, err := redis.ParseURL(raw); err != nil {
		return apperr.Errorf(apperr.EUSAGE, "--%s %q: want a URL (redis://, rediss:// or unix://)", flag, redact.String(raw))
	}
	return nil
}

// checkConfigKeys refuses a --config file with a key that is not a flag of
// cmd, naming each unknown key (with the closest flag when there is one):
// a misspelt key would otherwise be ignored without a word.
func checkConfigKeys(cmd *cobra.Command, path string) error {
	file := viper.New()
	file.SetConfigFile(path)
	if err := file.ReadInConfig(); err != nil {
		return apperr.Wrap(apperr.EUSAGE, err, "reading config file %s", path)
	}
	var unknown []string
	seen := map[string]bool{}
	for _, key := range file.AllKeys() {
		top, _, _ := strings.Cut(key, ".")
		if seen[top] {
			continue
		}
		seen[top] = true
		if f := cmd.Flags().Lookup(top); f != nil && top != "config" && top != "help" {
			continue
		}
		desc := fmt.Sprintf("%q", top)
		if s := closestFlag(cmd, top); s != "" {
			desc += fmt.Sprintf(" (did you mean %q?)", s)
		}
		unknown = append(unknown, desc)
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	return apperr.Errorf(apperr.EUSAGE, "config file %s: unknown key(s) %s: keys are the flag names of %s (see %s --help)",
		path, strings.Join(unknown, ", "), cmd.CommandPath(), cmd.CommandPath())
}

// closestFlag returns the flag name of cmd nearest to name, within two
// edits, or "".
func closestFlag(cmd *cobra.Command, name string) string {
	best, bestD := "", 3
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if d := editDistance(name, f.Name); d < bestD {
			best, bestD = f.Name, d
		}
	})
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// maxConcurrency bounds --concurrency: each sender is a goroutine holding
// a connection of its own, and far more of them than this only makes the
// client, not the endpoint, the bottleneck (and runs out of file
// descriptors).
const maxConcurrency = 10_000

// checkAttack refuses an attack configuration that cannot run as asked,
// before anything is started: counts out of range, a retry setting that
// would mean something else than it says, and URLs of the wrong kind. It
// refuses zero values too, which attack.Run would take for its defaults:
// from the command line they were asked for.
func checkAttack(cfg attack.Config) error {
	if err := checkPlan(cfg.Plan); err != nil {
		return err
	}
	if err := checkClient(cfg.Client); err != nil {
		return err
	}
	switch e := cfg.Evidence; {
	case e.ReconcileTimeout <= 0:
		return apperr.Errorf(apperr.EUSAGE, "--reconcile-timeout %s: must be positive", e.ReconcileTimeout)
	case e.DrainTimeout <= 0:
		return apperr.Errorf(apperr.EUSAGE, "--drain-timeout %s: must be positive", e.DrainTimeout)
	}
	if err := checkAttackURLs(cfg); err != nil {
		return err
	}
	// What the plan and the evidence check of themselves (the open
	// model's pacing, --metrics-listen), before anything starts; the
	// checks across parts wait for attack.Run.
	if err := cfg.Plan.Validate(); err != nil {
		return err
	}
	return cfg.Evidence.Validate()
}

// checkPlan refuses counts out of range and rates outside 0..1.
func checkPlan(p attack.PlanConfig) error {
	switch {
	case p.Ops < 1 || p.Ops > plan.MaxOps:
		return apperr.Errorf(apperr.EUSAGE, "--ops %d: want 1 to %d", p.Ops, plan.MaxOps)
	case p.Concurrency < 1 || p.Concurrency > maxConcurrency:
		return apperr.Errorf(apperr.EUSAGE, "--concurrency %d: want 1 to %d", p.Concurrency, maxConcurrency)
	}
	for _, r := range []struct {
		flag string
		v    float64
	}{{"duplicate-rate", p.DuplicateRate}, {"race-rate", p.RaceRate}, {"reuse-rate", p.ReuseRate}} {
		if !(r.v >= 0 && r.v <= 1) {
			return apperr.Errorf(apperr.EUSAGE, "--%s %v: want 0 to 1", r.flag, r.v)
		}
	}
	if p.DuplicateRate+p.RaceRate > 1 {
		return apperr.Errorf(apperr.EUSAGE, "--duplicate-rate %v + --race-rate %v: at most 1 together (an op is a race or a duplicate, not both)", p.DuplicateRate, p.RaceRate)
	}
	return nil
}

// checkClient refuses a retry setting that would mean something else than
// it says and a key header that is no header name.
func checkClient(c attack.ClientConfig) error {
	switch {
	case c.MaxAttempts == 0 || c.MaxAttempts < client.Unlimited:
		return apperr.Errorf(apperr.EUSAGE, "--max-attempts %d: want 1 or more (1: no retries), or -1 to retry until the deadline", c.MaxAttempts)
	case c.Timeout <= 0:
		return apperr.Errorf(apperr.EUSAGE, "--timeout %s: must be positive", c.Timeout)
	case c.BudgetCapacity < 0:
		return apperr.Errorf(apperr.EUSAGE, "--budget-capacity %g: must not be negative", c.BudgetCapacity)
	case c.MaxRetryAmplification < 0:
		return apperr.Errorf(apperr.EUSAGE, "--max-retry-amplification %g: must not be negative", c.MaxRetryAmplification)
	case !validHeaderName(c.KeyHeader):
		return apperr.Errorf(apperr.EUSAGE, "--key-header %q: not a valid header name", c.KeyHeader)
	}
	return nil
}

// checkAttackURLs checks each URL flag that is set for its scheme.
func checkAttackURLs(cfg attack.Config) error {
	database := cfg.Bundled.DatabaseURL
	if cfg.Target.URL != "" {
		database = cfg.Evidence.DatabaseURL
	}
	checks := []struct {
		flag, val string
		check     func(flag, raw string) error
	}{
		{"target", cfg.Target.URL, httpURL},
		{"metrics-url", cfg.Evidence.MetricsURL, httpURL},
		{"prometheus-url", cfg.Evidence.PrometheusURL, httpURL},
		{"database-url", database, checkDatabaseURL},
		{"nats-url", cfg.Bundled.NATSURL, checkNATSURL},
		{"redis-url", cfg.Bundled.RedisURL, checkRedisURL},
	}
	for _, c := range checks {
		if c.val == "" {
			continue
		}
		if err := c.check(c.flag, c.val); err != nil {
			return err
		}
	}
	return nil
}

// httpURL accepts an http:// or https:// URL with a host.
func httpURL(flag, raw string) error { return checkURL(flag, raw, "http", "https") }
