package main

import (
	"bytes"
	"testing"
)

// TestAttackBudgetFlags: --budget-capacity and --max-retry-amplification
// default to the profile's values (the outage profile's 50 and 1.2, none
// for the default profile) and a flag overrides them.
func TestAttackBudgetFlags(t *testing.T) {
	tests := []struct {
		args          []string
		capacity, amp float64
	}{
		{nil, 0, 0},
		{[]string{"--profile", "outage"}, 50, 1.2},
		{[]string{"--profile", "outage", "--budget-capacity", "200", "--max-retry-amplification", "2"}, 200, 2},
		{[]string{"--max-retry-amplification", "1.5"}, 0, 1.5},
	}
	for _, tt := range tests {
		root := newRootCmd(&bytes.Buffer{}, &bytes.Buffer{})
		cmd, rest, err := root.Find(append([]string{"attack"}, tt.args...))
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.ParseFlags(rest); err != nil {
			t.Fatal(err)
		}
		cfg, _, err := attackConfig(cmd)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Client.BudgetCapacity != tt.capacity || cfg.Client.MaxRetryAmplification != tt.amp {
			t.Errorf("%v: budget capacity %v, max retry amplification %v; want %v, %v", tt.args, cfg.Client.BudgetCapacity, cfg.Client.MaxRetryAmplification, tt.capacity, tt.amp)
		}
		if cfg.Settings["budget-capacity"] == nil || cfg.Settings["max-retry-amplification"] == nil {
			t.Errorf("%v: run.yaml settings lack the budget values: %v", tt.args, cfg.Settings)
		}
	}
}
