package verify

import (
	"bytes"
	"encoding/base64"
	"html/template"
	"strings"
)

// htmlPage is report.html: self-contained (inline CSS, plots as data: URIs),
// so it opens offline and can be attached to a postmortem.
var htmlPage = template.Must(template.New("report").Funcs(template.FuncMap{
	"upper":  strings.ToUpper,
	"status": statusWord,
	"faults": faultList,
	"group":  func(g JitterGroup) string { return groupLabel(jitterKey{g.Reason, g.Attempt}) },
	"ms":     fmtMS,
	"deref": func(p *float64) string {
		if p == nil {
			return "absent"
		}
		return fmtNum(*p)
	},
	"have": func(n int, src string) string { return orMissing(n, src) },
	"load": loadLines,
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>paytest verify: {{.R.Verdict}}</title>
<style>
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0 auto;max-width:1100px;padding:24px;color:#1d1d1f;background:#fff}
h1{font-size:28px;margin:0 0 4px}
h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.verdict{display:inline-block;padding:4px 14px;border-radius:6px;color:#fff;font-weight:700;letter-spacing:.05em}
.v-held{background:#1a7f37}.v-violated{background:#cf222e}.v-inconclusive{background:#9a6700}
table{border-collapse:collapse;width:100%;margin:6px 0}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #eee;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.s-held{color:#1a7f37;font-weight:700}.s-FAILED{color:#cf222e;font-weight:700}.s-inconclusive{color:#9a6700;font-weight:700}.s-nothing{color:#57606a}
.detail{color:#57606a;font-size:13px}
ul.cx{margin:4px 0 0 0;padding-left:18px;font:12px/1.4 ui-monospace,Menlo,Consolas,monospace;color:#cf222e}
figure{margin:14px 0}
figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#57606a;font-size:13px}
code{font:13px ui-monospace,Menlo,Consolas,monospace}
#checks td:first-child{white-space:nowrap}
</style>
</head>
<body>
<h1>paytest verify <span class="verdict v-{{.R.Verdict}}">{{upper .R.Verdict}}</span></h1>
<p>exit code {{.R.ExitCode}} · seed <code>{{.R.Seed}}</code>{{if .R.Profile}} · profile <code>{{.R.Profile}}</code>{{end}}{{if .R.Target}} · target <code>{{.R.Target}}</code>{{end}}{{if .R.Unsafe}} · unsafe <code>{{range .R.Unsafe}}{{.}} {{end}}</code>{{end}}{{if .R.NoJitter}} · <code>--no-jitter</code>{{end}} · {{printf "%.1f" .R.DurationSeconds}} s</p>
{{if .R.Stopped}}<p id="stopped"><b>Stopped early:</b> {{.R.Stopped}} (judged from what was collected).</p>
{{end}}
<h2>Evidence</h2>
<table id="summary">
<tr><th>logical operations</th><td class="num">{{.R.Ops}}</td><td class="detail">from {{.R.OpsSource}}</td></tr>
<tr><th>side effects (metrics)</th><td class="num">{{have .R.SideEffects .R.SideEffectsSource}}</td><td class="detail">{{.R.SideEffectsSource}}</td></tr>
<tr><th>ledger effects</th><td class="num">{{have .R.LedgerEffects .R.LedgerSource}}</td><td class="detail">{{.R.LedgerSource}}{{if .R.LedgerSource}}, {{.R.LedgerKeys}} keys, matched by {{.R.LedgerMatch}}{{end}}</td></tr>
{{if .R.CountersFrom}}<tr><th>counters read from</th><td colspan="2">{{.R.CountersFrom}}{{range .R.CounterResets}}<div class="detail">reset: {{.Page}} <code>{{.Metric}}</code> at {{.Time.Format "15:04:05.000"}}: {{.Before}} → {{.After}}</div>{{end}}</td></tr>
{{end}}
<tr><th>client attempts</th><td class="num">{{.R.Attempts}}</td><td class="detail">{{.R.Races}} races, {{.R.Reuses}} key reuses in the plan</td></tr>
<tr><th>faults injected</th><td colspan="2">{{if .R.Faults}}{{faults .R.Faults}}{{else}}none{{end}}</td></tr>
{{range .R.Backlog}}<tr><th>backlog drain</th><td colspan="2">{{.Summary}}</td></tr>
{{end}}{{with .R.Outage}}<tr><th>outage</th><td colspan="2">{{.Summary}}</td></tr>
{{end}}{{with load .R}}<tr id="load"><th>latency · throughput</th><td colspan="2">{{range .}}<div><code>{{.}}</code></div>{{end}}</td></tr>
{{end}}<tr><th>inbox duplicates · DLQ · outbox pending · outbox lag</th><td colspan="2">{{deref .R.InboxDuplicates}} · {{deref .R.DLQMessages}} · {{deref .R.OutboxPending}} · {{deref .R.OutboxLagSeconds}} s</td></tr>
</table>

<h2>Checks</h2>
<table id="checks">
<tr><th>check</th><th>status</th><th>figure</th><th>evidence</th></tr>
{{range .R.Checks}}<tr id="check-{{.Name}}"><td><code>{{.Name}}</code></td><td class="s-{{status .}}">{{status .}}</td><td>{{.Figure}}{{if .Detail}}<div class="detail">{{.Detail}}</div>{{end}}{{if .Counterexamples}}<ul class="cx">{{range .Counterexamples}}<li>{{.String}}</li>{{end}}{{if gt .CounterexamplesTotal (len .Counterexamples)}}<li>… {{.CounterexamplesTotal}} in all</li>{{end}}</ul>{{end}}</td><td class="detail">{{.Evidence}}</td></tr>
{{end}}</table>

{{if .R.Jitter}}<h2>Full jitter</h2>
<table id="jitter">
<tr><th>retries</th><th>n</th><th>window</th><th>KS (threshold)</th><th>fullest slot (chance ~, p&lt;α at)</th><th></th></tr>
{{range .R.Jitter}}<tr><td>{{group .}}</td><td class="num">{{.N}}</td><td class="num">{{ms .CapMS}} ms</td>{{if .Insufficient}}<td colspan="2" class="detail">insufficient samples</td>{{else}}<td class="num">{{printf "%.3f" .KS}} ({{printf "%.3f" .KSThreshold}})</td><td class="num">{{.MaxSlot}} ({{.MaxSlotExpected}}, {{.MaxSlotCritical}})</td>{{end}}{{if .Insufficient}}<td class="s-nothing">not judged</td>{{else}}<td class="{{if .Held}}s-held{{else}}s-FAILED{{end}}">{{if .Held}}spread{{else}}synchronised{{end}}</td>{{end}}</tr>
{{end}}</table>{{end}}

<h2>Plots</h2>
{{range .Plots}}<figure id="fig-{{.ID}}"><img id="plot-{{.ID}}" alt="{{.Title}}" src="{{.Src}}" width="864" height="384"><figcaption><b>{{.Title}}.</b> {{.Caption}}</figcaption></figure>
{{else}}<p>No plots: the run has no history.</p>{{end}}
<p class="detail">Generated by <code>paytest verify</code>; recompute with <code>paytest verify --run DIR</code>.</p>
</body>
</html>
`))

type htmlPlot struct {
	ID, Title, Caption string
	Src                template.URL
}

// loadLines are the text verdict's latency and throughput lines, and its
// warning when the open model dropped much of the load.
func loadLines(r *Report) []string {
	lines := r.Latency.textLines()
	if l := r.Throughput.textLine(); l != "" {
		lines = append(lines, l)
	}
	if w := dropWarning(r.Latency, r.Throughput); w != "" {
		lines = append(lines, w)
	}
	return lines
}

func writeHTML(path string, r *Report, plots []plotImage) error {
	data := struct {
		R     *Report
		Plots []htmlPlot
	}{R: r}
	for _, p := range plots {
		data.Plots = append(data.Plots, htmlPlot{
			ID: p.ID, Title: p.Title, Caption: p.Caption,
			// The PNG is ours, base64-encoded: a safe data: URI.
			Src: template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(p.PNG)),
		})
	}
	var buf bytes.Buffer
	if err := htmlPage.Execute(&buf, data); err != nil {
		return err
	}
	return writeFileAtomic(path, buf.Bytes())
}
