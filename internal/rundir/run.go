package rundir

import (
	"fmt"
	"os"
	"time"

	"gopkg.in/yaml.v3"
)

// Run is run.yaml: what was asked for and when it ran. attack writes it at
// the start (Ended zero) and again at the end; verify reads it.
type Run struct {
	Seed        int64    `yaml:"seed" json:"seed"`
	Profile     string   `yaml:"profile" json:"profile"`
	Target      string   `yaml:"target" json:"target"`
	Ops         int      `yaml:"ops" json:"ops"`
	Concurrency int      `yaml:"concurrency" json:"concurrency"`
	NoJitter    bool     `yaml:"no_jitter,omitempty" json:"no_jitter,omitempty"`
	Unsafe      []string `yaml:"unsafe,omitempty" json:"unsafe,omitempty"`
	// ReuseStatuses are the statuses the endpoint answers a changed body
	// under a used key with (--reuse-status); empty means [422].
	ReuseStatuses []int `yaml:"reuse_statuses,omitempty" json:"reuse_statuses,omitempty"`
	// IDField is the JSON pointer that picked each 2xx answer's resource id
	// (--id-field, default /id).
	IDField string `yaml:"id_field,omitempty" json:"id_field,omitempty"`
	// ReplayHeader is the header (NAME or NAME=VALUE) that marked an answer
	// as a replay (--replay-header, default Idempotent-Replayed: true).
	ReplayHeader string `yaml:"replay_header,omitempty" json:"replay_header,omitempty"`
	// Rate is the open model's arrival rate ("500" or a ramp "100:2000",
	// operations per second); empty for the closed pool of Concurrency
	// workers. MaxInflight is the open model's cap on operations open.
	Rate        string `yaml:"rate,omitempty" json:"rate,omitempty"`
	MaxInflight int    `yaml:"max_inflight,omitempty" json:"max_inflight,omitempty"`
	// Thresholds are the run's load thresholds ("op_p99 < 800ms"): verify
	// judges them again from the run directory alone.
	Thresholds []string `yaml:"thresholds,omitempty" json:"thresholds,omitempty"`
	// Shard is "K/N" for one part of a sharded plan (attack --shard K/N),
	// empty for a whole plan; Ops and Seed are then the whole plan's, and
	// FaultShard the shard that fires the faults that act on the whole
	// system.
	Shard      string `yaml:"shard,omitempty" json:"shard,omitempty"`
	FaultShard int    `yaml:"fault_shard,omitempty" json:"fault_shard,omitempty"`
	// PlanFingerprint identifies the whole plan (every shard's the same).
	PlanFingerprint string `yaml:"plan_fingerprint,omitempty" json:"plan_fingerprint,omitempty"`
	// Stopped says why a shard's run stopped early or its evidence is
	// incomplete (a failed fault, the drain's deadline), for the verdict
	// that merges it with the others.
	Stopped string    `yaml:"stopped,omitempty" json:"stopped,omitempty"`
	Started time.Time `yaml:"started" json:"started"`
	Ended   time.Time `yaml:"ended,omitempty" json:"ended,omitempty"`
	// Config is the whole resolved configuration, flag names as keys.
	Config map[string]any `yaml:"config,omitempty" json:"config,omitempty"`
}

// ShardOf returns the run's shard: 0/1 for a whole plan.
func (r Run) ShardOf() (Shard, error) {
	if r.Shard == "" {
		return Shard{K: 0, N: 1}, nil
	}
	return ParseShard(r.Shard)
}

// WriteRun writes r to path as YAML.
func WriteRun(path string, r Run) error {
	b, err := yaml.Marshal(r)
	if err != nil {
		return fmt.Errorf("rundir: encode run: %w", err)
	}
	return os.WriteFile(path, b, 0o644)
}

// ReadRun reads a run.yaml.
func ReadRun(path string) (Run, error) {
	var r Run
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	if err := yaml.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}
