//go:build !linux

package proc

import "os"

// memFS is where Linux keeps a memory file system; unused here.
const memFS = "/dev/shm"

// ScratchParent is where throwaway data directories go: os.TempDir() (only
// Linux has a memory file system at a known place).
func ScratchParent() string { return os.TempDir() }
