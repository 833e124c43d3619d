package charge

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests *prometheus.CounterVec
	created  prometheus.Counter
	duration prometheus.Histogram
}

func newMetrics(reg *prometheus.Registry, pool *pgxpool.Pool) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paytest_charge_requests_total",
			Help: "POST /charge requests by outcome: new, replay, conflict (409), mismatch (422), invalid, unauthorized, error.",
		}, []string{"outcome"}),
		created: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "paytest_charges_created_total",
			Help: "Charges committed (a charge row and its event).",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "paytest_charge_request_duration_seconds",
			Help:    "Latency of POST /charge, every outcome.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
	}
	for _, o := range []string{OutcomeNew, OutcomeReplay, OutcomeConflict, OutcomeMismatch, OutcomeInvalid, OutcomeUnauthorized, OutcomeError} {
		m.requests.WithLabelValues(o) // every outcome is exported from the start, at 0
	}
	for _, c := range []prometheus.Collector{m.requests, m.created, m.duration, &pendingCollector{pool: pool}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// pendingCollector exports paytest_outbox_pending, counted at scrape time
// (at most once a second; the last good value if the database is down).
type pendingCollector struct {
	pool *pgxpool.Pool
	mu   sync.Mutex
	at   time.Time
	n    float64
}

var _ prometheus.Collector = (*pendingCollector)(nil)

var pendingDesc = prometheus.NewDesc("paytest_outbox_pending",
	"Outbox rows not yet published.", nil, nil)

func (c *pendingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- pendingDesc }

func (c *pendingCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) >= time.Second {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		var n int64
		if err := c.pool.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&n); err == nil {
			c.n, c.at = float64(n), time.Now()
		}
		cancel()
	}
	ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, c.n)
}
