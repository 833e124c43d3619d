package proc

import "syscall"

// SysProcAttr returns the attributes every child paytest supervises starts
// with: its own process group, so that a terminal's Ctrl-C reaches paytest
// alone and it can stop children in order, and Pdeathsig, so that none
// outlives a killed paytest.
func SysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
