package attack

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/paytest/paytest/internal/rundir"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paytest/paytest/attack/client"
	"github.com/paytest/paytest/attack/fault"
	"github.com/paytest/paytest/attack/plan"
	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/pgembed"
	"github.com/paytest/paytest/internal/toxiembed"
	"github.com/paytest/paytest/target/consumer"
	"github.com/paytest/paytest/target/idemcache"
	"github.com/paytest/paytest/target/outbox"
	"github.com/paytest/paytest/target/stack"
	"github.com/paytest/paytest/verify"
)

var (
	_ fault.Components = (*stack.Stack)(nil)
	_ fault.Redis      = (*redisCache)(nil)
	_ fault.Publisher  = (*natsPublisher)(nil)
)

// The merchants of the bundled system: two, so keys are scoped per merchant.
var bundledMerchants = []plan.Merchant{
	{Name: "demo", APIKey: "sk_test_demo"},
	{Name: "acme", APIKey: "sk_test_acme"},
}

// startBundled brings up the reference system: infrastructure, a proxy in
// front of NATS that the relay and consumer connect through, the three
// components, and a proxy in front of the charge service for the client.
func startBundled(ctx context.Context, cfg *Config, tp *toxiembed.Server) (_ *system, err error) {
	sys := &system{}
	defer func() {
		if err != nil {
			sys.stop()
		}
	}()
	needRedis := cfg.Profile.Redis
	for _, f := range cfg.faults {
		if f.Fault == rundir.FaultRedisLoss {
			needRedis = true
		}
	}
	dbURL := cfg.DatabaseURL
	if dbURL != "" {
		// A given server may hold earlier runs' rows, which would spoil the
		// counts: the run gets a database of its own there, dropped at the
		// end (its ledger is kept in the run directory). Without the
		// privilege to create one, the given database is used as it is.
		name := fmt.Sprintf("paytest_run_%d", time.Now().UnixNano())
		runURL, err := pgembed.WithDatabase(dbURL, name)
		if err == nil {
			err = pgembed.CreateDatabase(ctx, dbURL, name)
		}
		if err == nil {
			admin := dbURL
			sys.teardown = append(sys.teardown, func() {
				dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				_ = pgembed.DropDatabase(dctx, admin, name)
			})
			dbURL = runURL
			sys.notes = append(sys.notes, "database "+name+" created for this run on the given server")
		} else {
			sys.notes = append(sys.notes, "using the given database as it is (could not create one: "+err.Error()+")")
		}
	}
	infra, err := stack.StartInfra(ctx, stack.InfraConfig{
		DatabaseURL: dbURL, NATSURL: cfg.NATSURL, RedisURL: cfg.RedisURL,
		NeedRedis: needRedis, Log: cfg.Log,
	})
	if err != nil {
		return sys, apperr.Wrap(apperr.EINCONCLUSIVE, err, "starting the infrastructure")
	}
	sys.teardown = append(sys.teardown, infra.Stop)
	if err := cancelled(ctx); err != nil {
		return sys, err
	}

	stream, subject, dlq := cfg.Stream, cfg.Subject, cfg.DLQStream
	if cfg.NATSURL != "" && stream == "" {
		// A shared broker: streams of our own, deleted at the end.
		suffix := strings.ToUpper(fmt.Sprintf("%x", cfg.Seed&0xffffff)) + fmt.Sprintf("_%d", time.Now().UnixNano()%1e6)
		stream, dlq = outbox.DefaultStream+"_"+suffix, "PAYTEST_DLQ_"+suffix
		subject = outbox.DefaultSubject + "." + strings.ToLower(suffix)
		natsURL := infra.NATSURL
		sys.teardown = append(sys.teardown, func() { deleteStreams(natsURL, stream, dlq) })
	}
	if subject == "" {
		subject = outbox.DefaultSubject
	}

	natsAddr, err := hostPort(infra.NATSURL, "4222")
	if err != nil {
		return sys, apperr.Wrap(apperr.EUSAGE, err, "--nats-url")
	}
	np, err := tp.CreateProxy(fault.ProxyNATS, natsAddr)
	if err != nil {
		return sys, apperr.Wrap(apperr.EINCONCLUSIVE, err, "nats proxy")
	}

	extra := map[string][]string{
		stack.Charge:   append([]string(nil), cfg.Profile.Charge...),
		stack.Relay:    append([]string(nil), cfg.Profile.Relay...),
		stack.Consumer: append([]string(nil), cfg.Profile.Consumer...),
	}
	chargeDB := "" // the database proxy's URL, if a fault needs one
	for _, f := range cfg.faults {
		if comp, args := fault.CrashArgs(f, cfg.Ops); comp != "" {
			extra[comp] = append(extra[comp], args...)
		}
		if chargeDB == "" && ((f.Fault == rundir.FaultOutage && f.Target == "") || f.Target == fault.ProxyPostgres) {
			// The charge service reaches its database through a proxy the
			// outage disables (or a latency fault slows).
			u, perr := url.Parse(infra.DatabaseURL)
			if perr != nil || u.Host == "" {
				return sys, apperr.Errorf(apperr.EUSAGE, "a fault on the database proxy needs a URL-form database URL")
			}
			pp, perr := tp.CreateProxy(fault.ProxyPostgres, u.Host)
			if perr != nil {
				return sys, apperr.Wrap(apperr.EINCONCLUSIVE, perr, "postgres proxy")
			}
			u.Host = pp.Listen
			// In the stack's environment, not on a command line (it may
			// hold a password); a restarted charge service keeps it.
			chargeDB = u.String()
		}
	}
	logf, err := os.Create(filepath.Join(cfg.Out, rundir.ComponentsLog))
	if err != nil {
		return sys, apperr.Wrap(apperr.EUSAGE, err, "run directory")
	}
	keys := make([]string, 0, len(bundledMerchants))
	for _, m := range bundledMerchants {
		keys = append(keys, m.Name+"="+m.APIKey)
	}
	st, err := stack.Start(ctx, stack.Config{
		Binary: cfg.Binary, DatabaseURL: infra.DatabaseURL, ChargeDatabaseURL: chargeDB, NATSURL: "nats://" + np.Listen, RedisURL: infra.RedisURL,
		RedisPrefix: strings.ToLower(stream) + ":",
		Stream:      stream, Subject: subject, DLQStream: dlq, APIKeys: keys, Unsafe: cfg.Unsafe,
		Charge: extra[stack.Charge], Relay: extra[stack.Relay], Consumer: extra[stack.Consumer], Log: logf,
	})
	if err != nil {
		logf.Close()
		code := apperr.EINCONCLUSIVE
		if apperr.Code(err) == apperr.EUSAGE { // a component refused its flags (--relay-arg ...)
			code = apperr.EUSAGE
		}
		return sys, apperr.Wrap(code, err, "starting the reference system (see %s)", logf.Name())
	}
	sys.teardown = append(sys.teardown, func() { _ = st.Stop(); _ = logf.Close() })

	cp, err := tp.CreateProxy(fault.ProxyCharge, st.Addr(stack.Charge))
	if err != nil {
		return sys, apperr.Wrap(apperr.EINCONCLUSIVE, err, "charge proxy")
	}
	conns := &freshConns{}
	sys.url = "http://" + cp.Listen + "/charge"
	sys.httpClient = conns.wrap(client.NewHTTPClient(cfg.Concurrency*2), "")
	sys.merchants = bundledMerchants
	sys.env = &fault.Env{
		Proxies: fault.Toxiproxy{Client: tp.Client()}, Components: st, Connections: conns,
	}
	if infra.RedisURL != "" {
		sys.env.Redis = &redisCache{url: infra.RedisURL, prefix: strings.ToLower(stream) + ":", infra: infra}
	}
	sys.env.Publisher = &natsPublisher{url: infra.NATSURL, subject: subject}
	metrics := st.MetricsURLs()
	sys.sources = verify.Sources{
		MetricsURLs: metrics, DatabaseURL: infra.DatabaseURL,
		LedgerQuery: verify.LedgerAmountQuery, EventsQuery: consumer.EventsQuery,
	}
	sys.drain = drainSpec{
		PendingURL: metrics[stack.Relay], EffectsURL: metrics[stack.Consumer],
		EffectsMetric: verify.DefaultSideEffectMetric, Stable: 500 * time.Millisecond,
	}
	if len(cfg.Unsafe) > 0 {
		// A broken system overshoots or loses effects: do not wait for an
		// exact count, only for the count to settle.
		sys.drain.Expected = -1
	}
	if stream == "" {
		stream = outbox.DefaultStream
	}
	bb, err := newBrokerBacklog(infra.NATSURL, stream, durableArg(extra[stack.Consumer]))
	if err != nil {
		return sys, apperr.Wrap(apperr.EINCONCLUSIVE, err, "reading the consumer's backlog on the broker")
	}
	sys.teardown = append(sys.teardown, bb.close)
	sys.drain.Broker = bb.read
	sys.description = fmt.Sprintf("reference system (charge %s via proxy %s, nats %s via proxy %s)",
		st.Addr(stack.Charge), cp.Listen, natsAddr, np.Listen)
	return sys, nil
}

// hostPort extracts host:port from a URL (the first of a comma-separated
// list), adding defPort when it has none.
func hostPort(raw, defPort string) (string, error) {
	raw = strings.TrimSpace(strings.Split(raw, ",")[0])
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	if u.Host == "" {
		return "", fmt.Errorf("%q has no host", raw)
	}
	if u.Port() == "" {
		return net.JoinHostPort(u.Hostname(), defPort), nil
	}
	return u.Host, nil
}

func deleteStreams(natsURL string, names ...string) {
	nc, err := nats.Connect(natsURL, nats.Timeout(2*time.Second))
	if err != nil {
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, n := range names {
		if n != "" {
			_ = js.DeleteStream(ctx, n)
		}
	}
}

// freshConns is the client's transport switch for eat-response: while on,
// every request asks for its own connection (Connection: close), so the
// proxy's per-connection toxicity applies per request.
type freshConns struct {
	n  atomic.Int64
	rt http.RoundTripper
	// host, when set, is the Host header to send (a --target behind the
	// proxy keeps its own name).
	host string
}

var _ fault.Connections = (*freshConns)(nil)

// FreshConnections turns the switch on or off (calls nest).
func (f *freshConns) FreshConnections(on bool) {
	if on {
		f.n.Add(1)
	} else {
		f.n.Add(-1)
	}
}

func (f *freshConns) wrap(hc *http.Client, host string) *http.Client {
	f.rt = hc.Transport
	if f.rt == nil {
		f.rt = http.DefaultTransport
	}
	f.host = host
	c := *hc
	c.Transport = f
	return &c
}

// RoundTrip implements http.RoundTripper.
func (f *freshConns) RoundTrip(req *http.Request) (*http.Response, error) {
	if f.n.Load() > 0 || f.host != "" {
		r := req.Clone(req.Context())
		if f.n.Load() > 0 {
			r.Close = true
		}
		if f.host != "" {
			r.Host = f.host
		}
		req = r
	}
	return f.rt.RoundTrip(req)
}

// CloseIdleConnections passes through to the wrapped transport.
func (f *freshConns) CloseIdleConnections() {
	if c, ok := f.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// redisCache is the redis-loss fault's handle on the charge service's cache.
type redisCache struct {
	url    string
	prefix string // this run's keys only: the Redis may be shared
	infra  *stack.Infra
}

// Flush deletes every key of this run's cache, and nothing else.
func (r *redisCache) Flush(ctx context.Context) error {
	c, err := idemcache.New(idemcache.Config{URL: r.url, Prefix: r.prefix})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Flush(ctx)
	return err
}

// Restart restarts the embedded Redis empty.
func (r *redisCache) Restart(ctx context.Context) error { return r.infra.RestartRedis(ctx) }

// natsPublisher publishes raw events straight to the broker (not through
// the proxy), for the poison fault.
type natsPublisher struct {
	url, subject string
}

// Publish publishes one message on the charges subject and waits for the
// stream's ack.
func (n *natsPublisher) Publish(ctx context.Context, data []byte) error {
	nc, err := nats.Connect(n.url, nats.Timeout(2*time.Second))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	_, err = js.Publish(ctx, n.subject, data)
	return err
}

// durableArg is the consumer's durable name: the last --durable among its
// extra arguments, else the consumer's default.
func durableArg(args []string) string {
	name := consumer.DefaultDurable
	for i, a := range args {
		switch {
		case strings.HasPrefix(a, "--durable="):
			name = strings.TrimPrefix(a, "--durable=")
		case a == "--durable" && i+1 < len(args):
			name = args[i+1]
		}
	}
	return name
}

// brokerReader reads the consumer's durable state straight from the broker
// (not through the proxy a broker-cut disables).
type brokerReader struct {
	nc              *nats.Conn
	js              jetstream.JetStream
	stream, durable string
}

func newBrokerBacklog(natsURL, stream, durable string) (*brokerReader, error) {
	nc, err := nats.Connect(natsURL, nats.Timeout(2*time.Second), nats.MaxReconnects(-1))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &brokerReader{nc: nc, js: js, stream: stream, durable: durable}, nil
}

// read returns the consumer's unacknowledged and undelivered counts.
func (b *brokerReader) read(ctx context.Context) (brokerBacklog, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := b.js.Consumer(ctx, b.stream, b.durable)
	if err != nil {
		return brokerBacklog{}, fmt.Errorf("consumer %s on stream %s: %w", b.durable, b.stream, err)
	}
	info := c.CachedInfo()
	return brokerBacklog{AckPending: info.NumAckPending, Pending: info.NumPending, Redelivered: info.NumRedelivered}, nil
}

func (b *brokerReader) close() { b.nc.Close() }
