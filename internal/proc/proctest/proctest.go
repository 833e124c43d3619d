// Package proctest helps tests that run and watch real processes: a test
// binary run again as a helper child, and the pid of the postgres serving
// a cluster directory. It imports nothing of paytest's, so that any test,
// internal/proc's own among them, can use it.
package proctest

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Child runs the test binary again as a child process that runs only the
// test function named test, with env added to its environment, and
// returns the child and the first line it prints (trimmed). The helper
// test is expected to skip unless env says it is the child, print a line
// once set up and then wait. The child is killed when the test ends.
func Child(tb testing.TB, test string, env ...string) (*exec.Cmd, string) {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		tb.Fatalf("helper child %s printed %q, %v", test, line, err)
	}
	return cmd, strings.TrimSpace(line)
}

// PostmasterPid returns the pid of the postgres running in the cluster
// directory dir (as pgembed lays it out: the first line of
// data/postmaster.pid).
func PostmasterPid(tb testing.TB, dir string) int {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		tb.Fatal(err)
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		tb.Fatalf("%s/data/postmaster.pid: %v", dir, err)
	}
	return pid
}
