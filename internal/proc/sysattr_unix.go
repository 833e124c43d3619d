//go:build unix && !linux

package proc

import "syscall"

// SysProcAttr returns the attributes every child paytest supervises starts
// with: its own process group, so that a terminal's Ctrl-C reaches paytest
// alone and it can stop children in order. These systems have no
// Pdeathsig: a child of a paytest killed outright lives on, and the
// directory it runs in is left to the next paytest's sweep (SweepOrphans).
func SysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
