// Package runbook holds paytest's one-page on-call runbook and the
// Prometheus alerting rules that point into it, both embedded in the binary
// (`paytest runbook`, `paytest runbook --alerts`).
//
// The runbook triages from four metrics (README.md, "Reference interface"): charge outcomes
// (paytest_charge_requests_total), client attempts by attempt number
// (paytest_client_attempts_total), outbox lag (paytest_outbox_lag_seconds)
// and side effects applied against charges created. MetricNames lists every
// paytest_* metric the two texts name, so that a test can check that the
// running stack exports each one and the runbook never sends the person on
// call to a query that returns nothing.
package runbook

import (
	_ "embed"
	"regexp"
	"slices"
	"strings"
)

//go:embed RUNBOOK.md
var markdown string

//go:embed alerts.yaml
var alerts []byte

// Runbook returns the on-call runbook, Markdown, one page.
func Runbook() string { return markdown }

// Alerts returns the Prometheus alerting rules (a rule file in the
// groups/rules format) for the situations the runbook covers. Each rule's
// runbook_url annotation names a section of the runbook. The slice is a
// fresh copy.
func Alerts() []byte { return slices.Clone(alerts) }

// MetricNames returns every paytest_* metric named in the runbook and the
// alerting rules, sorted, each once. The series of a histogram
// (name_bucket, name_sum, name_count) are reported by the histogram's name,
// as it is exported.
func MetricNames() []string {
	return metricNames(markdown, string(alerts))
}

// metricRE matches a paytest_ metric name that is not the tail of a longer
// identifier (PAYTEST_OPS, my_paytest_x).
var metricRE = regexp.MustCompile(`(^|[^A-Za-z0-9_:])(paytest_[a-z0-9_:]*[a-z0-9])`)

// histogramSuffixes are the series suffixes a histogram's name takes in PromQL.
var histogramSuffixes = []string{"_bucket", "_sum", "_count"}

// metricNames extracts the sorted, deduplicated metric names from texts.
func metricNames(texts ...string) []string {
	var names []string
	for _, text := range texts {
		for _, m := range metricRE.FindAllStringSubmatch(text, -1) {
			name := m[2]
			for _, suffix := range histogramSuffixes {
				if base, ok := strings.CutSuffix(name, suffix); ok {
					name = base
					break
				}
			}
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}
