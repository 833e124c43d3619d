package proc

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/proc/proctest"
)

// TestHelperOwner is not a test: run as a child process (by ownerChild), it
// makes an owned directory, prints its path and waits to be killed.
func TestHelperOwner(t *testing.T) {
	if os.Getenv("PROC_TEST_OWNER") != "1" {
		t.Skip("helper process")
	}
	dir, err := OwnedTempDir("paytest-sweeptest-")
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println(dir)
	time.Sleep(time.Hour)
}

// ownerChild starts a child process that owns a new temporary directory in
// tmp, and returns the child and the directory.
func ownerChild(t *testing.T, tmp string) (*exec.Cmd, string) {
	t.Helper()
	cmd, dir := proctest.Child(t, "TestHelperOwner", "PROC_TEST_OWNER=1", "TMPDIR="+tmp)
	if !strings.HasPrefix(dir, tmp) {
		t.Fatalf("child printed %q, want a directory in %s", dir, tmp)
	}
	return cmd, dir
}

func TestSweepOrphans(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)

	killed, orphan := ownerChild(t, tmp)
	_, alive := ownerChild(t, tmp)
	if err := killed.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = killed.Wait() // reaped: its pid is gone

	// A directory whose pid was reused by a later process: this test's own
	// pid with another start time.
	reused := filepath.Join(tmp, "paytest-sweeptest-reused")
	mkOwned(t, reused, fmt.Sprintf("%d 1\n", os.Getpid()))
	// Ours, with our own start time: alive.
	mine := filepath.Join(tmp, "paytest-sweeptest-mine")
	mkOwned(t, mine, fmt.Sprintf("%d %s\n", os.Getpid(), startTime(os.Getpid())))
	// No owner file: a fresh one is being made, an old one is an orphan.
	fresh := filepath.Join(tmp, "paytest-sweeptest-fresh")
	old := filepath.Join(tmp, "paytest-sweeptest-old")
	for _, d := range []string{fresh, old} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-2 * ownerlessAge)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	// Another prefix is not ours to sweep.
	other := filepath.Join(tmp, "paytest-other-x")
	mkOwned(t, other, "999999999 1\n")
	// The keep hook spares a directory (a server still running in it).
	spared := filepath.Join(tmp, "paytest-sweeptest-spared")
	mkOwned(t, spared, "999999999 1\n")

	removed := SweepOrphans("paytest-sweeptest-", func(dir string) bool { return dir == spared })

	gone := map[string]bool{orphan: true, reused: true, old: true}
	for _, d := range []string{orphan, alive, reused, mine, fresh, old, other, spared} {
		_, err := os.Stat(d)
		if exists := err == nil; exists == gone[d] {
			t.Errorf("%s: exists=%v, want %v", filepath.Base(d), exists, !gone[d])
		}
	}
	if len(removed) != len(gone) {
		t.Errorf("removed %v, want the %d orphans", removed, len(gone))
	}
}

func mkOwned(t *testing.T, dir, owner string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, OwnerFile), []byte(owner), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestAlive(t *testing.T) {
	me := os.Getpid()
	if !Alive(me, "") || !Alive(me, startTime(me)) {
		t.Fatal("this process is not alive")
	}
	if st := startTime(me); st == "" {
		t.Fatal("no start time for this process")
	} else if n, _ := strconv.Atoi(st); Alive(me, strconv.Itoa(n+1)) {
		t.Fatal("a later start time is taken for this process")
	}
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if Alive(cmd.Process.Pid, "") {
		t.Fatalf("pid %d of an exited, reaped child is alive", cmd.Process.Pid)
	}
}
