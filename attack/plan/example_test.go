package plan_test

import (
	"fmt"

	"github.com/paytest/paytest/attack/plan"
)

// The same seed gives the same plan: the fingerprint proves it.
func Example() {
	cfg := plan.DefaultConfig()
	cfg.Seed = 42
	a, _ := plan.New(cfg)
	b, _ := plan.New(cfg)
	fmt.Println(a.Charges(), a.Len()-a.Charges(), a.Fingerprint() == b.Fingerprint())
	// Output: 1000 20 true
}
