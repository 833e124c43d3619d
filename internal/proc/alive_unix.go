//go:build unix

package proc

import (
	"errors"
	"syscall"
)

// processRuns reports whether a process with this pid exists, another
// user's included.
func processRuns(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
