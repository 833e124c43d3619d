package main

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/paytest/paytest/internal/proc"
)

// runOn runs the command line args as paytest would on the operating
// system goos, returning the exit code and the error's text.
func runOn(t *testing.T, goos string, args ...string) (int, string) {
	t.Helper()
	root := newRootCmd(io.Discard, io.Discard)
	bundledOnlyOnUnix(root, goos)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	if err == nil {
		return exitCode(err), ""
	}
	return exitCode(err), err.Error()
}

// TestWindowsRefusesTheBundledSystem: on Windows, attack without --target
// and every serve command exit 2 saying the bundled system needs Linux or
// macOS and to use --target; flags are still checked first.
func TestWindowsRefusesTheBundledSystem(t *testing.T) {
	t.Setenv("PAYTEST_TARGET", "")
	for _, args := range [][]string{
		{"attack"},
		{"attack", "--ops", "10"},
		{"serve", "charge"},
		{"serve", "relay"},
		{"serve", "consumer"},
		{"serve", "stack"},
	} {
		code, msg := runOn(t, "windows", args...)
		if code != exitUsage || msg != proc.BundledNeedsUnix {
			t.Errorf("%v: exit %d, %q; want exit 2, %q", args, code, msg, proc.BundledNeedsUnix)
		}
	}
	if code, msg := runOn(t, "windows", "attack", "--no-such-flag"); code != exitUsage || !strings.Contains(msg, "unknown flag") {
		t.Errorf("a bad flag: exit %d, %q; want its own usage error", code, msg)
	}
}

// TestWindowsAllowsTarget: with --target (or PAYTEST_TARGET) attack gets
// past the refusal to its own checks, and the commands that start no
// process run as anywhere.
func TestWindowsAllowsTarget(t *testing.T) {
	// --charge-arg with --target is attack's own usage error, reached only
	// past the refusal.
	code, msg := runOn(t, "windows", "attack", "--target", "http://127.0.0.1:1/charge", "--charge-arg=--x")
	if code != exitUsage || !strings.Contains(msg, "--charge-arg applies only to the bundled reference system") {
		t.Errorf("--target: exit %d, %q", code, msg)
	}
	t.Setenv("PAYTEST_TARGET", "http://127.0.0.1:1/charge")
	code, msg = runOn(t, "windows", "attack", "--charge-arg=--x")
	if code != exitUsage || !strings.Contains(msg, "--charge-arg applies only to the bundled reference system") {
		t.Errorf("PAYTEST_TARGET: exit %d, %q", code, msg)
	}
	for _, args := range [][]string{{"version"}, {"profiles"}} {
		if code, msg := runOn(t, "windows", args...); code != exitHeld {
			t.Errorf("%v: exit %d, %q", args, code, msg)
		}
	}
}
