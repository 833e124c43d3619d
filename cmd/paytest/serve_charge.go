package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/crashpoint"
	"github.com/paytest/paytest/target/charge"
	"github.com/paytest/paytest/target/consumer"
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
  PAYTEST_API_KEY=acme=sk_acme,globex=sk_globex \
  paytest serve charge --database-url postgres://postgres@127.0.0.1:5432/paytest \
    --crash-at after-claim --lease 2s

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
	f.Duration("processing-delay", 0, "simulated card-processor call between claiming a key and recording the charge (same-key requests meanwhile get 409)")
	f.Duration("retention", charge.DefaultRetention, "how long idempotency keys are kept before the reaper deletes them")
	f.Int32("max-conns", charge.DefaultMaxConns, "database connection pool size")
	f.Duration("grace", 10*time.Second, "how long to drain in-flight requests on SIGTERM")
	f.String("nats-url", "", "NATS URL (dual-write mode only: the service publishes events itself)")
	f.String("subject", outbox.DefaultSubject, "NATS subject for events (dual-write mode only)")
	f.String("stream", outbox.DefaultStream, "JetStream stream (accepted for symmetry with relay and consumer; unused)")
	f.String("redis-prefix", "", "prefix of every Redis key the cache writes (share one Redis between stacks)")
	f.String("redis-url", "", "Redis URL: a hot tier in front of Postgres for idempotency keys (SET NX claim + cached replays; any miss or Redis failure falls through to Postgres)")
	f.Int("catalog", consumer.DefaultCatalog, "skus the service sells, sku-1 .. sku-N: the consumer's --catalog (others are refused, 400)")
	f.Duration("read-header-timeout", charge.DefaultReadHeaderTimeout, "how long a request's headers may take to arrive")
	f.Duration("read-timeout", charge.DefaultReadTimeout, "how long a whole request, headers and body, may take to arrive")
	f.Duration("write-timeout", charge.DefaultWriteTimeout, "how long a request may take from its headers to the end of its answer (at least --read-timeout + "+charge.DefaultRequestTimeout.String()+")")
	f.Duration("idle-timeout", charge.DefaultIdleTimeout, "how long an idle keep-alive connection is kept open")
	f.Int("max-header-bytes", charge.DefaultMaxHeaderBytes, "largest request header section accepted (more is a 431)")
	f.Bool("demo", false, "walk one request through new, replay, 409 and 422, print each answer, and exit")
	_ = f.MarkHidden("demo")
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
		if err := serverConfig(v).Validate(cfg.RequestTimeout); err != nil {
			return err
		}
		cfg.Logger = log
		if cfg.Crash != nil {
			cfg.Crash.Notes = func(msg string) { log.Warn(msg) }
		}
		if cfg.RedisURL != "" && (cfg.Unsafe.NoIdempotency || cfg.Unsafe.NonAtomicCreate) {
			log.Warn("--redis-url is ignored in this unsafe mode; the cache fronts only the safe state machine")
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
		rctx, stopReaper := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() { _ = svc.Run(rctx) })
		defer func() { stopReaper(); wg.Wait() }()
		log.Info("charge service ready", "lease", cfg.Lease, "retention", cfg.Retention, "merchants", len(cfg.APIKeys),
			"crash_at", strings.Join(v.GetStringSlice("crash-at"), ","), "unsafe", strings.Join(cfg.Unsafe.Modes(), ","))
		if v.GetBool("demo") {
			return chargeDemo(ctx, cmd.OutOrStdout(), v.GetString("listen"), svc)
		}
		srv, err := svc.Server(serverConfig(v))
		if err != nil {
			return err
		}
		return serveServer(ctx, log, "charge", v.GetString("listen"), srv, charge.ProblemListener, v.GetDuration("grace"))
	}
	return cmd
}

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
		APIKeys:         map[string]string{},
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

// chargeDemo serves h on listen and walks one request through the four
// answers of the state machine over real HTTP, printing each: a new charge,
// its replay, a 409 while a same-key request is in flight, and a 422 for a
// different request under the same key. It fails if any answer is wrong or
// if the database holds other than one charge per key.
func chargeDemo(ctx context.Context, out io.Writer, listen string, svc *charge.Service) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return apperr.Wrap(apperr.EUSAGE, err, "--listen %s", listen)
	}
	srv, err := svc.Server(charge.ServerConfig{})
	if err != nil {
		_ = ln.Close()
		return err
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(charge.ProblemListener(ln)) })
	defer func() {
		_ = srv.Shutdown(context.WithoutCancel(ctx))
		wg.Wait()
	}()
	url := "http://" + ln.Addr().String() + "/charge"
	client := &http.Client{Timeout: 10 * time.Second}
	type answer struct {
		status int
		header http.Header
		body   string
	}
	post := func(key, body string) (answer, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			return answer{}, err
		}
		req.Header.Set("Authorization", "Bearer "+charge.DefaultAPIKey)
		req.Header.Set("Idempotency-Key", key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return answer{}, apperr.Wrap(apperr.EINCONCLUSIVE, err, "demo request")
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return answer{resp.StatusCode, resp.Header, string(b)}, err
	}
	show := func(a answer, headers ...string) {
		fmt.Fprintf(out, "   -> %d %s", a.status, http.StatusText(a.status))
		for _, h := range headers {
			if v := a.header.Get(h); v != "" {
				fmt.Fprintf(out, "  %s: %s", h, v)
			}
		}
		fmt.Fprintf(out, "\n      %s\n", a.body)
	}
	wrong := func(step string, a answer) error {
		return apperr.Errorf(apperr.EVIOLATED, "demo step %q: unexpected answer %d %s", step, a.status, a.body)
	}
	run := time.Now().UTC().Format("20060102T150405.000")
	body := `{"amount":1299,"currency":"EUR","customer":"cus_1","sku":"sku-1","quantity":1}`
	reordered := `{ "quantity": 1, "sku": "sku-1", "customer": "cus_1", "currency": "EUR", "amount": 1299 }`
	key := "demo-" + run
	fmt.Fprintf(out, "POST %s as merchant %q (Authorization: Bearer %s)\n\n", url, charge.DefaultMerchant, charge.DefaultAPIKey)

	fmt.Fprintf(out, "1. new: Idempotency-Key %s\n      %s\n", key, body)
	first, err := post(key, body)
	if err != nil {
		return err
	}
	show(first, "Content-Type")
	if first.status != http.StatusOK || first.header.Get(charge.ReplayedHeader) != "" {
		return wrong("new", first)
	}

	fmt.Fprintf(out, "\n2. replay: the same key and the same request, keys reordered\n      %s\n", reordered)
	again, err := post(key, reordered)
	if err != nil {
		return err
	}
	show(again, "Content-Type", charge.ReplayedHeader)
	if again.status != first.status || again.body != first.body || again.header.Get(charge.ReplayedHeader) != "true" {
		return wrong("replay", again)
	}
	fmt.Fprintln(out, "      (the stored answer, byte for byte: no second charge)")

	fmt.Fprintln(out, "\n3. in flight: four requests with one new key, sent at the same moment")
	var conflict, winner answer
	for try := 1; try <= 200 && conflict.status == 0; try++ {
		k := fmt.Sprintf("demo-%s-race-%d", run, try)
		var group [4]answer
		var errs [4]error
		var rw sync.WaitGroup
		start := make(chan struct{})
		for i := range group {
			rw.Go(func() { <-start; group[i], errs[i] = post(k, body) })
		}
		close(start)
		rw.Wait()
		for i, a := range group {
			if errs[i] != nil {
				return errs[i]
			}
			switch {
			case a.status == http.StatusConflict && conflict.status == 0:
				conflict = a
			case a.status == http.StatusOK && a.header.Get(charge.ReplayedHeader) == "":
				winner = a
			}
		}
		if conflict.status != 0 {
			fmt.Fprintf(out, "      Idempotency-Key %s (attempt %d)\n", k, try)
		}
	}
	if conflict.status == 0 {
		return apperr.Errorf(apperr.EINCONCLUSIVE, "demo step \"in flight\": 200 races never caught a request in flight")
	}
	show(winner, charge.ReplayedHeader)
	show(conflict, "Content-Type", "Retry-After")
	if winner.status != http.StatusOK {
		return wrong("in flight", winner)
	}

	changed := strings.Replace(body, "1299", "999", 1)
	fmt.Fprintf(out, "\n4. mismatch: key %s again, with a different request\n      %s\n", key, changed)
	mismatch, err := post(key, changed)
	if err != nil {
		return err
	}
	show(mismatch, "Content-Type")
	if mismatch.status != http.StatusUnprocessableEntity {
		return wrong("mismatch", mismatch)
	}
	var keys, charges int
	if err := svc.Pool().QueryRow(ctx, `SELECT count(DISTINCT idempotency_key), count(*) FROM charges
		WHERE merchant = $1 AND idempotency_key LIKE $2`, charge.DefaultMerchant, "demo-"+run+"%").Scan(&keys, &charges); err != nil {
		return apperr.Wrap(apperr.EINCONCLUSIVE, err, "demo: counting charges")
	}
	fmt.Fprintf(out, "\nIn the database: %d keys, %d charges: each key charged exactly once.\n", keys, charges)
	if keys != charges {
		return apperr.Errorf(apperr.EVIOLATED, "demo: %d keys but %d charges", keys, charges)
	}
	return nil
}
