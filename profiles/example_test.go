package profiles_test

import (
	"fmt"

	"github.com/paytest/paytest/profiles"
)

func ExampleLoad() {
	p, err := profiles.Load("relay-crash")
	if err != nil {
		panic(err)
	}
	fmt.Println(p.Ops, p.Faults[0].Describe())
	// Output: 500 kill relay at its after-publish crash point at 30%
}
