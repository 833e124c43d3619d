// Package promql is paytest's one client of the Prometheus HTTP API: a thin
// layer over client_golang's api/prometheus/v1 that sums an instant
// vector and bounds a range query's resolution, answering in the run
// directory's records.
package promql

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/paytest/paytest/internal/rundir"
)

// New is a client of the Prometheus HTTP API at base that sends its
// requests through hc, so they keep its timeout and TLS roots.
func New(hc *http.Client, base string) (promv1.API, error) {
	c, err := promapi.NewClient(promapi.Config{Address: strings.TrimRight(base, "/"), Client: hc})
	if err != nil {
		return nil, err
	}
	return promv1.NewAPI(c), nil
}

// Instant runs one PromQL instant query and sums the samples of its
// vector (or takes its scalar); an empty vector leaves the answer's Value
// nil.
func Instant(ctx context.Context, prom promv1.API, q string) (rundir.PromAnswer, error) {
	ans := rundir.PromAnswer{Query: q}
	val, _, _, err := prom.Query(ctx, q, time.Time{})
	if err != nil {
		return ans, err
	}
	sum := 0.0
	switch v := val.(type) {
	case model.Vector:
		if len(v) == 0 {
			return ans, nil
		}
		for _, s := range v {
			sum += float64(s.Value)
		}
		ans.Series = len(v)
	case *model.Scalar:
		sum, ans.Series = float64(v.Value), 1
	default:
		return ans, fmt.Errorf("result type %q: want an instant vector or a scalar", val.Type())
	}
	ans.Value = &sum
	return ans, nil
}

// Range runs one PromQL range query from start to end, at a step that
// keeps each series under 10,000 points (at least a second), and returns
// its series. The steps are counted back from end, so the last sample is
// the series' value at end.
func Range(ctx context.Context, prom promv1.API, q string, start, end time.Time) ([]rundir.PromSeries, error) {
	step := max(time.Second, end.Sub(start)/10000).Truncate(time.Second)
	start = end.Add(-step * ((end.Sub(start) + step - 1) / step))
	val, _, _, err := prom.QueryRange(ctx, q, promv1.Range{Start: start, End: end, Step: step})
	if err != nil {
		return nil, err
	}
	mat, ok := val.(model.Matrix)
	if !ok {
		return nil, fmt.Errorf("result type %q: want a range vector", val.Type())
	}
	out := make([]rundir.PromSeries, 0, len(mat))
	for _, r := range mat {
		s := rundir.PromSeries{Metric: make(map[string]string, len(r.Metric)), Values: make([][2]float64, 0, len(r.Values))}
		for k, v := range r.Metric {
			s.Metric[string(k)] = string(v)
		}
		for _, p := range r.Values {
			s.Values = append(s.Values, [2]float64{float64(p.Timestamp) / 1000, float64(p.Value)})
		}
		out = append(out, s)
	}
	return out, nil
}
