package profiles

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paytest/paytest/attack/load"
	"github.com/paytest/paytest/internal/rundir"
	"github.com/paytest/paytest/verify"

	"github.com/paytest/paytest/internal/apperr"
)

func TestBuiltInProfilesLoadAndValidate(t *testing.T) {
	want := []string{"backlog", "crash-charge-after-claim", "crash-charge-after-commit", "crash-consumer-after-apply",
		"crash-relay-after-publish-dedup", "crash-relay-after-publish-nodedup", "default", "endpoint", "key-reuse",
		"kill-charge", "kill-consumer", "kill-relay", "lost-response", "outage", "poison", "race", "redis-loss", "relay-crash"}
	if got := Names(); !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	for _, name := range want {
		p, err := Load(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if p.Name != name || p.Description == "" || p.Ops == 0 || len(p.Injects()) == 0 {
			t.Fatalf("%s: incomplete profile %+v", name, p)
		}
	}
}

func TestDefaultProfileInjectsEverythingTheIssueAsksFor(t *testing.T) {
	p, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if p.Ops != 1000 || p.DuplicateRate == 0 || p.RaceRate == 0 || p.ReuseRate == 0 {
		t.Fatalf("default: %+v", p)
	}
	kinds := map[string]rundir.FaultSpec{}
	for _, f := range p.Faults {
		kinds[f.Fault] = f
	}
	for _, k := range []string{rundir.FaultEatResponse, rundir.FaultBrokerCut, rundir.FaultKill} {
		if _, ok := kinds[k]; !ok {
			t.Errorf("default profile lacks %s", k)
		}
	}
	if d := kinds[rundir.FaultBrokerCut].Duration; d != 1500*time.Millisecond {
		t.Errorf("broker-cut duration %v, want 1.5s parsed from YAML", d)
	}
	if k := kinds[rundir.FaultKill]; k.Target != "relay" || k.Crash != "after-publish" {
		t.Errorf("kill: %+v", k)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "mine.yaml")
	if err := os.WriteFile(good, []byte("ops: 7\nfaults:\n  - fault: latency\n    latency: 20ms\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badFault := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badFault, []byte("faults:\n  - fault: meteor\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	typo := filepath.Join(dir, "typo.yaml")
	if err := os.WriteFile(typo, []byte("opps: 7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Load(good)
	if err != nil || p.Ops != 7 || p.Name != "mine" || p.Faults[0].Latency != 20*time.Millisecond {
		t.Fatalf("Load(file) = %+v, %v", p, err)
	}
	tests := []struct {
		in, want string
	}{
		{"nosuch", "backlog, crash-charge-after-claim, crash-charge-after-commit, crash-consumer-after-apply, crash-relay-after-publish-dedup, crash-relay-after-publish-nodedup, default, endpoint, key-reuse, kill-charge, kill-consumer, kill-relay, lost-response, outage, poison, race, redis-loss, relay-crash"},
		{badFault, "meteor"},
		{typo, "opps"},
		{filepath.Join(dir, "missing.yaml"), "missing.yaml"},
	}
	for _, tt := range tests {
		_, err := Load(tt.in)
		if apperr.Code(err) != apperr.EUSAGE || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Load(%s) = %v, want EUSAGE mentioning %q", tt.in, err, tt.want)
		}
	}
}

func TestValuesUseAttackFlagNames(t *testing.T) {
	p, _ := Load("race")
	v := p.Values()
	if v["ops"] != 500 || v["race-rate"] != 0.5 || v["duplicate-rate"] != 0.5 {
		t.Fatalf("Values() = %v", v)
	}
}

// A profile's rate and thresholds are only strings here (a profile is
// data); their grammars belong to load and verify, and every built-in
// profile must satisfy them.
func TestBuiltInRatesAndThresholdsParse(t *testing.T) {
	for _, p := range List() {
		if p.Rate != "" {
			if _, err := load.ParseRate(p.Rate); err != nil {
				t.Errorf("%s: %v", p.Name, err)
			}
		}
		if _, err := verify.ParseThresholds(p.Thresholds); err != nil {
			t.Errorf("%s: %v", p.Name, err)
		}
	}
	p := Profile{Rate: "100:2000", Duration: 10 * time.Second, MaxInflight: 500, Thresholds: []string{"op_p99 < 800ms"}}
	v := p.Values()
	if v["rate"] != "100:2000" || v["duration"] != "10s" || v["max-inflight"] != 500 || !slices.Equal(v["threshold"].([]string), p.Thresholds) {
		t.Fatalf("Values() = %v", v)
	}
	if err := (Profile{Duration: -time.Second}).Validate(); err == nil {
		t.Fatal("a negative duration validated")
	}
}
