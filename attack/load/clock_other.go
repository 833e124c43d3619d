//go:build !linux

package load

// newPacerClock returns a Go timer clock (only Linux has the precise one).
func newPacerClock() pacerClock { return newTimerClock() }
