// Package chargedemo walks one request through the four answers of the
// charge service's idempotency state machine over real HTTP and prints
// each: a new charge, its replay, a 409 while a same-key request is in
// flight, and a 422 for a different request under the same key. It backs
// `paytest serve charge --demo`.
package chargedemo

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/target/charge"
)

// DefaultRaces is how many rounds of same-key requests Run sends, at most,
// to catch one in flight.
const DefaultRaces = 200

// Config configures a walk-through.
type Config struct {
	// Listen is the address the service is served on while the demo runs;
	// default "127.0.0.1:0".
	Listen string
	// Out receives the walk-through; nil discards it.
	Out io.Writer
	// Races bounds the rounds of four same-key requests sent to catch one
	// in flight; default DefaultRaces.
	Races int
}

// Run serves svc and walks one request through its four answers, printing
// each to cfg.Out. It fails (apperr.EVIOLATED) if an answer is wrong or if
// the database holds other than one charge per key, and is inconclusive
// (apperr.EINCONCLUSIVE) if no round catches a request in flight.
func Run(ctx context.Context, svc *charge.Service, cfg Config) error {
	cfg = cfg.withDefaults()
	url, stop, err := serve(ctx, svc, cfg.Listen)
	if err != nil {
		return err
	}
	defer stop()
	d := &demo{
		ctx: ctx, out: cfg.Out, url: url, races: cfg.Races,
		client: &http.Client{Timeout: 10 * time.Second},
		run:    "demo-" + time.Now().UTC().Format("20060102T150405.000"),
	}
	fmt.Fprintf(d.out, "POST %s as merchant %q (Authorization: Bearer %s)\n\n", url, charge.DefaultMerchant, charge.DefaultAPIKey)
	for _, step := range []func() error{d.fresh, d.replay, d.inFlight, d.mismatch} {
		if err := step(); err != nil {
			return err
		}
	}
	return d.count(svc)
}

func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:0"
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Races <= 0 {
		c.Races = DefaultRaces
	}
	return c
}

// serve serves svc on listen and returns its charge URL and the function
// that stops serving.
func serve(ctx context.Context, svc *charge.Service, listen string) (string, func(), error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return "", nil, apperr.Wrap(apperr.EUSAGE, err, "--listen %s", listen)
	}
	srv, err := svc.Server(charge.ServerConfig{})
	if err != nil {
		_ = ln.Close()
		return "", nil, err
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(charge.ProblemListener(ln)) })
	stop := func() {
		_ = srv.Shutdown(context.WithoutCancel(ctx))
		wg.Wait()
	}
	return "http://" + ln.Addr().String() + "/charge", stop, nil
}

const (
	body      = `{"amount":1299,"currency":"EUR","customer":"cus_1","sku":"sku-1","quantity":1}`
	reordered = `{ "quantity": 1, "sku": "sku-1", "customer": "cus_1", "currency": "EUR", "amount": 1299 }`
)

// demo is one walk-through: run prefixes every key it uses.
type demo struct {
	ctx    context.Context
	out    io.Writer
	url    string
	client *http.Client
	run    string
	races  int
	first  answer // the new charge, which the replay must repeat
}

// answer is one HTTP answer.
type answer struct {
	status int
	header http.Header
	body   string
}

func (d *demo) fresh() error {
	fmt.Fprintf(d.out, "1. new: Idempotency-Key %s\n      %s\n", d.run, body)
	a, err := d.post(d.run, body)
	if err != nil {
		return err
	}
	d.show(a, "Content-Type")
	if a.status != http.StatusOK || a.header.Get(charge.ReplayedHeader) != "" {
		return wrong("new", a)
	}
	d.first = a
	return nil
}

func (d *demo) replay() error {
	fmt.Fprintf(d.out, "\n2. replay: the same key and the same request, keys reordered\n      %s\n", reordered)
	a, err := d.post(d.run, reordered)
	if err != nil {
		return err
	}
	d.show(a, "Content-Type", charge.ReplayedHeader)
	if a.status != d.first.status || a.body != d.first.body || a.header.Get(charge.ReplayedHeader) != "true" {
		return wrong("replay", a)
	}
	fmt.Fprintln(d.out, "      (the stored answer, byte for byte: no second charge)")
	return nil
}

func (d *demo) inFlight() error {
	fmt.Fprintln(d.out, "\n3. in flight: four requests with one new key, sent at the same moment")
	for try := 1; try <= d.races; try++ {
		key := fmt.Sprintf("%s-race-%d", d.run, try)
		winner, conflict, err := d.race(key)
		if err != nil {
			return err
		}
		if conflict.status == 0 {
			continue
		}
		fmt.Fprintf(d.out, "      Idempotency-Key %s (attempt %d)\n", key, try)
		d.show(winner, charge.ReplayedHeader)
		d.show(conflict, "Content-Type", "Retry-After")
		if winner.status != http.StatusOK {
			return wrong("in flight", winner)
		}
		return nil
	}
	return apperr.Errorf(apperr.EINCONCLUSIVE, "demo step \"in flight\": %d races never caught a request in flight", d.races)
}

// race sends four requests with key at once and returns the new charge
// among the answers and the first 409, each zero if none came.
func (d *demo) race(key string) (winner, conflict answer, err error) {
	var group [4]answer
	var errs [4]error
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range group {
		wg.Go(func() { <-start; group[i], errs[i] = d.post(key, body) })
	}
	close(start)
	wg.Wait()
	for i, a := range group {
		if errs[i] != nil {
			return answer{}, answer{}, errs[i]
		}
		switch {
		case a.status == http.StatusConflict && conflict.status == 0:
			conflict = a
		case a.status == http.StatusOK && a.header.Get(charge.ReplayedHeader) == "":
			winner = a
		}
	}
	return winner, conflict, nil
}

func (d *demo) mismatch() error {
	changed := strings.Replace(body, "1299", "999", 1)
	fmt.Fprintf(d.out, "\n4. mismatch: key %s again, with a different request\n      %s\n", d.run, changed)
	a, err := d.post(d.run, changed)
	if err != nil {
		return err
	}
	d.show(a, "Content-Type")
	if a.status != http.StatusUnprocessableEntity {
		return wrong("mismatch", a)
	}
	return nil
}

// count checks that the database holds one charge per key the demo used.
func (d *demo) count(svc *charge.Service) error {
	var keys, charges int
	if err := svc.Pool().QueryRow(d.ctx, `SELECT count(DISTINCT idempotency_key), count(*) FROM charges
		WHERE merchant = $1 AND idempotency_key LIKE $2`, charge.DefaultMerchant, d.run+"%").Scan(&keys, &charges); err != nil {
		return apperr.Wrap(apperr.EINCONCLUSIVE, err, "demo: counting charges")
	}
	fmt.Fprintf(d.out, "\nIn the database: %d keys, %d charges: each key charged exactly once.\n", keys, charges)
	if keys != charges {
		return apperr.Errorf(apperr.EVIOLATED, "demo: %d keys but %d charges", keys, charges)
	}
	return nil
}

func (d *demo) post(key, body string) (answer, error) {
	req, err := http.NewRequestWithContext(d.ctx, http.MethodPost, d.url, strings.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Authorization", "Bearer "+charge.DefaultAPIKey)
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		return answer{}, apperr.Wrap(apperr.EINCONCLUSIVE, err, "demo request")
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}, err
}

// show prints an answer with those of headers it carries.
func (d *demo) show(a answer, headers ...string) {
	fmt.Fprintf(d.out, "   -> %d %s", a.status, http.StatusText(a.status))
	for _, h := range headers {
		if v := a.header.Get(h); v != "" {
			fmt.Fprintf(d.out, "  %s: %s", h, v)
		}
	}
	fmt.Fprintf(d.out, "\n      %s\n", a.body)
}

func wrong(step string, a answer) error {
	return apperr.Errorf(apperr.EVIOLATED, "demo step %q: unexpected answer %d %s", step, a.status, a.body)
}
