package proc

import (
	"os"

	"golang.org/x/sys/unix"
)

// memFS is where ScratchParent looks for a memory file system.
const memFS = "/dev/shm"

// minScratchFree is the space a memory file system must have free to hold
// throwaway data directories: a cluster grows by about 5 KB an operation
// (keys with their stored responses, charges, outbox, ledger, WAL), so a
// million-operation run needs a few GB.
const minScratchFree = 4 << 30

// ScratchParent is where throwaway data directories (an embedded cluster,
// a broker's store) go: os.TempDir() when TMPDIR is set (the user chose),
// else /dev/shm when it is a memory file system with at least 4 GiB free,
// else os.TempDir(). Creating a file on a memory file system costs
// microseconds, on a journalled disk up to a millisecond, and an initdb'd
// cluster is about a thousand files.
func ScratchParent() string {
	if os.Getenv("TMPDIR") != "" {
		return os.TempDir()
	}
	var st unix.Statfs_t
	if err := unix.Statfs(memFS, &st); err != nil || st.Type != unix.TMPFS_MAGIC ||
		st.Bavail*uint64(st.Bsize) < minScratchFree || unix.Access(memFS, unix.W_OK) != nil {
		return os.TempDir()
	}
	return memFS
}
