//go:build unix

package charge

import (
	"syscall"
	"testing"
)

// connBudget returns how many connections the test may open, raising the
// soft file-descriptor limit if it must: each connection costs two
// descriptors in this process (client and server end), plus a margin for
// the database pool and the runtime. With a hard limit too low for want it
// opens fewer and says so.
func connBudget(t *testing.T, want int) int {
	t.Helper()
	need := uint64(2*want + 512)
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	if rl.Cur < need {
		old := rl.Cur
		rl.Cur = min(need, rl.Max)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: old, Max: rl.Max}) })
	}
	if rl.Cur < need {
		n := int(rl.Cur-512) / 2
		t.Logf("RLIMIT_NOFILE hard limit %d allows %d connections, not %d", rl.Max, n, want)
		return n
	}
	return want
}
