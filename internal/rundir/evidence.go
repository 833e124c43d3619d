package rundir

import "time"

// LedgerRow is one line of ledger.jsonl: the effects the ledger holds for
// one (merchant, key), or one (merchant, key, amount) for a four-column
// query. Merchant is empty for a two-column ledger query.
type LedgerRow struct {
	Merchant string `json:"merchant,omitempty"`
	Key      string `json:"key"`
	// Amount, from a four-column query, lets a changed-body reuse's
	// effects (its amount differs from the original's) be told apart from
	// the original op's.
	Amount  *int64 `json:"amount,omitempty"`
	Effects int64  `json:"effects"`
}

// EventRow is one line of events.jsonl: an event the consumer applied more
// than once (Applied times), with its merchant and key when the events
// query returns them.
type EventRow struct {
	Event    string `json:"event"`
	Merchant string `json:"merchant,omitempty"`
	Key      string `json:"key,omitempty"`
	Applied  int64  `json:"applied"`
}

// Collected is metrics/sources.json: what verify.Collect was asked to gather, so an
// offline Verify knows which evidence the run is expected to have. URLs are
// stored without credentials.
type Collected struct {
	Time             time.Time         `json:"time"`
	Pages            map[string]string `json:"pages,omitempty"`
	PrometheusURL    string            `json:"prometheus_url,omitempty"`
	SideEffectMetric string            `json:"side_effect_metric"`
	SideEffectQuery  string            `json:"side_effect_query,omitempty"`
	Database         string            `json:"database,omitempty"`
	LedgerQuery      string            `json:"ledger_query,omitempty"`
	EventsQuery      string            `json:"events_query,omitempty"`
	// Errors lists what could not be collected. A run directory with any
	// is never judged "held".
	Errors []string `json:"errors,omitempty"`
}

// PromAnswers is metrics/prometheus.json: the PromQL instant queries Collect
// ran and their answers, and the side-effect counter's series since the run
// began (when run.yaml says when, and the side-effect query is the default
// sum), which verify sums across restarts.
type PromAnswers struct {
	URL              string                `json:"url"`
	Time             time.Time             `json:"time"`
	Answers          map[string]PromAnswer `json:"answers"`
	SideEffectSeries []PromSeries          `json:"side_effect_series,omitempty"`
}

// PromSeries is one series of a range query: its labels and its samples
// as [unix seconds, value].
type PromSeries struct {
	Metric map[string]string `json:"metric"`
	Values [][2]float64      `json:"values"`
}

// PromAnswer is one query's answer: Value is the sum of the vector's
// samples, nil when the vector was empty (the metric does not exist).
type PromAnswer struct {
	Query  string   `json:"query"`
	Value  *float64 `json:"value"`
	Series int      `json:"series"`
}
