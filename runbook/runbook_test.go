package runbook

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// referenceMetrics are the metric names README.md's "Reference interface"
// documents, and so the only names some component exports. The runbook
// must not name anything else.
var referenceMetrics = []string{
	// charge service
	"paytest_charge_requests_total",
	"paytest_charges_created_total",
	"paytest_charge_request_duration_seconds",
	"paytest_outbox_pending",
	"paytest_idempotency_cache_total",
	// relay
	"paytest_relay_published_total",
	"paytest_outbox_lag_seconds",
	// consumer
	"paytest_side_effects_applied_total",
	"paytest_inbox_duplicates_total",
	"paytest_dlq_messages_total",
	"paytest_consumer_inflight",
	"paytest_consumer_inflight_max",
	"paytest_consumer_redeliveries_total",
	// client (the attack process)
	"paytest_client_attempts_total",
	"paytest_retry_budget_exhausted_total",
}

func TestMetricNamesAreReferenceNames(t *testing.T) {
	names := MetricNames()
	if len(names) == 0 {
		t.Fatal("MetricNames() is empty: the parser found no paytest_* metric")
	}
	for _, name := range names {
		if !slices.Contains(referenceMetrics, name) {
			t.Errorf("the runbook or the rules name %s, which no component exports (not in README's Reference interface)", name)
		}
	}
}

// TestReadmeDocumentsEveryMetric: the names users may rely on stand in
// README.md's "Reference interface".
func TestReadmeDocumentsEveryMetric(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, ref, ok := strings.Cut(string(b), "## Reference interface")
	if !ok {
		t.Fatal("README.md has no Reference interface section")
	}
	for _, m := range referenceMetrics {
		if !strings.Contains(ref, "`"+m) {
			t.Errorf("README.md's Reference interface does not list %s", m)
		}
	}
}

// TestMetricNamesCoverTriage: the runbook uses every metric its triage
// reads (the charge and client rates, the outbox, effects against charges,
// the retry budget, latency, the relay and the DLQ).
func TestMetricNamesCoverTriage(t *testing.T) {
	names := MetricNames()
	for _, want := range []string{
		"paytest_charge_requests_total",
		"paytest_client_attempts_total",
		"paytest_outbox_lag_seconds",
		"paytest_outbox_pending",
		"paytest_side_effects_applied_total",
		"paytest_charges_created_total",
		"paytest_retry_budget_exhausted_total",
		"paytest_charge_request_duration_seconds",
		"paytest_relay_published_total",
		"paytest_dlq_messages_total",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("MetricNames() = %v: missing %s", names, want)
		}
	}
	if !slices.IsSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
		t.Errorf("MetricNames() = %v: want sorted, each once", names)
	}
}

func TestMetricNamesParsing(t *testing.T) {
	for _, tc := range []struct {
		name string
		text string
		want []string
	}{
		{"plain", "rate(paytest_charges_created_total[5m])", []string{"paytest_charges_created_total"}},
		{"with labels", `paytest_charge_requests_total{outcome="mismatch"}`, []string{"paytest_charge_requests_total"}},
		{"histogram series fold", "paytest_x_seconds_bucket paytest_x_seconds_sum paytest_x_seconds_count", []string{"paytest_x_seconds"}},
		{"in backquotes", "`paytest_outbox_pending` and `paytest_outbox_lag_seconds`.", []string{"paytest_outbox_lag_seconds", "paytest_outbox_pending"}},
		{"adjacent", "paytest_b,paytest_a paytest_b", []string{"paytest_a", "paytest_b"}},
		{"env vars and prefixes are not metrics", "PAYTEST_OPS my_paytest_x paytest_* paytest.charges.created", nil},
		{"trailing underscore trimmed", "paytest_a_ ", []string{"paytest_a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := metricNames(tc.text); !slices.Equal(got, tc.want) {
				t.Errorf("metricNames(%q) = %v, want %v", tc.text, got, tc.want)
			}
		})
	}
}

// maxLines bounds the runbook to one page.
const maxLines = 120

func TestRunbookIsOnePage(t *testing.T) {
	lines := strings.Count(Runbook(), "\n")
	if lines > maxLines {
		t.Errorf("RUNBOOK.md has %d lines, the page holds %d", lines, maxLines)
	}
	if lines < 40 {
		t.Errorf("RUNBOOK.md has %d lines: too short to be the runbook", lines)
	}
}

// TestRunbookSituations: the three situations each have a section that says
// what it means, gives PromQL to look at, and a fix.
func TestRunbookSituations(t *testing.T) {
	sections := sectionsOf(Runbook())
	for _, tc := range []struct {
		anchor  string
		mention []string
	}{
		{"422-spike", []string{"key", "body", "collision", "client bug", `outcome="mismatch"`}},
		{"attempt-3-surge", []string{`attempt="3"`, "paytest_retry_budget_exhausted_total", "conflict", "error", "503", "409", "histogram_quantile"}},
		{"outbox-lag-growing", []string{"relay", "broker", "--publish-rate", "paytest_relay_published_total", "paytest_dlq_messages_total"}},
		{"side-effects-diverge", []string{"double apply", "inbox", "missing", "paytest_side_effects_applied_total", "paytest_charges_created_total"}},
	} {
		t.Run(tc.anchor, func(t *testing.T) {
			body, ok := sections[tc.anchor]
			if !ok {
				t.Fatalf("no section with anchor #%s; have %v", tc.anchor, keys(sections))
			}
			if !strings.Contains(body, "**Fix:**") && !strings.Contains(body, "restart") {
				t.Errorf("section #%s gives no fix", tc.anchor)
			}
			if !strings.Contains(body, "```promql") {
				t.Errorf("section #%s has no PromQL block", tc.anchor)
			}
			for _, m := range tc.mention {
				if !strings.Contains(body, m) {
					t.Errorf("section #%s does not mention %q", tc.anchor, m)
				}
			}
		})
	}
	for _, anchor := range []string{"422-spike", "attempt-3-surge", "outbox-lag-growing"} {
		if body := sections[anchor]; !strings.Contains(body, "**Means:**") || !strings.Contains(body, "**Fix:**") {
			t.Errorf("section #%s must say what it **Means:** and give a **Fix:**", anchor)
		}
	}
}

// TestRunbookLinks: every in-page link of the runbook lands on a heading.
func TestRunbookLinks(t *testing.T) {
	sections := sectionsOf(Runbook())
	links := regexp.MustCompile(`\]\(#([^)]+)\)`).FindAllStringSubmatch(Runbook(), -1)
	if len(links) < 4 {
		t.Fatalf("the triage table links %d sections, want at least 4", len(links))
	}
	for _, l := range links {
		if _, ok := sections[l[1]]; !ok {
			t.Errorf("link #%s: no such heading (have %v)", l[1], keys(sections))
		}
	}
}

// rule is one alerting rule of alerts.yaml.
type rule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func alertRules(t *testing.T) []rule {
	t.Helper()
	var file struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []rule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(Alerts(), &file); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	var rules []rule
	for _, g := range file.Groups {
		rules = append(rules, g.Rules...)
	}
	return rules
}

func TestAlertRulesShape(t *testing.T) {
	rules := alertRules(t)
	sections := sectionsOf(Runbook())
	var names []string
	for _, r := range rules {
		names = append(names, r.Alert)
		if r.Alert == "" {
			t.Errorf("rule %q is not an alerting rule", r.Expr)
			continue
		}
		if r.For == "" {
			t.Errorf("%s: no for:, it would page on one bad scrape", r.Alert)
		}
		if s := r.Labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("%s: severity %q, want critical or warning", r.Alert, s)
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if r.Annotations[a] == "" {
				t.Errorf("%s: no %s annotation", r.Alert, a)
			}
		}
		page, anchor, _ := strings.Cut(r.Annotations["runbook_url"], "#")
		if page != "runbook/RUNBOOK.md" {
			t.Errorf("%s: runbook_url %q does not point at runbook/RUNBOOK.md", r.Alert, r.Annotations["runbook_url"])
		}
		if _, ok := sections[anchor]; !ok {
			t.Errorf("%s: runbook_url anchor #%s is no heading of the runbook (have %v)", r.Alert, anchor, keys(sections))
		}
		if !strings.Contains(Runbook(), r.Alert) {
			t.Errorf("%s: the runbook's triage table does not name this alert", r.Alert)
		}
	}
	for _, want := range []string{"KeyReuse422Spike", "RetryAttempt3Surge", "OutboxLagGrowing", "SideEffectsDiverge", "DLQNonEmpty"} {
		if !slices.Contains(names, want) {
			t.Errorf("alerts.yaml has %v: missing %s", names, want)
		}
	}
}

// promtool returns the path of promtool, or skips the test saying how to
// get it. CI (.ci/run) installs it.
func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not found in PATH: install Debian's prometheus package (apt-get install -y prometheus) to check the alerting rules; CI installs it")
	}
	return path
}

func runPromtool(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), promtool(t), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
}

// TestAlertRulesCheck: the rules as embedded in the binary pass promtool
// check rules (syntax, PromQL, templates).
func TestAlertRulesCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alerts.yaml")
	if err := os.WriteFile(path, Alerts(), 0o644); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, "", "check", "rules", path)
}

// TestAlertRulesUnit runs testdata/alerts_test.yaml: each alert fires on a
// series that should trigger it and stays quiet on a healthy one.
func TestAlertRulesUnit(t *testing.T) {
	runPromtool(t, ".", "test", "rules", filepath.Join("testdata", "alerts_test.yaml"))
}

// TestAlertRulesUnitCoverage: the unit tests hold, for every alert, a case
// where it fires and a case where it must not.
func TestAlertRulesUnitCoverage(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(raw, &file); err != nil {
		t.Fatalf("testdata/alerts_test.yaml: %v", err)
	}
	if !slices.Equal(file.RuleFiles, []string{"../alerts.yaml"}) {
		t.Errorf("rule_files = %v, want the shipped ../alerts.yaml", file.RuleFiles)
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range file.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	for _, r := range alertRules(t) {
		if !fires[r.Alert] {
			t.Errorf("%s: no unit test shows it firing", r.Alert)
		}
		if !quiet[r.Alert] {
			t.Errorf("%s: no unit test shows it quiet on healthy series", r.Alert)
		}
	}
}

// TestRunbookPromQL: every line of the runbook's promql blocks is valid
// PromQL, checked by promtool as recording rules.
func TestRunbookPromQL(t *testing.T) {
	exprs := promqlOf(Runbook())
	if len(exprs) < 15 {
		t.Fatalf("found %d PromQL expressions in the runbook, want the triage and each section's", len(exprs))
	}
	var b bytes.Buffer
	b.WriteString("groups:\n  - name: runbook\n    rules:\n")
	for i, e := range exprs {
		q, err := yaml.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "      - record: runbook:expr_%d\n        expr: %s", i, q)
	}
	path := filepath.Join(t.TempDir(), "runbook_promql.yaml")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, "", "check", "rules", path)
}

// promqlOf returns the expressions of the ```promql blocks of md, one a
// line; lines starting with # are comments.
func promqlOf(md string) []string {
	var exprs []string
	in := false
	for line := range strings.Lines(md) {
		line = strings.TrimSpace(line)
		switch {
		case line == "```promql":
			in = true
		case in && line == "```":
			in = false
		case in && line != "" && !strings.HasPrefix(line, "#"):
			exprs = append(exprs, line)
		}
	}
	return exprs
}

// sectionsOf maps the GitHub anchor of each heading of md to the text under
// it, up to the next heading of the same or a higher level.
func sectionsOf(md string) map[string]string {
	sections := map[string]string{}
	var anchor string
	var body strings.Builder
	flush := func() {
		if anchor != "" {
			sections[anchor] = body.String()
		}
		body.Reset()
	}
	for line := range strings.Lines(md) {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			flush()
			anchor = slug(strings.TrimSpace(h))
			continue
		}
		body.WriteString(line)
	}
	flush()
	return sections
}

// slug is GitHub's heading anchor: lower case, punctuation dropped, spaces
// turned into hyphens.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
