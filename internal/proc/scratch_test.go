package proc

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TMPDIR, when set, is the user's choice and wins; unset, a scratch
// directory goes where ScratchParent says and can be made there.
func TestScratchParent(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	if got := ScratchParent(); got != tmp {
		t.Fatalf("ScratchParent() = %q with TMPDIR=%s", got, tmp)
	}
	dir, err := OwnedScratchDir("paytest-scratchtest-", nil)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Dir(dir) != tmp {
		t.Fatalf("scratch dir %s not in TMPDIR %s", dir, tmp)
	}
	_ = os.RemoveAll(dir)

	t.Setenv("TMPDIR", "")
	parent := ScratchParent()
	if parent != os.TempDir() && (runtime.GOOS != "linux" || parent != memFS) {
		t.Fatalf("ScratchParent() = %q, want %s or (on Linux) %s", parent, os.TempDir(), memFS)
	}
	t.Logf("scratch parent: %s", parent)
	dir, err = OwnedScratchDir("paytest-scratchtest-", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if filepath.Dir(dir) != parent {
		t.Fatalf("scratch dir %s not in %s", dir, parent)
	}
	if _, err := os.Stat(filepath.Join(dir, OwnerFile)); err != nil {
		t.Fatalf("scratch dir has no owner file: %v", err)
	}
}
