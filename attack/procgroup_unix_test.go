//go:build unix

package attack

import (
	"os/exec"
	"syscall"
)

// ownGroup starts cmd in a process group of its own, as a terminal would
// start paytest, so that killGroup reaches every process it starts.
func ownGroup(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }

// killGroup sends SIGKILL to cmd's process group.
func killGroup(cmd *exec.Cmd) { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
