package charge

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/testinfra"
)

// benchConcurrency is the fixed concurrency of both sides of the benchmark.
const benchConcurrency = 16

// benchDuration is how long each side runs; PAYTEST_BENCH_SECONDS overrides.
func benchDuration() time.Duration {
	if s, err := strconv.Atoi(os.Getenv("PAYTEST_BENCH_SECONDS")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 6 * time.Second
}

// The pgbench scripts run the service's SQL for a new key: the claim
// (claimSQL), then the charge transaction (chargeTxSQL: finish the key,
// insert the charge, insert the outbox row, one statement). A pgbench variable stands in for the key; the lock token
// and the charge id derive from it. Payload and body sizes match the
// service's.
const (
	pgbenchSet   = "\\set k random(1, 9000000000000000000)\n"
	pgbenchClaim = `INSERT INTO idempotency_keys (merchant, key, fingerprint, request, lock_token, locked_until)
  VALUES ('pgbench', 'pgb-' || :k::text, sha256('x'::bytea),
    '{"amount":1299,"currency":"EUR","customer":"cus_1","sku":"sku-1","quantity":1}'::jsonb,
    md5(:k::text)::uuid, now() + interval '30 seconds')
  ON CONFLICT (merchant, key) DO NOTHING RETURNING id;
`
	pgbenchFinish = `WITH k AS (
    UPDATE idempotency_keys
    SET state = 'finished', lock_token = NULL, locked_until = NULL, charge_id = 'ch_' || md5(:k::text),
        response_status = 200, response_headers = '{"Content-Type":"application/json"}'::jsonb,
        response_body = convert_to(repeat('b', 250), 'UTF8'), updated_at = now(), finished_at = now()
    WHERE merchant = 'pgbench' AND key = 'pgb-' || :k::text AND lock_token = md5(:k::text)::uuid AND state = 'started'
    RETURNING key),
  c AS (INSERT INTO charges (id, merchant, idempotency_key, amount, currency, customer, sku, quantity, created_at)
    SELECT 'ch_' || md5(:k::text), 'pgbench', k.key, 1299, 'EUR', 'cus_1', 'sku-1', 1, now() FROM k
    RETURNING id)
  INSERT INTO outbox (event_id, event_type, aggregate_id, payload)
  SELECT gen_random_uuid(), 'charge.created', c.id, convert_to(repeat('p', 300), 'UTF8') FROM c;
`
)

// pgbenchScripts: "pipelined" has the service's exact shape, one round trip
// (a pipeline with one Sync, as a pgx batch: the claim, COMMIT, then the
// charge transaction); "per-statement" sends each statement on its own round
// trip with an explicit BEGIN/COMMIT, as most services would.
var pgbenchScripts = map[string]string{
	"pipelined":     pgbenchSet + "\\startpipeline\n" + pgbenchClaim + "COMMIT;\n" + pgbenchFinish + "\\endpipeline\n",
	"per-statement": pgbenchSet + pgbenchClaim + "BEGIN;\n" + pgbenchFinish + "COMMIT;\n",
}

// findPgbench looks in PATH, then /usr/lib/postgresql/*/bin (newest first).
func findPgbench() string {
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	if len(dirs) > 0 {
		return dirs[0]
	}
	return ""
}

// BenchmarkChargeVsPgbench drives POST /charge with unique keys at fixed
// concurrency over real HTTP, then runs pgbench with the same SQL at the
// same concurrency against the same database, and reports charges/s, p50,
// p99 and the ratio to pgbench's TPS (target: >= 0.7).
func BenchmarkChargeVsPgbench(b *testing.B) {
	pgbench := findPgbench()
	if pgbench == "" {
		b.Skip("pgbench not found in PATH or /usr/lib/postgresql/*/bin (Debian: apt-get install postgresql-contrib or postgresql); skipping the comparison")
	}
	dbURL := testinfra.Postgres(b)
	ctx := context.Background()
	svc, err := New(ctx, Config{DatabaseURL: dbURL, MaxConns: benchMaxConns()})
	if err != nil {
		b.Fatal(err)
	}
	defer svc.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: svc.Handler()}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ln) })
	defer func() { _ = srv.Close(); wg.Wait() }()
	addr := ln.Addr().String()

	scripts := map[string]string{}
	for name, sql := range pgbenchScripts {
		scripts[name] = filepath.Join(b.TempDir(), name+".sql")
		if err := os.WriteFile(scripts[name], []byte(sql), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	// The machine is shared, so the two sides alternate in short rounds and
	// each round's ratio compares neighbours in time; the medians are
	// reported.
	d := benchDuration()
	const rounds = 3
	slot := max((d / rounds).Truncate(time.Second), time.Second) // pgbench -T takes whole seconds
	for i := range b.N {
		// Warm up: connections, prepared statements.
		if _, err := driveCharges(addr, fmt.Sprintf("warm%d", i), 300*time.Millisecond); err != nil {
			b.Fatal(err)
		}
		var lat []time.Duration
		var rates, tpss, ratios, pgLats []float64
		for r := range rounds {
			l, err := driveCharges(addr, fmt.Sprintf("run%d-%d", i, r), slot)
			if err != nil {
				b.Fatal(err)
			}
			lat = append(lat, l...)
			tps, pgLat, err := runPgbench(pgbench, dbURL, scripts["pipelined"], slot)
			if err != nil {
				b.Fatal(err)
			}
			rate := float64(len(l)) / slot.Seconds()
			rates, tpss, pgLats = append(rates, rate), append(tpss, tps), append(pgLats, pgLat)
			ratios = append(ratios, rate/tps)
		}
		serialTPS, _, err := runPgbench(pgbench, dbURL, scripts["per-statement"], slot)
		if err != nil {
			b.Fatal(err)
		}
		slices.Sort(lat)
		p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
		rate, tps, ratio := median(rates), median(tpss), median(ratios)
		b.ReportMetric(rate, "charges/s")
		b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
		b.ReportMetric(tps, "pgbench-tps")
		b.ReportMetric(ratio, "ratio")
		b.ReportMetric(serialTPS, "pgbench-per-stmt-tps")
		b.Logf("POST /charge at concurrency %d, %d rounds of %s: %.0f charges/s (rounds %.0f), p50 %s, p99 %s; "+
			"pgbench, same SQL and round trips (-c %d -j 2 -M prepared): %.0f tps (rounds %.0f, latency avg %.2f ms); "+
			"ratio %.2f (rounds %.2f; target >= 0.70); pgbench with a round trip per statement inside BEGIN/COMMIT: %.0f tps",
			benchConcurrency, rounds, slot, rate, rates, p50.Round(time.Microsecond), p99.Round(time.Microsecond),
			benchConcurrency, tps, tpss, median(pgLats), ratio, ratios, serialTPS)
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// driveCharges posts unique-key charges from benchConcurrency workers for d
// and returns every latency; any answer but a new 200 is an error. Each
// worker keeps one HTTP/1.1 connection and parses answers with
// http.ReadResponse: a lean load generator (like wrk), so that the client
// takes as little of the machine's CPU as pgbench's does.
func driveCharges(addr, prefix string, d time.Duration) ([]time.Duration, error) {
	var (
		next    atomic.Int64
		mu      sync.Mutex
		all     []time.Duration
		firstEr error
		wg      sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		firstEr = cmp.Or(firstEr, err)
		mu.Unlock()
	}
	deadline := time.Now().Add(d)
	for range benchConcurrency {
		wg.Go(func() {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				fail(err)
				return
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			var buf []byte
			mine := make([]time.Duration, 0, 1024)
			for time.Now().Before(deadline) {
				key := prefix + "-" + strconv.FormatInt(next.Add(1), 10)
				buf = append(buf[:0], "POST /charge HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer "+DefaultAPIKey+
					"\r\nContent-Type: application/json\r\nIdempotency-Key: "...)
				buf = append(buf, key...)
				buf = append(buf, "\r\nContent-Length: "+strconv.Itoa(len(demoBody))+"\r\n\r\n"+demoBody...)
				t0 := time.Now()
				if _, err := conn.Write(buf); err != nil {
					fail(err)
					return
				}
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					fail(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.Header.Get(ReplayedHeader) != "" {
					fail(fmt.Errorf("%s: %d %v", key, resp.StatusCode, resp.Header))
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if firstEr == nil && len(all) == 0 {
		firstEr = errors.New("no request completed")
	}
	return all, firstEr
}

var (
	tpsRE = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)
	latRE = regexp.MustCompile(`latency average = ([0-9.]+) ms`)
)

// runPgbench runs the script for d and returns its TPS and average latency.
func runPgbench(pgbench, dbURL, script string, d time.Duration) (tps, latMS float64, err error) {
	secs := max(int(d.Seconds()), 1)
	cmd := exec.Command(pgbench, "-n", "-M", "prepared", "-c", strconv.Itoa(benchConcurrency), "-j", "2",
		"-T", strconv.Itoa(secs), "-f", script, dbURL)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("pgbench: %v\n%s", err, out)
	}
	m := tpsRE.FindSubmatch(out)
	if m == nil {
		return 0, 0, fmt.Errorf("pgbench: no tps in output:\n%s", out)
	}
	tps, _ = strconv.ParseFloat(string(m[1]), 64)
	if m := latRE.FindSubmatch(out); m != nil {
		latMS, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	return tps, latMS, nil
}

// benchMaxConns is the service's pool size; PAYTEST_BENCH_MAXCONNS
// overrides the default (DefaultMaxConns, the same 16 connections pgbench
// opens).
func benchMaxConns() int32 {
	n, _ := strconv.Atoi(os.Getenv("PAYTEST_BENCH_MAXCONNS"))
	return int32(n)
}
