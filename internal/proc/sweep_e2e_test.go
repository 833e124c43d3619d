package proc_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/natsembed"
	"github.com/paytest/paytest/internal/pgembed"
	"github.com/paytest/paytest/internal/proc"
	"github.com/paytest/paytest/internal/proc/proctest"
	"github.com/paytest/paytest/internal/redisembed"
)

// TestHelperEmbedded is not a test: run as a child process (by
// embeddedChild), it starts the three embedded servers, prints their
// directories and waits to be killed.
func TestHelperEmbedded(t *testing.T) {
	if os.Getenv("PROC_TEST_EMBEDDED") != "1" {
		t.Skip("helper process")
	}
	ctx := context.Background()
	pg, err := pgembed.Start(ctx, pgembed.Options{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	ns, err := natsembed.Start(natsembed.Options{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	rs, err := redisembed.Start(ctx)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println(pg.Dir(), ns.StoreDir(), rs.Dir())
	time.Sleep(time.Hour)
}

// embeddedChild starts a child process running the three embedded servers
// in tmp and returns it with their directories.
func embeddedChild(t *testing.T, tmp string) (*exec.Cmd, []string) {
	t.Helper()
	cmd, line := proctest.Child(t, "TestHelperEmbedded", "PROC_TEST_EMBEDDED=1", "TMPDIR="+tmp)
	dirs := strings.Fields(line)
	if len(dirs) != 3 {
		t.Fatalf("child printed %q, want three directories", line)
	}
	return cmd, dirs
}

// TestStartSweepsWhatAKilledProcessLeft is the SIGKILL case: nothing of a
// killed paytest can clean up, so its Postgres, NATS and Redis directories
// stay; the next start of each server removes them, and leaves those of a
// process still running alone.
func TestStartSweepsWhatAKilledProcessLeft(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real servers")
	}
	// Not t.TempDir(): as root, postgres runs as the postgres user, who
	// must reach the directory.
	tmp, err := os.MkdirTemp("", "sweep-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o777); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(tmp) })
	t.Setenv("TMPDIR", tmp)

	killed, orphans := embeddedChild(t, tmp)
	_, alive := embeddedChild(t, tmp)
	pgPid := proctest.PostmasterPid(t, orphans[0])
	if err := killed.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = killed.Wait()
	// Its postgres follows it (a parent-death signal).
	deadline := time.Now().Add(15 * time.Second)
	for proc.Alive(pgPid, "") {
		if time.Now().After(deadline) {
			t.Fatalf("postgres %d outlived its killed parent", pgPid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, d := range orphans {
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("the killed process's %s is already gone: %v", d, err)
		}
	}

	ctx := context.Background()
	pg, err := pgembed.Start(ctx, pgembed.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pg.Stop() })
	ns, err := natsembed.Start(natsembed.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	rs, err := redisembed.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Stop)

	for _, d := range orphans {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("%s of the killed process was not swept", d)
		}
	}
	for _, d := range append(alive, pg.Dir(), ns.StoreDir(), rs.Dir()) {
		if _, err := os.Stat(filepath.Join(d, proc.OwnerFile)); err != nil {
			t.Errorf("%s of a running process: %v", d, err)
		}
	}
}
