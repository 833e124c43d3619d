package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/promql"
	"github.com/paytest/paytest/internal/promtext"
	secrets "github.com/paytest/paytest/internal/redact"
	"github.com/paytest/paytest/internal/rundir"
)

// DefaultLedgerQuery counts the reference consumer's ledger entries per
// (merchant, key). A ledger query returns rows of (key, effects),
// (merchant, key, effects) or (merchant, key, amount, effects): text-like
// key columns, an integer amount and an integer count of the side effects
// applied under that key. With the amount, a changed-body reuse's effects
// (its amount differs from the original op's) are told apart from the
// original's.
const DefaultLedgerQuery = "SELECT merchant, idempotency_key, count(*) FROM ledger_entries GROUP BY 1, 2"

// LedgerAmountQuery is the reference consumer's ledger per (merchant, key,
// amount): the four-column form, which attributes effects per op.
const LedgerAmountQuery = "SELECT merchant, idempotency_key, amount, count(*) FROM ledger_entries GROUP BY 1, 2, 3"

// Sources says where Collect finds a system's evidence. Every field is
// optional, but Collect needs at least one of MetricsURLs, PrometheusURL
// and DatabaseURL.
type Sources struct {
	// MetricsURLs maps a component name ("charge", "relay", "consumer",
	// "target"...) to the URL of its Prometheus text exposition page.
	MetricsURLs map[string]string
	// PrometheusURL is a Prometheus server whose HTTP API answers PromQL
	// instant queries (/api/v1/query).
	PrometheusURL string
	// SideEffectMetric is the counter of applied side effects on the pages,
	// summed over series and pages (default DefaultSideEffectMetric).
	SideEffectMetric string
	// SideEffectQuery is the PromQL for the side effects at PrometheusURL
	// (default: the sum of SideEffectMetric's series, DefaultSideEffectQuery
	// for the default metric).
	SideEffectQuery string
	// DatabaseURL is the ledger's Postgres, LedgerQuery the per-key effects
	// query (default DefaultLedgerQuery).
	DatabaseURL string
	LedgerQuery string
	// EventsQuery, optional, lists the events the consumer applied more
	// than once: rows of (event, applied) or (event, merchant, key,
	// applied). It is what tells a repeated event (the consumer's fault)
	// from a second charge (the charge service's), and is saved as
	// events.jsonl.
	EventsQuery string
	// PrometheusWait, when positive, makes Collect wait (up to that long)
	// until Prometheus has scraped every target after Collect began
	// (min(timestamp(up)) >= start), so its answers are not older than the
	// system's final state. Zero queries at once.
	PrometheusWait time.Duration
	// HTTPClient scrapes the pages and queries Prometheus (default: a
	// client with a 10 s timeout).
	HTTPClient *http.Client
}

// maxPage bounds a scraped page.
const maxPage = 64 << 20

var pageName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// Collect gathers a live system's evidence into runDir: each metrics page,
// validated as the Prometheus text format and saved verbatim as
// metrics/<name>.prom; the PromQL answers as metrics/prometheus.json; the
// ledger as ledger.jsonl; and what was asked for as metrics/sources.json.
// Anything unreachable, invalid or missing (the side-effect metric on no
// page) is an EINCONCLUSIVE error naming what and where, after everything
// reachable was saved.
func Collect(ctx context.Context, src Sources, runDir string) error {
	if len(src.MetricsURLs) == 0 && src.PrometheusURL == "" && src.DatabaseURL == "" {
		return apperr.Errorf(apperr.EINCONCLUSIVE, "no evidence to collect: give metrics URLs, a Prometheus URL or a database URL")
	}
	src = src.withDefaults()
	mdir := filepath.Join(runDir, rundir.MetricsDir)
	if err := os.MkdirAll(mdir, 0o755); err != nil {
		return apperr.Wrap(apperr.EINCONCLUSIVE, err, "creating %s", mdir)
	}
	if err := removeStale(src, runDir); err != nil {
		return err
	}
	rec := rundir.Collected{Time: time.Now().UTC(), SideEffectMetric: src.SideEffectMetric}
	var errs []error
	errs = append(errs, collectPages(ctx, src, mdir, &rec)...)
	errs = append(errs, collectPrometheus(ctx, src, runDir, &rec)...)
	errs = append(errs, collectDatabase(ctx, src, runDir, &rec)...)
	return saveSources(mdir, rec, errs)
}

// withDefaults fills in the side-effect metric and query, the ledger query
// and the HTTP client.
func (src Sources) withDefaults() Sources {
	if src.SideEffectMetric == "" {
		src.SideEffectMetric = DefaultSideEffectMetric
	}
	if src.SideEffectQuery == "" {
		src.SideEffectQuery = "sum(" + src.SideEffectMetric + ")"
	}
	if src.LedgerQuery == "" {
		src.LedgerQuery = DefaultLedgerQuery
	}
	if src.HTTPClient == nil {
		src.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	return src
}

// removeStale deletes the evidence an earlier collection saved from the
// sources src names: it must not stand in for what this one fails to get.
func removeStale(src Sources, runDir string) error {
	mdir := filepath.Join(runDir, rundir.MetricsDir)
	stale := []string{filepath.Join(mdir, rundir.SourcesFile), filepath.Join(mdir, rundir.PrometheusFile)}
	for name := range src.MetricsURLs {
		if pageName.MatchString(name) {
			stale = append(stale, filepath.Join(mdir, name+".prom"))
		}
	}
	if src.DatabaseURL != "" {
		stale = append(stale, filepath.Join(runDir, rundir.LedgerFile), filepath.Join(runDir, rundir.EventsFile))
	}
	for _, p := range stale {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return apperr.Wrap(apperr.EINCONCLUSIVE, err, "removing stale evidence")
		}
	}
	return nil
}

// collectPages scrapes every metrics page into mdir, recording its URL in
// rec; it is an error when none has the side-effect metric.
func collectPages(ctx context.Context, src Sources, mdir string, rec *rundir.Collected) []error {
	if len(src.MetricsURLs) == 0 {
		return nil
	}
	var errs []error
	rec.Pages = map[string]string{}
	found := false
	names := sortedKeys(src.MetricsURLs)
	for _, name := range names {
		u := src.MetricsURLs[name]
		rec.Pages[name] = redact(u)
		if !pageName.MatchString(name) {
			errs = append(errs, fmt.Errorf("metrics page name %q: want letters, digits, '.', '_' or '-'", name))
			continue
		}
		has, err := scrape(ctx, src.HTTPClient, u, filepath.Join(mdir, name+".prom"), src.SideEffectMetric)
		if err != nil {
			errs = append(errs, fmt.Errorf("metrics %s at %s: %w", name, redact(u), err))
			continue
		}
		found = found || has
	}
	if !found && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("side-effect metric %s is on none of the pages (%s)", src.SideEffectMetric, strings.Join(names, ", ")))
	}
	return errs
}

// collectPrometheus saves Prometheus's answers, when src names a server.
func collectPrometheus(ctx context.Context, src Sources, runDir string, rec *rundir.Collected) []error {
	if src.PrometheusURL == "" {
		return nil
	}
	rec.PrometheusURL, rec.SideEffectQuery = redact(src.PrometheusURL), src.SideEffectQuery
	// The side-effect counter's samples since the run began let Verify
	// sum it across restarts, as it does with the metrics timeline.
	var since time.Time
	if r, err := rundir.ReadRun(filepath.Join(runDir, rundir.RunFile)); err == nil {
		since = r.Started
	}
	path := filepath.Join(runDir, rundir.MetricsDir, rundir.PrometheusFile)
	if err := queryPrometheus(ctx, src.HTTPClient, src, since, path); err != nil {
		return []error{fmt.Errorf("prometheus at %s: %w", redact(src.PrometheusURL), err)}
	}
	return nil
}

// collectDatabase saves the ledger and, when src has an events query, the
// repeated events, when src names a database.
func collectDatabase(ctx context.Context, src Sources, runDir string, rec *rundir.Collected) []error {
	if src.DatabaseURL == "" {
		return nil
	}
	var errs []error
	rec.Database, rec.LedgerQuery = redact(src.DatabaseURL), src.LedgerQuery
	if err := queryLedger(ctx, src.DatabaseURL, src.LedgerQuery, filepath.Join(runDir, rundir.LedgerFile)); err != nil {
		errs = append(errs, fmt.Errorf("ledger at %s: %w", redact(src.DatabaseURL), err))
	}
	if src.EventsQuery != "" {
		rec.EventsQuery = src.EventsQuery
		if err := queryEvents(ctx, src.DatabaseURL, src.EventsQuery, filepath.Join(runDir, rundir.EventsFile)); err != nil {
			errs = append(errs, fmt.Errorf("events at %s: %w", redact(src.DatabaseURL), err))
		}
	}
	return errs
}

// saveSources records rec, with errs, as sources.json, and returns errs
// (and any error saving it) as one EINCONCLUSIVE error.
func saveSources(mdir string, rec rundir.Collected, errs []error) error {
	// An HTTP client's error quotes the whole URL it tried, query included:
	// mask secrets before the message reaches sources.json or the caller.
	for i, err := range errs {
		msg := secrets.String(err.Error())
		rec.Errors = append(rec.Errors, msg)
		errs[i] = errors.New(msg)
	}
	if err := writeJSON(filepath.Join(mdir, rundir.SourcesFile), rec); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return apperr.Wrap(apperr.EINCONCLUSIVE, errors.Join(errs...), "collecting evidence")
	}
	return nil
}

// scrape fetches one page, checks it parses as the Prometheus text format
// and saves it verbatim. It reports whether the page has metric.
func scrape(ctx context.Context, hc *http.Client, u, path, metric string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4;q=1,*/*;q=0.1")
	resp, err := hc.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("HTTP %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPage+1))
	if err != nil {
		return false, err
	}
	if len(body) > maxPage {
		return false, fmt.Errorf("page over %d MiB", maxPage>>20)
	}
	fams, err := promtext.Parse(body)
	if err != nil {
		return false, fmt.Errorf("not a Prometheus text page: %w", err)
	}
	if err := writeFileAtomic(path, body); err != nil {
		return false, err
	}
	_, has := fams[metric]
	return has, nil
}

// queryPrometheus runs the side-effect query and those of the other
// metrics verify reads (promQueries) as instant queries and saves the answers. An empty answer to the
// side-effect query is an error: the metric is not there.
func queryPrometheus(ctx context.Context, hc *http.Client, src Sources, since time.Time, path string) error {
	prom, err := promql.New(hc, src.PrometheusURL)
	if err != nil {
		return err
	}
	if src.PrometheusWait > 0 {
		if err := waitFreshScrape(ctx, prom, src.PrometheusWait); err != nil {
			return err
		}
	}
	out := rundir.PromAnswers{URL: redact(src.PrometheusURL), Time: time.Now().UTC(), Answers: map[string]rundir.PromAnswer{}}
	queries := map[string]string{promSideEffects: src.SideEffectQuery}
	for k, q := range promQueries {
		queries[k] = q
	}
	var errs []error
	for _, name := range sortedKeys(queries) {
		q := queries[name]
		ans, err := promql.Instant(ctx, prom, q)
		if err != nil {
			errs = append(errs, fmt.Errorf("query %q: %w", q, err))
			continue
		}
		out.Answers[name] = ans
	}
	if a, ok := out.Answers[promSideEffects]; ok && a.Value == nil {
		errs = append(errs, fmt.Errorf("query %q returned no series: the side-effect metric is not in Prometheus", src.SideEffectQuery))
	}
	// Only the default query is a plain sum of the counter's series, which
	// the range can replace.
	if !since.IsZero() && src.SideEffectQuery == "sum("+src.SideEffectMetric+")" {
		series, err := promql.Range(ctx, prom, src.SideEffectMetric, since, out.Time)
		if err != nil {
			errs = append(errs, fmt.Errorf("range query %q: %w", src.SideEffectMetric, err))
		}
		out.SideEffectSeries = series
	}
	if err := writeJSON(path, out); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// waitFreshScrape polls until every target Prometheus scrapes was scraped
// after the call began.
func waitFreshScrape(ctx context.Context, prom promv1.API, wait time.Duration) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	last := "no answer"
	for {
		ans, err := promql.Instant(ctx, prom, "min(timestamp(up))")
		switch {
		case err != nil:
			last = err.Error()
		case ans.Value == nil:
			last = "no scrape targets (up is empty)"
		case *ans.Value >= float64(start.UnixMilli())/1000:
			return nil
		default:
			last = fmt.Sprintf("oldest target scraped %s before collection began", start.Sub(time.UnixMilli(int64(*ans.Value*1000))).Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no fresh scrape within %s: %s", wait, last)
		case <-t.C:
		}
	}
}

// queryLedger runs the ledger query and writes one rundir.LedgerRow per row.
func queryLedger(ctx context.Context, dbURL, query, path string) error {
	cols := func(n int) error {
		if n < 2 || n > 4 {
			return fmt.Errorf("the ledger query returns %d columns: want (key, effects), (merchant, key, effects) or (merchant, key, amount, effects)", n)
		}
		return nil
	}
	return queryRows(ctx, dbURL, query, path, cols, func(vals []any) (rundir.LedgerRow, error) {
		var row rundir.LedgerRow
		var err error
		switch len(vals) {
		case 2:
			row.Key = asText(vals[0])
		case 3:
			row.Merchant, row.Key = asText(vals[0]), asText(vals[1])
		default:
			row.Merchant, row.Key = asText(vals[0]), asText(vals[1])
			amount, err := asInt(vals[2])
			if err != nil {
				return row, fmt.Errorf("amount column: %w", err)
			}
			row.Amount = &amount
		}
		if row.Effects, err = asInt(vals[len(vals)-1]); err != nil {
			return row, fmt.Errorf("effects column: %w", err)
		}
		return row, nil
	})
}

// queryEvents runs the events query and writes one rundir.EventRow per row.
func queryEvents(ctx context.Context, dbURL, query, path string) error {
	cols := func(n int) error {
		if n != 2 && n != 4 {
			return fmt.Errorf("the events query returns %d columns: want (event, applied) or (event, merchant, key, applied)", n)
		}
		return nil
	}
	return queryRows(ctx, dbURL, query, path, cols, func(vals []any) (rundir.EventRow, error) {
		var row rundir.EventRow
		var err error
		if len(vals) == 2 {
			row.Event = asText(vals[0])
		} else {
			row.Event, row.Merchant, row.Key = asText(vals[0]), asText(vals[1]), asText(vals[2])
		}
		if row.Applied, err = asInt(vals[len(vals)-1]); err != nil {
			return row, fmt.Errorf("applied column: %w", err)
		}
		return row, nil
	})
}

// queryRows runs query and writes one JSON line per row, converted by
// conv, to path (through a temporary file: a failed query leaves none).
// cols vets the number of columns before any row is read.
func queryRows[T any](ctx context.Context, dbURL, query, path string, cols func(int) error, conv func([]any) (T, error)) error {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	if err := cols(len(rows.FieldDescriptions())); err != nil {
		return err
	}
	tmp := path + ".tmp"
	w, err := rundir.Create[T](tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			w.Close()
			return err
		}
		row, err := conv(vals)
		if err != nil {
			w.Close()
			return err
		}
		if err := w.Write(row); err != nil {
			w.Close()
			return err
		}
	}
	if err := rows.Err(); err != nil {
		w.Close()
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func asText(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []byte:
		return string(x)
	case [16]byte:
		return pgtype.UUID{Bytes: x, Valid: true}.String()
	default:
		return fmt.Sprint(x)
	}
}

func asInt(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case int32:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case int:
		return int64(x), nil
	case float64:
		if x != math.Trunc(x) {
			return 0, fmt.Errorf("%v is not a whole number", x)
		}
		return int64(x), nil
	case pgtype.Numeric:
		f, err := x.Float64Value()
		if err != nil || !f.Valid {
			return 0, fmt.Errorf("numeric %v", x)
		}
		return int64(f.Float64), nil
	case nil:
		return 0, errors.New("NULL")
	default:
		return 0, fmt.Errorf("%T is not an integer", v)
	}
}

// redact drops credentials from a URL for the record: its password and
// secret query parameters (?password=, ?token=...), or the password of a
// keyword=value connection string.
func redact(s string) string { return secrets.URL(s) }
