package health

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "paytest_test_total", Help: "t"})
	reg.MustRegister(c)
	c.Inc()
	var up atomic.Bool
	srv := httptest.NewServer(Mux(reg, func(context.Context) error {
		if !up.Load() {
			return errors.New("database: down")
		}
		return nil
	}))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b := new(strings.Builder)
		_, _ = io.Copy(b, resp.Body)
		return resp.StatusCode, b.String()
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "database: down") {
		t.Fatalf("/readyz while down = %d %q", code, body)
	}
	up.Store(true)
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("/readyz when up = %d", code)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "paytest_test_total 1") {
		t.Fatalf("/metrics = %d %q", code, body)
	}
}
