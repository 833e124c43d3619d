package fault_test

import (
	"fmt"

	"github.com/paytest/paytest/attack/fault"
)

func ExampleNames() {
	fmt.Println(fault.Names())
	// Output: [broker-cut eat-response kill latency outage poison redis-loss]
}
