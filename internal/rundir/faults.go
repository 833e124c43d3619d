package rundir

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/paytest/paytest/internal/apperr"
)

// Fault kinds, as profiles, faults.jsonl and report.json name them
// (README.md, "Reference interface").
const (
	FaultEatResponse = "eat-response"
	FaultBrokerCut   = "broker-cut"
	FaultKill        = "kill"
	FaultRedisLoss   = "redis-loss"
	FaultOutage      = "outage"
	FaultPoison      = "poison"
	FaultLatency     = "latency"
)

// FaultKinds lists every fault kind, sorted.
func FaultKinds() []string {
	return []string{FaultBrokerCut, FaultEatResponse, FaultKill, FaultLatency, FaultOutage, FaultPoison, FaultRedisLoss}
}

// Actions of a Fault record.
const (
	// ActionInject is a one-off injection (a kill, poison events, an
	// eaten response).
	ActionInject = "inject"
	// ActionStart and ActionStop open and close a fault's window (and
	// ActionStop follows a kill when the component is restarted).
	ActionStart = "start"
	ActionStop  = "stop"
	// ActionArm is a crash point set to fire later.
	ActionArm = "arm"
	// ActionError is a fault that failed while running: the run is then
	// inconclusive.
	ActionError = "error"
)

// Fault is one line of faults.jsonl: a fault injected into the system, or
// its end.
type Fault struct {
	Time time.Time `json:"time"`
	// Fault is one of FaultKinds.
	Fault string `json:"fault"`
	// Action is one of the Action constants.
	Action string `json:"action"`
	Target string `json:"target,omitempty"`
	Count  int    `json:"count,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Injected says whether f records an injection: "inject", or a record
// without an action (older runs), not its "arm", "start", "stop" or
// "error".
func (f Fault) Injected() bool { return f.Action == ActionInject || f.Action == "" }

// FaultSpec is one scheduled fault, as a profile states it.
type FaultSpec struct {
	// Fault is the kind: one of FaultKinds.
	Fault string `yaml:"fault" json:"fault"`
	// At is when it fires, as the fraction of operations done (0 to 1).
	At float64 `yaml:"at" json:"at"`
	// Until, if set, ends the window at this fraction of operations done.
	Until float64 `yaml:"until,omitempty" json:"until,omitempty"`
	// Duration, if set, ends the window this long after it started (the
	// first of Until and Duration wins). Neither: the window lasts until
	// the end of the chaos phase.
	Duration time.Duration `yaml:"duration,omitempty" json:"duration,omitempty"`
	// Toxicity is the probability that a request is affected (toxics).
	Toxicity float64 `yaml:"toxicity,omitempty" json:"toxicity,omitempty"`
	// Target is the component (kill) or proxy (latency) acted on.
	Target string `yaml:"target,omitempty" json:"target,omitempty"`
	// Count is how many things a one-off fault injects (poison events).
	Count int `yaml:"count,omitempty" json:"count,omitempty"`
	// Latency and Jitter for the latency fault.
	Latency time.Duration `yaml:"latency,omitempty" json:"latency,omitempty"`
	Jitter  time.Duration `yaml:"jitter,omitempty" json:"jitter,omitempty"`
	// Crash, for kill, names the target's own crash point
	// ("after-publish"): the component is started armed to die there at
	// the At-th fraction of its work, and the fault restarts it when it does.
	Crash string `yaml:"crash,omitempty" json:"crash,omitempty"`
	// Restart is the extra arguments a killed component restarts with.
	Restart []string `yaml:"restart,omitempty" json:"restart,omitempty"`
	// Phase is a free label (redis-loss: "flush" or "restart").
	Phase string `yaml:"phase,omitempty" json:"phase,omitempty"`
}

// Describe is a one-line human description of the spec.
func (s FaultSpec) Describe() string {
	var b strings.Builder
	b.WriteString(s.Fault)
	if s.Target != "" {
		fmt.Fprintf(&b, " %s", s.Target)
	}
	if s.Crash != "" {
		fmt.Fprintf(&b, " at its %s crash point", s.Crash)
	}
	fmt.Fprintf(&b, " at %.0f%%", s.At*100)
	if s.Until > 0 {
		fmt.Fprintf(&b, " until %.0f%%", s.Until*100)
	}
	if s.Duration > 0 {
		fmt.Fprintf(&b, " for %s", s.Duration)
	}
	if s.Toxicity > 0 {
		fmt.Fprintf(&b, " toxicity %.2f", s.Toxicity)
	}
	if s.Latency > 0 {
		fmt.Fprintf(&b, " latency %s", s.Latency)
	}
	if s.Count > 0 {
		fmt.Fprintf(&b, " count %d", s.Count)
	}
	if s.Phase != "" {
		fmt.Fprintf(&b, " (%s)", s.Phase)
	}
	return b.String()
}

// Validate checks the spec's kind and ranges (a usage error).
func (s FaultSpec) Validate() error {
	if !slices.Contains(FaultKinds(), s.Fault) {
		return apperr.Errorf(apperr.EUSAGE, "unknown fault %q (known: %s)", s.Fault, strings.Join(FaultKinds(), ", "))
	}
	if s.At < 0 || s.At > 1 || s.Until < 0 || s.Until > 1 || (s.Until > 0 && s.Until < s.At) {
		return apperr.Errorf(apperr.EUSAGE, "fault %s: at/until must be fractions 0..1 with until >= at", s.Fault)
	}
	if s.Toxicity < 0 || s.Toxicity > 1 {
		return apperr.Errorf(apperr.EUSAGE, "fault %s: toxicity %v not in 0..1", s.Fault, s.Toxicity)
	}
	return nil
}
