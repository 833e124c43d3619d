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
// faults is the run's schedule: the crash points and proxies it needs are
// set up before the components start.
func startBundled(ctx context.Context, cfg *Config, faults []rundir.FaultSpec, tp *toxiembed.Server) (_ *system, err error) {
	b := &bundledRun{cfg: cfg, faults: faults, tp: tp, sys: &system{}}
	defer func() {
		if err != nil {
			b.sys.stop()
		}
	}()
	if err := b.startInfra(ctx); err != nil {
		return b.sys, err
	}
	b.nameStreams()
	natsAddr, natsProxy, err := b.natsProxy()
	if err != nil {
		return b.sys, err
	}
	extra, chargeDB, err := b.componentArgs()
	if err != nil {
		return b.sys, err
	}
	st, err := b.startStack(ctx, "nats://"+natsProxy, chargeDB, extra)
	if err != nil {
		return b.sys, err
	}
	cp, err := tp.CreateProxy(fault.ProxyCharge, st.Addr(stack.Charge))
	if err != nil {
		return b.sys, apperr.Wrap(apperr.EINCONCLUSIVE, err, "charge proxy")
	}
	b.wire(st, "http://"+cp.Listen+"/charge")
	if err := b.watchBroker(durableArg(extra[stack.Consumer])); err != nil {
		return b.sys, err
	}
	b.sys.description = fmt.Sprintf("reference system (charge %s via proxy %s, nats %s via proxy %s)",
		st.Addr(stack.Charge), cp.Listen, natsAddr, natsProxy)
	return b.sys, nil
}

// bundledRun is the reference system being brought up, step by step;
// each step adds its own teardown to sys.
type bundledRun struct {
	cfg    *Config
	faults []rundir.FaultSpec
	tp     *toxiembed.Server
	sys    *system
	infra  *stack.Infra
	// The broker's streams: empty stream and dlq mean the defaults.
	stream, subject, dlq string
}

// startInfra starts (or connects to) Postgres, NATS and, when a fault or
// the profile needs one, Redis.
func (b *bundledRun) startInfra(ctx context.Context) error {
	needRedis := b.cfg.Profile.Redis
	for _, f := range b.faults {
		if f.Fault == rundir.FaultRedisLoss {
			needRedis = true
		}
	}
	infra, err := stack.StartInfra(ctx, stack.InfraConfig{
		DatabaseURL: b.runDatabase(ctx), NATSURL: b.cfg.Bundled.NATSURL, RedisURL: b.cfg.Bundled.RedisURL,
		NeedRedis: needRedis, Log: b.cfg.Log,
	})
	if err != nil {
		return apperr.Wrap(apperr.EINCONCLUSIVE, err, "starting the infrastructure")
	}
	b.infra = infra
	b.sys.teardown = append(b.sys.teardown, infra.Stop)
	return cancelled(ctx)
}

// runDatabase is the database URL for the system: empty (embedded), or on
// a given server a database of the run's own, dropped at the end (its
// ledger is kept in the run directory), since the server may hold earlier
// runs' rows, which would spoil the counts. Without the privilege to
// create one, the given database is used as it is.
func (b *bundledRun) runDatabase(ctx context.Context) string {
	dbURL := b.cfg.Bundled.DatabaseURL
	if dbURL == "" {
		return ""
	}
	name := fmt.Sprintf("paytest_run_%d", time.Now().UnixNano())
	runURL, err := pgembed.WithDatabase(dbURL, name)
	if err == nil {
		err = pgembed.CreateDatabase(ctx, dbURL, name)
	}
	if err != nil {
		b.sys.notes = append(b.sys.notes, "using the given database as it is (could not create one: "+err.Error()+")")
		return dbURL
	}
	b.sys.teardown = append(b.sys.teardown, func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = pgembed.DropDatabase(dctx, dbURL, name)
	})
	b.sys.notes = append(b.sys.notes, "database "+name+" created for this run on the given server")
	return runURL
}

// nameStreams picks the broker's streams: on a shared broker, streams of
// the run's own, deleted at the end.
func (b *bundledRun) nameStreams() {
	b.subject = outbox.DefaultSubject
	if b.cfg.Bundled.NATSURL == "" {
		return
	}
	suffix := strings.ToUpper(fmt.Sprintf("%x", b.cfg.Plan.Seed&0xffffff)) + fmt.Sprintf("_%d", time.Now().UnixNano()%1e6)
	b.stream, b.dlq = outbox.DefaultStream+"_"+suffix, "PAYTEST_DLQ_"+suffix
	b.subject = outbox.DefaultSubject + "." + strings.ToLower(suffix)
	natsURL, stream, dlq := b.infra.NATSURL, b.stream, b.dlq
	b.sys.teardown = append(b.sys.teardown, func() { deleteStreams(natsURL, stream, dlq) })
}

// natsProxy puts a proxy in front of the broker, for the relay and the
// consumer (a broker-cut disables it).
func (b *bundledRun) natsProxy() (natsAddr, listen string, err error) {
	natsAddr, err = hostPort(b.infra.NATSURL, "4222")
	if err != nil {
		return "", "", apperr.Wrap(apperr.EUSAGE, err, "--nats-url")
	}
	np, err := b.tp.CreateProxy(fault.ProxyNATS, natsAddr)
	if err != nil {
		return "", "", apperr.Wrap(apperr.EINCONCLUSIVE, err, "nats proxy")
	}
	return natsAddr, np.Listen, nil
}

// componentArgs are each component's extra flags: the profile's, then
// the crash points the faults arm. chargeDB is the URL of a proxy in
// front of the database when a fault acts on it (empty otherwise).
func (b *bundledRun) componentArgs() (extra map[string][]string, chargeDB string, err error) {
	prof := b.cfg.Profile
	extra = map[string][]string{
		stack.Charge:   append([]string(nil), prof.Charge...),
		stack.Relay:    append([]string(nil), prof.Relay...),
		stack.Consumer: append([]string(nil), prof.Consumer...),
	}
	for _, f := range b.faults {
		if comp, args := fault.CrashArgs(f, b.cfg.Plan.Ops); comp != "" {
			extra[comp] = append(extra[comp], args...)
		}
		if chargeDB == "" && ((f.Fault == rundir.FaultOutage && f.Target == "") || f.Target == fault.ProxyPostgres) {
			if chargeDB, err = b.databaseProxy(); err != nil {
				return nil, "", err
			}
		}
	}
	return extra, chargeDB, nil
}

// databaseProxy puts a proxy between the charge service and its database,
// which the outage disables (or a latency fault slows), and returns the
// URL through it.
func (b *bundledRun) databaseProxy() (string, error) {
	u, err := url.Parse(b.infra.DatabaseURL)
	if err != nil || u.Host == "" {
		return "", apperr.Errorf(apperr.EUSAGE, "a fault on the database proxy needs a URL-form database URL")
	}
	pp, err := b.tp.CreateProxy(fault.ProxyPostgres, u.Host)
	if err != nil {
		return "", apperr.Wrap(apperr.EINCONCLUSIVE, err, "postgres proxy")
	}
	u.Host = pp.Listen
	// In the stack's environment, not on a command line (it may hold a
	// password); a restarted charge service keeps it.
	return u.String(), nil
}

// startStack starts the three components, their output in the run
// directory's components log.
func (b *bundledRun) startStack(ctx context.Context, natsURL, chargeDB string, extra map[string][]string) (*stack.Stack, error) {
	logf, err := os.Create(filepath.Join(b.cfg.Out, rundir.ComponentsLog))
	if err != nil {
		return nil, apperr.Wrap(apperr.EUSAGE, err, "run directory")
	}
	keys := make([]string, 0, len(bundledMerchants))
	for _, m := range bundledMerchants {
		keys = append(keys, m.Name+"="+m.APIKey)
	}
	st, err := stack.Start(ctx, stack.Config{
		Binary: b.cfg.Bundled.binary, DatabaseURL: b.infra.DatabaseURL, ChargeDatabaseURL: chargeDB, NATSURL: natsURL,
		RedisURL: b.infra.RedisURL, RedisPrefix: b.redisPrefix(),
		Stream: b.stream, Subject: b.subject, DLQStream: b.dlq, APIKeys: keys, Unsafe: b.cfg.Bundled.Unsafe,
		Charge: extra[stack.Charge], Relay: extra[stack.Relay], Consumer: extra[stack.Consumer], Log: logf,
	})
	if err != nil {
		logf.Close()
		code := apperr.EINCONCLUSIVE
		if apperr.Code(err) == apperr.EUSAGE { // a component refused its flags (--relay-arg ...)
			code = apperr.EUSAGE
		}
		return nil, apperr.Wrap(code, err, "starting the reference system (see %s)", logf.Name())
	}
	b.sys.teardown = append(b.sys.teardown, func() { _ = st.Stop(); _ = logf.Close() })
	return st, nil
}

// redisPrefix scopes the charge service's cache keys to this run's stream
// (the Redis may be shared).
func (b *bundledRun) redisPrefix() string { return strings.ToLower(b.stream) + ":" }

// wire points the system's client, faults, evidence and drain at the
// running stack, the client sending to chargeURL.
func (b *bundledRun) wire(st *stack.Stack, chargeURL string) {
	sys, infra := b.sys, b.infra
	sys.url = chargeURL
	sys.httpClient = client.NewHTTPClient(b.cfg.Plan.idleConns())
	sys.merchants = bundledMerchants
	sys.env = &fault.Env{
		Proxies: fault.Toxiproxy{Client: b.tp.Client()}, Components: st,
	}
	if infra.RedisURL != "" {
		sys.env.Redis = &redisCache{url: infra.RedisURL, prefix: b.redisPrefix(), infra: infra}
	}
	sys.env.Publisher = &natsPublisher{url: infra.NATSURL, subject: b.subject}
	metrics := st.MetricsURLs()
	sys.sources = verify.Sources{
		MetricsURLs: metrics, DatabaseURL: infra.DatabaseURL,
		LedgerQuery: verify.LedgerAmountQuery, EventsQuery: consumer.EventsQuery,
	}
	sys.drain = drainSpec{
		PendingURL: metrics[stack.Relay], EffectsURL: metrics[stack.Consumer],
		EffectsMetric: verify.DefaultSideEffectMetric, Stable: 500 * time.Millisecond,
	}
	if len(b.cfg.Bundled.Unsafe) > 0 {
		// A broken system overshoots or loses effects: do not wait for an
		// exact count, only for the count to settle.
		sys.drain.Expected = -1
	}
}

// watchBroker reads the consumer's backlog (of durable) straight from the
// broker, for the drain.
func (b *bundledRun) watchBroker(durable string) error {
	stream := b.stream
	if stream == "" {
		stream = outbox.DefaultStream
	}
	bb, err := newBrokerBacklog(b.infra.NATSURL, stream, durable)
	if err != nil {
		return apperr.Wrap(apperr.EINCONCLUSIVE, err, "reading the consumer's backlog on the broker")
	}
	b.sys.teardown = append(b.sys.teardown, bb.close)
	b.sys.drain.Broker = bb.read
	return nil
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

// hostTransport sends each request with a Host header of its own, when
// host is set: a --target behind the proxy keeps its own name.
type hostTransport struct {
	rt   http.RoundTripper
	host string
}

// wrap returns hc sending through t.
func (t *hostTransport) wrap(hc *http.Client, host string) *http.Client {
	t.rt = hc.Transport
	if t.rt == nil {
		t.rt = http.DefaultTransport
	}
	t.host = host
	c := *hc
	c.Transport = t
	return &c
}

// RoundTrip implements http.RoundTripper.
func (t *hostTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.host != "" {
		req = req.Clone(req.Context())
		req.Host = t.host
	}
	return t.rt.RoundTrip(req)
}

// CloseIdleConnections passes through to the wrapped transport.
func (t *hostTransport) CloseIdleConnections() {
	if c, ok := t.rt.(interface{ CloseIdleConnections() }); ok {
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
