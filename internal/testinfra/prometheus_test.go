package testinfra

import (
	"context"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/model"
)

// TestPrometheusScrapesEveryTarget: the Prometheus it starts scrapes every
// target given, as a URL or as host:port, under job "paytest".
func TestPrometheusScrapesEveryTarget(t *testing.T) {
	page := func(v float64) string {
		reg := prometheus.NewRegistry()
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: "testinfra_things_total", Help: "things"})
		reg.MustRegister(c)
		c.Add(v)
		srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	a, b := page(3), page(4)
	url := Prometheus(t, a, b[len("http://"):])
	c, err := promapi.NewClient(promapi.Config{Address: url})
	if err != nil {
		t.Fatal(err)
	}
	api := promv1.NewAPI(c)
	WaitFor(t, 30*time.Second, func() error {
		val, _, _, err := api.Query(context.Background(), `sum(testinfra_things_total{job="paytest"})`, time.Time{})
		if err != nil {
			return err
		}
		if vec, ok := val.(model.Vector); !ok || len(vec) != 1 || vec[0].Value != 7 {
			return fmt.Errorf("sum = %v; want 7", val)
		}
		return nil
	})
}
