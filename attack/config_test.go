package attack

import (
	"testing"

	"github.com/paytest/paytest/attack/load"
)

// The client keeps an idle connection for every sender the load can have
// in flight: the open model's cap, not the closed pool's workers, or
// connections past the pool's size are closed and redialled per request.
func TestIdleConnsCoverTheLoadsSenders(t *testing.T) {
	tests := []struct {
		name string
		plan PlanConfig
		want int
	}{
		{"closed pool", PlanConfig{Concurrency: 32, MaxInflight: 256}, 64},
		{"open model", PlanConfig{Concurrency: 32, MaxInflight: 256, Rate: load.Rate{From: 500, To: 500}}, 512},
		{"open model, cap below the pool", PlanConfig{Concurrency: 32, MaxInflight: 8, Rate: load.Rate{From: 500, To: 500}}, 64},
		{"open model, default cap", PlanConfig{Concurrency: 32, Rate: load.Rate{From: 500, To: 500}}, 2 * load.DefaultMaxInflight},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.plan.idleConns(); got != tc.want {
				t.Fatalf("idleConns() = %d, want %d", got, tc.want)
			}
		})
	}
}
