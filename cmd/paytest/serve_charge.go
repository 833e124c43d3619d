package main

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/crashpoint"
	"github.com/paytest/paytest/internal/pgembed"
	"github.com/paytest/paytest/target/charge"
	"github.com/paytest/paytest/target/outbox"
)

func newServeChargeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "charge",
		Short: "Run the reference charge API (POST /charge)",
		Long: `Run the reference charge API: POST /charge behind an idempotency-key state
machine in PostgreSQL, with a transactional outbox for the relay.

Every (merchant, Idempotency-Key) gets exactly one of:
  200           the first request: the charge as JSON
  200 + Idempotent-Replayed: true
                the same key and body again, once the first finished: the
                stored status, Content-Type and body, byte for byte
  409 + Retry-After   the same key while the first is still in flight
  422           the same key with a different body (compared after decoding:
                key order and whitespace do not matter)
Errors are application/problem+json (RFC 9457): 400 bad key or body, 401
missing or unknown API key, 405 not POST, 413 body over 64 KiB, 503 +
Retry-After while Postgres is unreachable (it recovers on its own).

The API key names the merchant (--api-key merchant=secret, repeatable; the
default is the demo merchant "demo" with the key sk_test_demo). Keys are
scoped per merchant. A key claimed by a request that died stays locked for
--lease; then a retry takes it over and completes it exactly once. Keys are
deleted after --retention.

With no --database-url a throwaway PostgreSQL cluster is started from the
machine's binaries and removed on exit. Also served: GET /metrics, /healthz,
/readyz. SIGTERM or Ctrl-C drains in-flight requests, then exits.

--unsafe MODE breaks a guarantee on purpose, so that paytest's checks can be
seen failing: no-idempotency (every request is a new charge),
non-atomic-create (read-then-write keys: races double-charge), dual-write (no
outbox; publish to --nats-url after commit: a crash in between loses it).`,
		Example: `  # on an embedded Postgres, on a fixed port
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
  paytest serve charge --database-url postgres://postgres@127.0.0.1:5432/paytest \
    --api-key acme=sk_acme --api-key globex=sk_globex --crash-at after-claim --lease 2s

  # a broken service for testing the checker
  paytest serve charge --unsafe non-atomic-create`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.String("listen", "127.0.0.1:0", "address to listen on, HOST:PORT (port 0 picks a free one; the bound address is logged)")
	f.String("database-url", "", "PostgreSQL URL (default: a throwaway embedded cluster, removed on exit)")
	f.StringArray("api-key", nil, "merchant=secret: a bearer API key and the merchant it names (repeatable; default demo="+charge.DefaultAPIKey+")")
	f.StringArray("crash-at", nil, "SIGKILL this process at a point: "+strings.Join(charge.CrashPoints, "|")+", optionally :N for the N-th pass (repeatable)")
	f.StringArray("unsafe", nil, "break a guarantee on purpose: "+strings.Join(charge.UnsafeModes, ", ")+" (repeatable)")
	f.Duration("lease", charge.DefaultLease, "how long a claimed key stays locked before a retry may take it over")
	f.Duration("retention", charge.DefaultRetention, "how long idempotency keys are kept before the reaper deletes them")
	f.Int32("max-conns", charge.DefaultMaxConns, "database connection pool size")
	f.Duration("grace", 10*time.Second, "how long to drain in-flight requests on SIGTERM")
	f.String("nats-url", "", "NATS URL (dual-write mode only: the service publishes events itself)")
	f.String("subject", outbox.DefaultSubject, "NATS subject for events (dual-write mode only)")
	f.String("stream", outbox.DefaultStream, "JetStream stream (accepted for symmetry with relay and consumer; unused)")
	f.String("redis-url", "", "Redis URL for an idempotency cache tier (not used by this build)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		v, err := settings(cmd, nil)
		if err != nil {
			return err
		}
		log, err := newLogger(cmd, v)
		if err != nil {
			return err
		}
		cfg, err := chargeConfig(v)
		if err != nil {
			return err
		}
		cfg.Logger = log
		if cfg.Crash != nil {
			cfg.Crash.Notes = func(msg string) { log.Warn(msg) }
		}
		if v.GetString("redis-url") != "" {
			log.Warn("--redis-url is not used by this build of serve charge; Postgres alone holds the keys")
		}
		ctx := cmd.Context()
		if cfg.DatabaseURL == "" {
			start := time.Now()
			cluster, err := pgembed.Start(ctx, pgembed.Options{})
			if err != nil {
				return err
			}
			defer func() {
				t := time.Now()
				err := cluster.Stop()
				log.Info("embedded postgres stopped", "took", time.Since(t).Round(time.Millisecond), "err", err)
			}()
			cfg.DatabaseURL = cluster.URL("postgres")
			log.Info("embedded postgres up", "took", time.Since(start).Round(time.Millisecond), "url", cfg.DatabaseURL, "dir", cluster.Dir())
		}
		svc, err := charge.New(ctx, cfg)
		if err != nil {
			return err
		}
		defer svc.Close()
		rctx, stopReaper := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { _ = svc.Run(rctx) })
		defer func() { stopReaper(); wg.Wait() }()
		log.Info("charge service ready", "lease", cfg.Lease, "retention", cfg.Retention, "merchants", len(cfg.APIKeys),
			"crash_at", strings.Join(v.GetStringSlice("crash-at"), ","), "unsafe", strings.Join(cfg.Unsafe.Modes(), ","))
		return serveHTTP(ctx, log, "charge", v.GetString("listen"), svc.Handler(), v.GetDuration("grace"))
	}
	return cmd
}

// chargeConfig turns resolved settings into the charge service's plain
// configuration: the one place where flags meet charge.Config.
func chargeConfig(v *viper.Viper) (charge.Config, error) {
	cfg := charge.Config{
		DatabaseURL: v.GetString("database-url"),
		Lease:       v.GetDuration("lease"),
		Retention:   v.GetDuration("retention"),
		MaxConns:    v.GetInt32("max-conns"),
		NATSURL:     v.GetString("nats-url"),
		Subject:     v.GetString("subject"),
		APIKeys:     map[string]string{},
	}
	if cfg.Lease <= 0 || cfg.Retention <= 0 {
		return cfg, apperr.Errorf(apperr.EUSAGE, "--lease and --retention must be positive")
	}
	if cfg.MaxConns < 1 {
		return cfg, apperr.Errorf(apperr.EUSAGE, "--max-conns must be at least 1")
	}
	for _, kv := range splitList(v.GetStringSlice("api-key")) {
		merchant, secret, ok := strings.Cut(kv, "=")
		if !ok || merchant == "" || secret == "" {
			return cfg, apperr.Errorf(apperr.EUSAGE, "--api-key %q: want merchant=secret", kv)
		}
		if prev, dup := cfg.APIKeys[secret]; dup && prev != merchant {
			return cfg, apperr.Errorf(apperr.EUSAGE, "--api-key: one secret names two merchants (%s, %s)", prev, merchant)
		}
		cfg.APIKeys[secret] = merchant
	}
	if len(cfg.APIKeys) == 0 {
		cfg.APIKeys[charge.DefaultAPIKey] = charge.DefaultMerchant
	}
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

// splitList flattens values that may each hold a comma- or space-separated
// list (as PAYTEST_* environment variables and config files give them).
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		out = append(out, strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' })...)
	}
	return out
}
