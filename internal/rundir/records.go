package rundir

import "time"

// Op kinds in the plan.
const (
	// KindCharge is a logical charge: it must move money exactly once.
	KindCharge = "charge"
	// KindReuse reuses another op's key with a changed body: it must be
	// rejected (422 unless the run declares other statuses) and move no
	// money.
	KindReuse = "reuse"
)

// Op is one logical operation of the plan.
type Op struct {
	Op       int    `json:"op"`
	Kind     string `json:"kind"`
	Merchant string `json:"merchant,omitempty"`
	Key      string `json:"key"`
	// Amount is the charge's amount in minor units.
	Amount int64 `json:"amount"`
	// BodySHA256 is the hex digest of the body sent.
	BodySHA256 string `json:"body_sha256"`
	// Senders is how many independent senders send this op (1 + duplicates).
	Senders int `json:"senders"`
	// Race is true when the senders are released together by a barrier.
	Race bool `json:"race,omitempty"`
	// ReuseOf is, for KindReuse, the op whose key this one reuses.
	ReuseOf int `json:"reuse_of,omitempty"`
}

// Outcomes of an attempt, as the client saw it.
const (
	OutcomeNew         = "new"          // complete 2xx, not marked as a replay
	OutcomeReplay      = "replay"       // complete 2xx with the replay header (Idempotent-Replayed: true by default)
	OutcomeConflict    = "conflict"     // 409: the key is in flight
	OutcomeMismatch    = "mismatch"     // 422, or a reuse op's declared rejection status
	OutcomeUnavailable = "unavailable"  // 429 or 503
	OutcomeRejected    = "rejected"     // any other 4xx: a definite failure
	OutcomeServerError = "server-error" // other 5xx: indeterminate
	OutcomeTimeout     = "timeout"      // no complete answer within the attempt timeout
	OutcomeNetwork     = "network"      // connection refused, reset, closed, or the body cut off
	OutcomeBudget      = "budget"       // not sent: the retry budget was empty
	OutcomeDropped     = "dropped"      // not sent: the arrival found the in-flight cap full (open model)
)

// Delay reasons: why the client waited before an attempt.
const (
	ReasonFirst      = "first"       // the first attempt: no wait
	ReasonBackoff    = "backoff"     // full jitter over [0, cap]
	ReasonRetryAfter = "retry-after" // Retry-After, plus jitter above it
	ReasonReconcile  = "reconcile"   // re-driven after the chaos window
)

// Attempt is one request the client made (or, for OutcomeBudget, did not).
type Attempt struct {
	Op       int    `json:"op"`
	Kind     string `json:"kind"`
	Sender   int    `json:"sender"`
	CallSite string `json:"call_site"`
	Merchant string `json:"merchant,omitempty"`
	Key      string `json:"key"`
	// Attempt is 1 for the sender's first try, 2 for its first retry...
	Attempt int `json:"attempt"`
	// DelayMS is how long the client waited before this attempt.
	DelayMS     float64 `json:"delay_ms"`
	DelayReason string  `json:"delay_reason"`
	// CapMS is the full-jitter window the delay was drawn from: [0, cap]
	// for backoff, [retry_after, retry_after+cap] for retry-after.
	CapMS float64 `json:"cap_ms,omitempty"`
	// RetryAfterMS is the Retry-After this attempt's response carried.
	RetryAfterMS float64 `json:"retry_after_ms,omitempty"`
	// Status is the status line's code, kept when the body that followed
	// was cut off (then Outcome is timeout or network and Error says why).
	Status   int    `json:"status"`
	Outcome  string `json:"outcome"`
	Replayed bool   `json:"replayed,omitempty"`
	// ChargeID is the resource id read from a complete 2xx JSON body.
	ChargeID string `json:"charge_id,omitempty"`
	// BodySHA256 is the hex SHA-256 of a complete 2xx body: two answers
	// with the same digest are the same answer replayed.
	BodySHA256 string `json:"body_sha256,omitempty"`
	Error      string `json:"error,omitempty"`
	// Intended is when the attempt was due: in the open model, a first
	// attempt's arrival on the schedule (zero: it was due when it was
	// sent, at Start). Latency counts from it, so the queue a slow target
	// builds stays in the figures (no coordinated omission).
	Intended time.Time `json:"intended,omitzero"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
}

// Due is when the attempt was due: Intended, or Start without one.
func (a *Attempt) Due() time.Time {
	if !a.Intended.IsZero() {
		return a.Intended
	}
	return a.Start
}

// Sent says whether the attempt went out (it was neither refused by the
// retry budget nor dropped at the in-flight cap).
func (a *Attempt) Sent() bool {
	return a.Outcome != OutcomeBudget && a.Outcome != OutcomeDropped
}
