package main

import (
	"context"
	"log/slog"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/crashpoint"
	"github.com/paytest/paytest/target/charge"
	"github.com/paytest/paytest/target/chargedemo"
	"github.com/paytest/paytest/target/consumer"
	"github.com/paytest/paytest/target/outbox"
)

func newServeChargeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "charge",
		Short:   "Run the reference charge API (POST /charge)",
		Long:    chargeLong + "\n\n" + readyFileHelp,
		Example: chargeExample,
		Args:    cobra.NoArgs,
		RunE:    runServeCharge,
	}
	f := cmd.Flags()
	endpointFlags(f, "address to listen on, HOST:PORT (port 0 picks a free one; the bound address is logged)",
		"how long to drain in-flight requests on SIGTERM")
	chargeStateFlags(f)
	chargeBrokerFlags(f)
	chargeServerFlags(f)
	f.Bool("demo", false, "walk one request through new, replay, 409 and 422, print each answer, and exit")
	_ = f.MarkHidden("demo")
	return cmd
}

// chargeStateFlags are the flags of the state machine: its database, cache,
// merchants, leases, catalog and deliberate faults.
func chargeStateFlags(f *pflag.FlagSet) {
	f.String("database-url", "", "PostgreSQL URL (default: a throwaway embedded cluster, removed on exit)")
	f.StringArray("api-key", nil, "merchant=secret: a bearer API key and the merchant it names (repeatable; default demo="+charge.DefaultAPIKey+")")
	f.StringArray("crash-at", nil, "SIGKILL this process at a point: "+strings.Join(charge.CrashPoints, "|")+", optionally :N for the N-th pass (repeatable)")
	f.StringArray("unsafe", nil, "break a guarantee on purpose: "+strings.Join(charge.UnsafeModes, ", ")+" (repeatable)")
	f.Duration("lease", charge.DefaultLease, "how long a claimed key stays locked before a retry may take it over")
	f.Duration("processing-delay", 0, "simulated card-processor call between claiming a key and recording the charge (same-key requests meanwhile get 409)")
	f.Duration("retention", charge.DefaultRetention, "how long idempotency keys are kept before the reaper deletes them")
	f.Int32("max-conns", charge.DefaultMaxConns, "database connection pool size")
	f.String("redis-prefix", "", "prefix of every Redis key the cache writes (share one Redis between stacks)")
	f.String("redis-url", "", "Redis URL: a hot tier in front of Postgres for idempotency keys (SET NX claim + cached replays; any miss or Redis failure falls through to Postgres)")
	f.Int("catalog", consumer.DefaultCatalog, "skus the service sells, sku-1 .. sku-N: the consumer's --catalog (others are refused, 400)")
}

// chargeBrokerFlags are the broker flags, used by the dual-write mode only.
func chargeBrokerFlags(f *pflag.FlagSet) {
	f.String("nats-url", "", "NATS URL (dual-write mode only: the service publishes events itself)")
	f.String("subject", outbox.DefaultSubject, "NATS subject for events (dual-write mode only)")
	f.String("stream", outbox.DefaultStream, "JetStream stream (accepted for symmetry with relay and consumer; unused)")
}

// chargeServerFlags are the HTTP server's limits (serverConfig reads them).
func chargeServerFlags(f *pflag.FlagSet) {
	f.Duration("read-header-timeout", charge.DefaultReadHeaderTimeout, "how long a request's headers may take to arrive")
	f.Duration("read-timeout", charge.DefaultReadTimeout, "how long a whole request, headers and body, may take to arrive")
	f.Duration("write-timeout", charge.DefaultWriteTimeout, "how long a request may take from its headers to the end of its answer (at least --read-timeout + "+charge.DefaultRequestTimeout.String()+")")
	f.Duration("idle-timeout", charge.DefaultIdleTimeout, "how long an idle keep-alive connection is kept open")
	f.Int("max-header-bytes", charge.DefaultMaxHeaderBytes, "largest request header section accepted (more is a 431)")
}

// runServeCharge runs the charge service (or its demo) until the command's
// context ends, on an embedded Postgres unless --database-url is given.
func runServeCharge(cmd *cobra.Command, _ []string) error {
	v, log, cfg, err := chargeSetup(cmd)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	dbURL, stopDB, err := embeddedPGForServe(ctx, log, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer stopDB()
	cfg.DatabaseURL = dbURL
	svc, err := charge.New(ctx, cfg)
	if err != nil {
		return err
	}
	defer svc.Close()
	defer startReaper(ctx, svc)()
	log.Info("charge service ready", "lease", cfg.Lease, "retention", cfg.Retention, "merchants", len(cfg.APIKeys),
		"crash_at", strings.Join(v.GetStringSlice("crash-at"), ","), "unsafe", strings.Join(cfg.Unsafe.Modes(), ","))
	if v.GetBool("demo") {
		return chargedemo.Run(ctx, svc, chargedemo.Config{Listen: v.GetString("listen"), Out: cmd.OutOrStdout()})
	}
	srv, err := svc.Server(serverConfig(v))
	if err != nil {
		return err
	}
	return serveServer(ctx, log, endpointOf(v, "charge"), srv, charge.ProblemListener)
}

// chargeSetup resolves the command's settings into its logger and the
// charge service's checked configuration.
func chargeSetup(cmd *cobra.Command) (*viper.Viper, *slog.Logger, charge.Config, error) {
	v, err := settings(cmd, nil)
	if err != nil {
		return nil, nil, charge.Config{}, err
	}
	log, err := newLogger(cmd, v)
	if err != nil {
		return nil, nil, charge.Config{}, err
	}
	cfg, err := chargeConfig(v)
	if err != nil {
		return nil, nil, charge.Config{}, err
	}
	if err := serverConfig(v).Validate(cfg.RequestTimeout); err != nil {
		return nil, nil, charge.Config{}, err
	}
	cfg.Logger = log
	if cfg.Crash != nil {
		cfg.Crash.Notes = func(msg string) { log.Warn(msg) }
	}
	if cfg.RedisURL != "" && (cfg.Unsafe.NoIdempotency || cfg.Unsafe.NonAtomicCreate) {
		log.Warn("--redis-url is ignored in this unsafe mode; the cache fronts only the safe state machine")
	}
	return v, log, cfg, nil
}

// startReaper runs the service's key reaper until ctx ends or the returned
// function is called, which waits for it to stop.
func startReaper(ctx context.Context, svc *charge.Service) func() {
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = svc.Run(rctx) })
	return func() { stop(); wg.Wait() }
}

// chargeLong is the help of serve charge.
const chargeLong = `Run the reference charge API: POST /charge behind an idempotency-key state
machine in PostgreSQL, with a transactional outbox for the relay.

Every (merchant, Idempotency-Key) gets exactly one of:
  200           the first request: the charge as JSON
  200 + Idempotent-Replayed: true
                the same key and body again, once the first finished: the
                stored status, Content-Type and body, byte for byte
  409 + Retry-After   the same key while the first is still in flight
  422           the same key with a different body (compared after decoding:
                key order and whitespace do not matter)
Errors are application/problem+json (RFC 9457): 400 bad key or body (a value
the database cannot store, a NUL in a text, an sku outside the consumer's
catalog sku-1 .. sku-<catalog>, two Authorization headers), 401 missing or
unknown API key, 405 not POST, 413 body over 64 KiB, 431 headers over
--max-header-bytes, 503 + Retry-After while Postgres is unreachable (it
recovers on its own). A refused request claims no key: the same key with a
corrected request is charged.

The API key names the merchant (--api-key merchant=secret, repeatable; the
default is the demo merchant "demo" with the key sk_test_demo). Secrets on a
command line are visible to every user of the machine (ps): put them in the
environment instead, as for every flag: PAYTEST_API_KEY="acme=sk_a,globex=sk_g",
PAYTEST_DATABASE_URL, PAYTEST_REDIS_URL. Keys are scoped per merchant and
compared in constant time. A key claimed by a request that died stays locked
for --lease; then a retry takes it over and completes it exactly once. Keys
are deleted after --retention.

Slow and idle clients cannot hold the service: a request's headers must
arrive within --read-header-timeout and the whole request within
--read-timeout (slower bodies get a 400 and the connection is closed), its
answer must be written within --write-timeout of its headers, and an idle
keep-alive connection is closed after --idle-timeout.

With no --database-url a throwaway PostgreSQL cluster is started from the
machine's binaries and removed on exit. With --redis-url a Redis hot tier
sits in front of Postgres: a SET NX claim answers a concurrent duplicate 409
and cached responses are replayed without a database round trip; any miss,
lost key, timeout or Redis outage falls through to Postgres, which stays the
authority (paytest_idempotency_cache_total{tier,result}). Also served: GET /metrics, /healthz,
/readyz. SIGTERM or Ctrl-C drains in-flight requests, then exits.

--unsafe MODE breaks a guarantee on purpose, so that paytest's checks can be
seen failing: no-idempotency (every request is a new charge),
non-atomic-create (read-then-write keys: races double-charge), dual-write (no
outbox; publish to --nats-url after commit: a crash in between loses it).`

// chargeExample shows serve charge at work.
const chargeExample = `  # on an embedded Postgres, on a fixed port
  paytest serve charge --listen 127.0.0.1:8080

  # a charge, then the same request again (a replay), then a different body (422)
  curl -si -X POST http://127.0.0.1:8080/charge \
    -H 'Authorization: Bearer sk_test_demo' -H 'Idempotency-Key: order-1' \
    -H 'Content-Type: application/json' \
    -d '{"amount":1299,"currency":"EUR","customer":"cus_1","sku":"sku-1","quantity":1}'
  curl -si -X POST http://127.0.0.1:8080/charge \
    -H 'Authorization: Bearer sk_test_demo' -H 'Idempotency-Key: order-1' \
    -d '{"quantity":1, "sku":"sku-1", "customer":"cus_1", "currency":"EUR", "amount":1299}'
  curl -si -X POST http://127.0.0.1:8080/charge \
    -H 'Authorization: Bearer sk_test_demo' -H 'Idempotency-Key: order-1' \
    -d '{"amount":999,"currency":"EUR","customer":"cus_1","sku":"sku-1","quantity":1}'
  curl -s http://127.0.0.1:8080/metrics | grep paytest_

  # your own Postgres, two merchants, a crash right after the key is claimed
  PAYTEST_API_KEY=acme=sk_acme,globex=sk_globex \
  paytest serve charge --database-url postgres://postgres@127.0.0.1:5432/paytest \
    --crash-at after-claim --lease 2s

  # a broken service for testing the checker
  paytest serve charge --unsafe non-atomic-create`

// serverConfig reads the HTTP server's limits; charge.Service.Server checks
// them.
func serverConfig(v *viper.Viper) charge.ServerConfig {
	return charge.ServerConfig{
		ReadHeaderTimeout: v.GetDuration("read-header-timeout"),
		ReadTimeout:       v.GetDuration("read-timeout"),
		WriteTimeout:      v.GetDuration("write-timeout"),
		IdleTimeout:       v.GetDuration("idle-timeout"),
		MaxHeaderBytes:    v.GetInt("max-header-bytes"),
	}
}

// chargeConfig turns resolved settings into the charge service's plain
// configuration: the one place where flags meet charge.Config.
func chargeConfig(v *viper.Viper) (charge.Config, error) {
	cfg := charge.Config{
		DatabaseURL:     v.GetString("database-url"),
		Lease:           v.GetDuration("lease"),
		ProcessingDelay: v.GetDuration("processing-delay"),
		Retention:       v.GetDuration("retention"),
		MaxConns:        v.GetInt32("max-conns"),
		NATSURL:         v.GetString("nats-url"),
		Subject:         v.GetString("subject"),
		RedisURL:        v.GetString("redis-url"),
		RedisPrefix:     v.GetString("redis-prefix"),
		Catalog:         v.GetInt("catalog"),
	}
	if cfg.Lease <= 0 || cfg.Retention <= 0 {
		return cfg, apperr.Errorf(apperr.EUSAGE, "--lease and --retention must be positive")
	}
	if cfg.Catalog < 1 {
		return cfg, apperr.Errorf(apperr.EUSAGE, "--catalog must be at least 1")
	}
	if cfg.MaxConns < 1 {
		return cfg, apperr.Errorf(apperr.EUSAGE, "--max-conns must be at least 1")
	}
	keys, err := apiKeysOf(splitList(v.GetStringSlice("api-key")))
	if err != nil {
		return cfg, err
	}
	cfg.APIKeys = keys
	crash, err := crashpoint.Parse(splitList(v.GetStringSlice("crash-at")), charge.CrashPoints...)
	if err != nil {
		return cfg, err
	}
	cfg.Crash = crash
	unsafe, err := charge.ParseUnsafe(splitList(v.GetStringSlice("unsafe")))
	if err != nil {
		return cfg, err
	}
	cfg.Unsafe = unsafe
	if unsafe.DualWrite && cfg.NATSURL == "" {
		return cfg, apperr.Errorf(apperr.EUSAGE, "--unsafe %s needs --nats-url", charge.ModeDualWrite)
	}
	return cfg, nil
}

// apiKeysOf reads --api-key values, merchant=secret each, into the secret
// -> merchant map the service takes; none gives the demo merchant's key.
func apiKeysOf(vals []string) (map[string]string, error) {
	keys := map[string]string{}
	for _, kv := range vals {
		merchant, secret, ok := strings.Cut(kv, "=")
		if !ok || merchant == "" || secret == "" {
			return nil, apperr.Errorf(apperr.EUSAGE, "--api-key %q: want merchant=secret", kv)
		}
		if prev, dup := keys[secret]; dup && prev != merchant {
			return nil, apperr.Errorf(apperr.EUSAGE, "--api-key: one secret names two merchants (%s, %s)", prev, merchant)
		}
		keys[secret] = merchant
	}
	if len(keys) == 0 {
		keys[charge.DefaultAPIKey] = charge.DefaultMerchant
	}
	return keys, nil
}

// splitList flattens values that may each hold a comma- or space-separated
// list (as PAYTEST_* environment variables and config files give them).
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		out = append(out, strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' })...)
	}
	return out
}
