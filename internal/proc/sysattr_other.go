//go:build !unix

package proc

import "syscall"

// SysProcAttr returns nil: this system has no process groups or signals
// for paytest to use, and Start refuses to run children here (CheckOS).
func SysProcAttr() *syscall.SysProcAttr { return nil }
