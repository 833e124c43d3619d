package rundir

import (
	"slices"
	"testing"
)

func TestFaultKindsSorted(t *testing.T) {
	if !slices.IsSorted(FaultKinds()) {
		t.Fatalf("FaultKinds() = %v, want sorted", FaultKinds())
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		spec FaultSpec
		ok   bool
	}{
		{FaultSpec{Fault: FaultEatResponse, At: 0.1, Until: 0.5, Toxicity: 0.3}, true},
		{FaultSpec{Fault: "meteor"}, false},
		{FaultSpec{Fault: FaultBrokerCut, At: 1.5}, false},
		{FaultSpec{Fault: FaultBrokerCut, At: 0.5, Until: 0.2}, false},
		{FaultSpec{Fault: FaultEatResponse, Toxicity: 2}, false},
	}
	for _, tt := range tests {
		if err := tt.spec.Validate(); (err == nil) != tt.ok {
			t.Errorf("%+v: err = %v, want ok=%v", tt.spec, err, tt.ok)
		}
	}
}
