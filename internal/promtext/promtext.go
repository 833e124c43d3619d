// Package promtext reads pages in the Prometheus text exposition format,
// the one reader the attack, verify and test code share, so a page means
// the same figures to all of them.
package promtext

import (
	"bytes"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Parse parses a text-format page into its metric families by name.
func Parse(page []byte) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(bytes.NewReader(page))
}

// Value sums a family's counter, gauge and untyped samples over its
// series; summaries and histograms count as 0.
func Value(f *dto.MetricFamily) float64 {
	sum := 0.0
	for _, m := range f.GetMetric() {
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum
}

// Sums parses a page and gives each metric's Value by name.
func Sums(page []byte) (map[string]float64, error) {
	fams, err := Parse(page)
	if err != nil {
		return nil, err
	}
	out := make(map[string]float64, len(fams))
	for name, f := range fams {
		out[name] = Value(f)
	}
	return out, nil
}

// Sum parses a page and gives one metric's Value; found is false (and the
// value 0) when the page does not have the metric.
func Sum(page []byte, metric string) (v float64, found bool, err error) {
	fams, err := Parse(page)
	if err != nil {
		return 0, false, err
	}
	f, ok := fams[metric]
	if !ok {
		return 0, false, nil
	}
	return Value(f), true, nil
}
