package proc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// OwnerFile is the file in an owned temporary directory that names the
// process that made it: "pid start-time", the start time as /proc gives it
// (clock ticks since boot), so that a reused pid is not taken for the owner.
const OwnerFile = ".paytest-owner"

// ownerlessAge is how old a matching directory without an owner file must
// be before a sweep takes it for an orphan: one made by a paytest that
// predates owner files, or by one killed between making it and naming
// itself. A process that is making one right now is well under it.
const ownerlessAge = time.Hour

// OwnedTempDir makes a new temporary directory, as os.MkdirTemp("",
// pattern), and records this process as its owner, so that SweepOrphans in
// a later process can remove it if this one dies without cleaning up (a
// SIGKILL runs no deferred function).
func OwnedTempDir(pattern string) (string, error) {
	return ownedTempDirIn("", pattern)
}

// ownedTempDirIn is OwnedTempDir in parent (empty: os.TempDir()).
func ownedTempDirIn(parent, pattern string) (string, error) {
	dir, err := os.MkdirTemp(parent, pattern)
	if err != nil {
		return "", err
	}
	pid := os.Getpid()
	rec := strconv.Itoa(pid) + " " + startTime(pid) + "\n"
	if err := os.WriteFile(filepath.Join(dir, OwnerFile), []byte(rec), 0o644); err != nil {
		_ = os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// SweepOrphans removes the directories of os.TempDir() made by
// OwnedTempDir(pattern) whose owner process is gone (or whose pid now
// belongs to a process started later), and matching directories with no
// owner file that are older than an hour. keep, when set, is asked about
// each candidate and can spare it (a server still running in it). It
// returns the directories removed; a directory it may not remove (another
// user's) is skipped.
func SweepOrphans(pattern string, keep func(dir string) bool) []string {
	return sweepOrphansIn("", pattern, keep)
}

// sweepOrphansIn is SweepOrphans in parent (empty: os.TempDir()).
func sweepOrphansIn(parent, pattern string, keep func(dir string) bool) []string {
	if parent == "" {
		parent = os.TempDir()
	}
	matches, _ := filepath.Glob(filepath.Join(parent, globQuote(pattern)+"*"))
	var removed []string
	for _, dir := range matches {
		if !orphaned(dir) || (keep != nil && keep(dir)) {
			continue
		}
		if os.RemoveAll(dir) == nil {
			removed = append(removed, dir)
		}
	}
	return removed
}

// orphaned reports whether dir's owner process is gone.
func orphaned(dir string) bool {
	st, err := os.Lstat(dir)
	if err != nil || !st.IsDir() {
		return false
	}
	b, err := os.ReadFile(filepath.Join(dir, OwnerFile))
	if errors.Is(err, os.ErrNotExist) {
		return time.Since(st.ModTime()) > ownerlessAge
	}
	if err != nil {
		return false
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return time.Since(st.ModTime()) > ownerlessAge
	}
	pid, err := strconv.Atoi(fields[0])
	if err != nil || pid <= 0 {
		return time.Since(st.ModTime()) > ownerlessAge
	}
	start := ""
	if len(fields) > 1 {
		start = fields[1]
	}
	return !Alive(pid, start)
}

// Alive reports whether process pid runs and, when start is not empty,
// started at start (its /proc start time): a pid reused by a later
// process is not alive in this sense.
func Alive(pid int, start string) bool {
	if !processRuns(pid) {
		return false
	}
	if start == "" {
		return true
	}
	now := startTime(pid)
	// Without /proc (not Linux) the start time cannot be compared: trust
	// the pid.
	return now == "" || now == start
}

// startTime returns the start time of process pid in clock ticks since
// boot (field 22 of /proc/PID/stat), or "" when it cannot be read.
func startTime(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// The command name (field 2) is parenthesised and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	fields := strings.Fields(s[i+1:])
	// fields[0] is field 3 (state), so field 22 is fields[19].
	if len(fields) < 20 {
		return ""
	}
	return fields[19]
}

// globQuote escapes the glob metacharacters of a literal prefix.
func globQuote(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// OwnedScratchDir makes an owned temporary directory in ScratchParent()
// after sweeping the orphans of pattern there and in os.TempDir() (where
// the directory goes when TMPDIR is set, and where it went before).
func OwnedScratchDir(pattern string, keep func(dir string) bool) (string, error) {
	parent := ScratchParent()
	sweepOrphansIn(parent, pattern, keep)
	if parent != os.TempDir() {
		sweepOrphansIn("", pattern, keep)
	}
	return ownedTempDirIn(parent, pattern)
}
