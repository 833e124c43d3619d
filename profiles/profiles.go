// Package profiles holds paytest's built-in scenarios, one YAML file each,
// embedded in the binary: how many operations, how many senders and races,
// and which faults fire when. A profile is chosen by name or by the path of
// a YAML file of the same shape; its values are defaults that flags,
// PAYTEST_* variables and the config file override.
package profiles

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/paytest/paytest/internal/rundir"

	"gopkg.in/yaml.v3"

	"github.com/paytest/paytest/internal/apperr"
)

//go:embed *.yaml
var files embed.FS

// Default is the profile `paytest attack` runs without --profile.
const Default = "default"

// DefaultTarget is the profile `paytest attack --target URL` runs without
// --profile: the default's load with only the faults that act on a team's
// endpoint.
const DefaultTarget = "endpoint"

// Profile is one scenario.
type Profile struct {
	Name        string `yaml:"name" json:"name"`
	Description string `yaml:"description" json:"description"`
	// Ops is the number of logical operations.
	Ops int `yaml:"ops" json:"ops"`
	// Concurrency is the number of workers sending.
	Concurrency int `yaml:"concurrency" json:"concurrency"`
	// Rate, when set, drives the load as an open model: operations per
	// second ("1000"), or a linear ramp over the run ("100:2000").
	// Duration then sizes the run when Ops is not set (ops = rate x
	// duration); MaxInflight caps the operations open at once.
	Rate        string        `yaml:"rate,omitempty" json:"rate,omitempty"`
	Duration    time.Duration `yaml:"duration,omitempty" json:"duration,omitempty"`
	MaxInflight int           `yaml:"max-inflight,omitempty" json:"max_inflight,omitempty"`
	// Thresholds are load checks: "op_p99 < 800ms" (see paytest attack
	// --help).
	Thresholds []string `yaml:"thresholds,omitempty" json:"thresholds,omitempty"`
	// DuplicateRate, RaceRate and ReuseRate shape the plan: the share of
	// operations sent again by an independent sender, released to several
	// senders at once, and whose key is reused with a changed body.
	DuplicateRate float64 `yaml:"duplicate-rate" json:"duplicate_rate"`
	RaceRate      float64 `yaml:"race-rate" json:"race_rate"`
	ReuseRate     float64 `yaml:"reuse-rate" json:"reuse_rate"`
	// Faults is the fault schedule.
	Faults []rundir.FaultSpec `yaml:"faults" json:"faults"`
	// Redis says the scenario needs the charge service's Redis cache.
	Redis bool `yaml:"redis,omitempty" json:"redis,omitempty"`
	// BudgetCapacity sizes the client's retry budget in tokens (a retry
	// costs 5); 0 keeps the AWS standard's 500.
	BudgetCapacity float64 `yaml:"budget-capacity,omitempty" json:"budget_capacity,omitempty"`
	// MaxRetryAmplification, when set, is the bound no-retry-storm judges
	// each outage window by: attempts sent during it per first attempt.
	// 0 shows the figure without judging it.
	MaxRetryAmplification float64 `yaml:"max-retry-amplification,omitempty" json:"max_retry_amplification,omitempty"`
	// Extra arguments for each reference component's first start.
	Charge   []string `yaml:"charge-args,omitempty" json:"charge_args,omitempty"`
	Relay    []string `yaml:"relay-args,omitempty" json:"relay_args,omitempty"`
	Consumer []string `yaml:"consumer-args,omitempty" json:"consumer_args,omitempty"`
}

// List returns the built-in profiles, sorted by name.
func List() []Profile {
	entries, _ := fs.Glob(files, "*.yaml")
	out := make([]Profile, 0, len(entries))
	for _, e := range entries {
		b, _ := files.ReadFile(e)
		p, err := parse(b, e)
		if err != nil {
			panic(err) // the embedded files are tested
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Names returns the built-in profiles' names, sorted.
func Names() []string {
	var out []string
	for _, p := range List() {
		out = append(out, p.Name)
	}
	return out
}

// Load returns the built-in profile of that name or, when nameOrPath looks
// like a file (has a slash or ends in .yaml/.yml), the profile in that
// file. An unknown name or unreadable file is EUSAGE naming the built-ins.
func Load(nameOrPath string) (Profile, error) {
	if nameOrPath == "" {
		nameOrPath = Default
	}
	if strings.ContainsRune(nameOrPath, os.PathSeparator) || strings.HasSuffix(nameOrPath, ".yaml") || strings.HasSuffix(nameOrPath, ".yml") {
		b, err := os.ReadFile(nameOrPath)
		if err != nil {
			return Profile{}, apperr.Wrap(apperr.EUSAGE, err, "profile %s", nameOrPath)
		}
		p, err := parse(b, nameOrPath)
		if err != nil {
			return Profile{}, err
		}
		if p.Name == "" {
			p.Name = strings.TrimSuffix(path.Base(nameOrPath), path.Ext(nameOrPath))
		}
		return p, nil
	}
	b, err := files.ReadFile(nameOrPath + ".yaml")
	if err != nil {
		return Profile{}, apperr.Errorf(apperr.EUSAGE, "unknown profile %q; built-in profiles: %s (or give a path to a YAML file)",
			nameOrPath, strings.Join(Names(), ", "))
	}
	return parse(b, nameOrPath)
}

func parse(b []byte, src string) (Profile, error) {
	var p Profile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		return Profile{}, apperr.Wrap(apperr.EUSAGE, err, "profile %s", src)
	}
	if err := p.Validate(); err != nil {
		return Profile{}, apperr.Wrap(apperr.EUSAGE, err, "profile %s", src)
	}
	return p, nil
}

// Validate checks the profile's ranges and every fault in its schedule.
func (p Profile) Validate() error {
	if p.Ops < 0 || p.Concurrency < 0 || p.BudgetCapacity < 0 || p.MaxRetryAmplification < 0 || p.Duration < 0 || p.MaxInflight < 0 {
		return fmt.Errorf("ops, concurrency, duration, max-inflight, budget-capacity and max-retry-amplification must not be negative")
	}
	for _, r := range []float64{p.DuplicateRate, p.RaceRate, p.ReuseRate} {
		if r < 0 || r > 1 {
			return fmt.Errorf("rates must be within 0..1")
		}
	}
	for _, f := range p.Faults {
		if err := f.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Values returns the profile's settings keyed by attack's flag names, to be
// laid under flags, environment and config file as defaults. Zero values
// counts are left out, so the built-in defaults apply to what a profile does not
// say. Rates are always set: a profile without races means none.
func (p Profile) Values() map[string]any {
	m := map[string]any{}
	if p.Ops > 0 {
		m["ops"] = p.Ops
	}
	if p.Concurrency > 0 {
		m["concurrency"] = p.Concurrency
	}
	if p.Rate != "" {
		m["rate"] = p.Rate
	}
	if p.Duration > 0 {
		m["duration"] = p.Duration.String()
	}
	if p.MaxInflight > 0 {
		m["max-inflight"] = p.MaxInflight
	}
	if len(p.Thresholds) > 0 {
		m["threshold"] = p.Thresholds
	}
	if p.BudgetCapacity > 0 {
		m["budget-capacity"] = p.BudgetCapacity
	}
	if p.MaxRetryAmplification > 0 {
		m["max-retry-amplification"] = p.MaxRetryAmplification
	}
	m["duplicate-rate"] = p.DuplicateRate
	m["race-rate"] = p.RaceRate
	m["reuse-rate"] = p.ReuseRate
	return m
}

// Injects summarises what the profile injects, for `paytest profiles`.
func (p Profile) Injects() []string {
	var out []string
	if p.DuplicateRate > 0 {
		out = append(out, fmt.Sprintf("duplicates %.0f%%", p.DuplicateRate*100))
	}
	if p.RaceRate > 0 {
		out = append(out, fmt.Sprintf("same-key races %.0f%%", p.RaceRate*100))
	}
	if p.ReuseRate > 0 {
		out = append(out, fmt.Sprintf("key reuse with a changed body %.0f%%", p.ReuseRate*100))
	}
	for _, f := range p.Faults {
		out = append(out, f.Describe())
	}
	if p.BudgetCapacity > 0 {
		out = append(out, fmt.Sprintf("retry budget of %g tokens", p.BudgetCapacity))
	}
	if p.MaxRetryAmplification > 0 {
		out = append(out, fmt.Sprintf("retry amplification during an outage at most %gx", p.MaxRetryAmplification))
	}
	return out
}
