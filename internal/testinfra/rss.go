package testinfra

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

// PeakRSSKiB reads this process's peak resident set size (VmHWM), in KiB,
// for the benchmarks that bound memory; it skips where /proc is missing.
func PeakRSSKiB(tb testing.TB) int {
	tb.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		tb.Skipf("no /proc/self/status: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				tb.Fatalf("VmHWM %q: %v", v, err)
			}
			return n
		}
	}
	tb.Fatal("no VmHWM in /proc/self/status")
	return 0
}
