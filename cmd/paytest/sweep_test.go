package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/proc"
	"github.com/paytest/paytest/internal/proc/proctest"
	"github.com/paytest/paytest/internal/testinfra"
)

// startUntil starts paytest with args in TMPDIR tmp, in its own process
// group, and returns once a line of its stderr contains ready. Whatever it
// leaves running is killed when the test ends.
func startUntil(t *testing.T, tmp, ready string, args ...string) (*exec.Cmd, []string) {
	t.Helper()
	cmd := exec.Command(testinfra.Paytest(t), args...)
	cmd.Env = append(cleanEnv(), "TMPDIR="+tmp)
	ownGroup(cmd)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = cmd.Stderr // serve stack says it is ready on stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		killGroup(cmd)
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(stderr)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if strings.Contains(sc.Text(), ready) {
			go func() { _, _ = io.Copy(io.Discard, stderr) }()
			return cmd, lines
		}
	}
	t.Fatalf("paytest %q ended before %q:\n%s", args, ready, strings.Join(lines, "\n"))
	return nil, nil
}

// tempDirs lists the embedded servers' directories in tmp.
func tempDirs(t *testing.T, tmp string) []string {
	t.Helper()
	var dirs []string
	for _, p := range []string{"paytest-pg-*", "paytest-nats-*", "paytest-redis-*"} {
		m, err := filepath.Glob(filepath.Join(tmp, p))
		if err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, m...)
	}
	return dirs
}

// TestSIGKILLedRunIsSweptByTheNext kills a paytest attack outright, which
// leaves its Postgres and NATS directories behind, and checks that the
// next paytest to start embedded servers removes them, and not those of a
// paytest still running.
func TestSIGKILLedRunIsSweptByTheNext(t *testing.T) {
	if testing.Short() {
		t.Skip("boots the reference system")
	}
	tmp := worldTmp(t)
	startUntil(t, tmp, "Ctrl-C to stop.", "serve", "stack")
	alive := tempDirs(t, tmp)
	if len(alive) != 2 {
		t.Fatalf("serve stack made %v", alive)
	}
	attack, _ := startUntil(t, tmp, " up in ", "attack", "--ops", "100000", "--no-progress", "--out", t.TempDir())
	var orphans []string
	for _, d := range tempDirs(t, tmp) {
		if d != alive[0] && d != alive[1] {
			orphans = append(orphans, d)
		}
	}
	if len(orphans) != 2 {
		t.Fatalf("the attack made %v", orphans)
	}
	pg := postmasterOf(t, orphans)
	if err := attack.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = attack.Wait()
	// Its postgres follows it (a parent-death signal); until then its
	// directory is in use.
	testinfra.WaitFor(t, 15*time.Second, func() error {
		if proc.Alive(pg, "") {
			return fmt.Errorf("postgres %d still runs", pg)
		}
		return nil
	})
	for _, d := range orphans {
		if _, err := os.Stat(d); err != nil {
			t.Fatalf("%s went with the killed paytest (%v): the test proves nothing", d, err)
		}
	}

	startUntil(t, tmp, "Ctrl-C to stop.", "serve", "stack")
	for _, d := range orphans {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("%s of the killed paytest is still there", d)
		}
	}
	for _, d := range alive {
		if _, err := os.Stat(filepath.Join(d, proc.OwnerFile)); err != nil {
			t.Errorf("%s of the running paytest: %v", d, err)
		}
	}
}

// postmasterOf returns the pid of the postgres running in the pg directory
// among dirs.
func postmasterOf(t *testing.T, dirs []string) int {
	t.Helper()
	for _, d := range dirs {
		if strings.Contains(filepath.Base(d), "paytest-pg-") {
			return proctest.PostmasterPid(t, d)
		}
	}
	t.Fatalf("no postgres directory among %v", dirs)
	return 0
}
