package profiles

import (
	"strings"
	"testing"
	"time"
)

// TestOutageProfile: the outage profile cuts the charge service's database
// for a timed window while the load runs, sizes its retry budget and sets
// the bound no-retry-storm judges by, both as attack flag values.
func TestOutageProfile(t *testing.T) {
	p, err := Load("outage")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Faults) != 1 || p.Faults[0].Fault != "outage" || p.Faults[0].Duration != 3*time.Second || p.Faults[0].At <= 0 {
		t.Fatalf("faults %+v; want one timed outage while the load runs", p.Faults)
	}
	v := p.Values()
	if v["budget-capacity"] != 50.0 || v["max-retry-amplification"] != 1.2 {
		t.Fatalf("Values() = %v; want budget-capacity 50 and max-retry-amplification 1.2", v)
	}
	if inj := strings.Join(p.Injects(), "; "); !strings.Contains(inj, "retry budget of 50 tokens") || !strings.Contains(inj, "at most 1.2x") {
		t.Fatalf("Injects() = %s", inj)
	}
	if d, _ := Load("default"); d.Values()["budget-capacity"] != nil || d.Values()["max-retry-amplification"] != nil {
		t.Fatalf("the default profile sets budget values: %v", d.Values())
	}
	for _, bad := range []Profile{{BudgetCapacity: -1}, {MaxRetryAmplification: -0.5}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate(%+v) accepted a negative value", bad)
		}
	}
}
