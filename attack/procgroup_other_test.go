//go:build !unix

package attack

import "os/exec"

// ownGroup does nothing: this system has no process groups to start cmd in.
func ownGroup(*exec.Cmd) {}

// killGroup kills cmd alone: this system has no process groups.
func killGroup(cmd *exec.Cmd) { _ = cmd.Process.Kill() }
