package attack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"time"

	"github.com/paytest/paytest/attack/client"
	"github.com/paytest/paytest/attack/fault"
	"github.com/paytest/paytest/attack/plan"
	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/toxiembed"
	"github.com/paytest/paytest/verify"
)

// startTarget puts the toxiproxy in front of a team's endpoint: the client
// sends to the proxy, which forwards TCP to the target (TLS stays end to
// end, with the target's own server name).
func startTarget(ctx context.Context, cfg *Config, tp *toxiembed.Server) (*system, error) {
	t, ev := &cfg.Target, &cfg.Evidence
	u, err := parseTarget(t.URL)
	if err != nil {
		return nil, err
	}
	def := "80"
	if u.Scheme == "https" {
		def = "443"
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), def)
	}
	// Reachable at all? An unreachable target is inconclusive, not a verdict.
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, apperr.Wrap(apperr.EINCONCLUSIVE, err, "--target %s is unreachable", t.URL)
	}
	conn.Close()
	p, err := tp.CreateProxy(fault.ProxyCharge, addr)
	if err != nil {
		return nil, apperr.Wrap(apperr.EINCONCLUSIVE, err, "target proxy")
	}
	proxied := *u
	proxied.Host = p.Listen
	sys := &system{
		url:        proxied.String(),
		httpClient: (&hostTransport{}).wrap(targetHTTPClient(u, cfg.Plan.idleConns(), t.RootCAs), targetHost(u)),
		merchants:  []plan.Merchant{{Name: "target"}},
		env: &fault.Env{
			Proxies: fault.Toxiproxy{Client: tp.Client()},
		},
		description: fmt.Sprintf("target %s via proxy %s", t.URL, p.Listen),
	}
	if t.KillCmd != "" || t.RestartCmd != "" {
		sys.env.Components = &commands{kill: t.KillCmd, restart: t.RestartCmd}
	}
	sys.sources = verify.Sources{
		HTTPClient:    evidenceClient(t.RootCAs),
		PrometheusURL: ev.PrometheusURL, SideEffectMetric: ev.SideEffectMetric, SideEffectQuery: ev.SideEffectQuery,
		DatabaseURL: ev.DatabaseURL, LedgerQuery: ev.LedgerQuery,
	}
	sys.drain = targetDrain(ev)
	if ev.MetricsURL != "" {
		sys.sources.MetricsURLs = map[string]string{"target": ev.MetricsURL}
	} else if ev.PrometheusURL != "" {
		// Have Collect wait for a scrape newer than the run.
		sys.sources.PrometheusWait = 30 * time.Second
	}
	return sys, nil
}

// targetHTTPClient is the client's HTTP client for u: it dials the proxy
// but verifies an https target's own name, trusting roots when set.
func targetHTTPClient(u *url.URL, idle int, roots *x509.CertPool) *http.Client {
	hc := client.NewHTTPClient(idle)
	if u.Scheme == "https" {
		tr := hc.Transport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12, RootCAs: roots}
		hc.Transport = tr
	}
	return hc
}

// targetHost is the Host header a request to u keeps through the proxy.
func targetHost(u *url.URL) string {
	if u.Port() == "" {
		return u.Hostname()
	}
	return u.Host
}

// targetDrain says how to wait for a team's endpoint's side effects to
// settle: on its /metrics page, else through its Prometheus.
func targetDrain(ev *EvidenceConfig) drainSpec {
	metric := ev.SideEffectMetric
	if metric == "" {
		metric = verify.DefaultSideEffectMetric
	}
	switch {
	case ev.MetricsURL != "":
		return drainSpec{EffectsURL: ev.MetricsURL, EffectsMetric: metric, Stable: time.Second, Expected: -1}
	case ev.PrometheusURL != "":
		q := ev.SideEffectQuery
		if q == "" {
			q = "sum(" + metric + ")" // what Collect asks for too
		}
		// Prometheus lags the target by a scrape: wait for the count to
		// stop moving for longer than a usual scrape interval.
		return drainSpec{PrometheusURL: ev.PrometheusURL, EffectsQuery: q, Stable: 5 * time.Second, Expected: -1}
	}
	return drainSpec{}
}

// parseTarget parses a Target URL, refusing (EUSAGE) all but http and
// https URLs with a host.
func parseTarget(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, apperr.Errorf(apperr.EUSAGE, "--target %q: want an http:// or https:// URL", raw)
	}
	return u, nil
}

// commands kills and restarts a team's system with its own shell commands.
type commands struct {
	kill, restart string
}

var _ fault.Components = (*commands)(nil)

// Kill runs --kill-cmd with PAYTEST_COMPONENT set to name.
func (c *commands) Kill(name string) error {
	if c.kill == "" {
		return apperr.Errorf(apperr.EUSAGE, "the profile kills %s but no --kill-cmd was given", name)
	}
	return c.run(context.Background(), c.kill, name)
}

// Restart runs --restart-cmd with PAYTEST_COMPONENT set to name.
func (c *commands) Restart(ctx context.Context, name string, _ ...string) error {
	if c.restart == "" {
		return nil
	}
	return c.run(ctx, c.restart, name)
}

// Exited cannot be known for a team's process.
func (c *commands) Exited(string) <-chan struct{} { return nil }

func (c *commands) run(ctx context.Context, script, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", script)
	cmd.Env = append(cmd.Environ(), "PAYTEST_COMPONENT="+name)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", script, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// evidenceClient reads metrics pages and Prometheus, trusting roots when
// set (a team's private CA).
func evidenceClient(roots *x509.CertPool) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if roots != nil {
		t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: t}
}
