// Command paytest proves that a payment API moves money exactly once: it
// boots (or points at) a charge endpoint, attacks it with duplicates, races,
// lost responses and crashed components, and verifies from metrics, the
// ledger and the client's history that every logical operation was applied
// exactly once. See README.md and `paytest --help`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/proc"
	"github.com/paytest/paytest/internal/redact"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		var quiet *quietError
		if !errors.As(err, &quiet) {
			// An error may quote a URL or a header it was given.
			fmt.Fprintln(os.Stderr, "paytest:", redact.String(err.Error()))
		}
	}
	os.Exit(exitCode(err))
}

// run executes the command line args and returns what went wrong, if anything.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	root := newRootCmd(stdout, stderr)
	bundledOnlyOnUnix(root, runtime.GOOS)
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

// bundledOnlyOnUnix makes the commands that run the bundled reference
// system refuse, on an operating system that cannot run it (goos, as
// runtime.GOOS; see proc.CheckOS), with a usage error that points at
// --target: attack without a target, and every serve command. Flags are
// checked first, as everywhere.
func bundledOnlyOnUnix(root *cobra.Command, goos string) {
	unsupported := proc.CheckOS(goos)
	if unsupported == nil {
		return
	}
	for _, c := range root.Commands() {
		switch c.Name() {
		case "attack":
			refuseIf(c, func(cmd *cobra.Command) error {
				v, err := settings(cmd, nil)
				if err != nil {
					return err
				}
				if v.GetString("target") == "" {
					return unsupported
				}
				return nil
			})
		case "serve":
			for _, s := range c.Commands() {
				refuseIf(s, func(*cobra.Command) error { return unsupported })
			}
		}
	}
}

// refuseIf runs check before c's own RunE, which runs only if check
// returns nil.
func refuseIf(c *cobra.Command, check func(*cobra.Command) error) {
	runE := c.RunE
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if err := check(cmd); err != nil {
			return err
		}
		return runE(cmd, args)
	}
}

// Exit codes, as README.md's "Reference interface" lists them.
const (
	exitHeld         = 0
	exitViolated     = 1
	exitUsage        = 2
	exitInconclusive = 3
)

// exitCode maps an error's code to its exit code. This is the one
// place where errors become exit codes.
func exitCode(err error) int {
	if err == nil {
		return exitHeld
	}
	switch apperr.Code(err) {
	case apperr.EVIOLATED:
		return exitViolated
	case apperr.EUSAGE, apperr.EINVALID:
		return exitUsage
	default:
		// Unavailable infrastructure, internal failures: no verdict could be
		// reached, and paytest never claims "held" without one.
		return exitInconclusive
	}
}

// quietError carries a code for the exit status after the command has already
// told the user everything (a printed verdict), so main prints nothing more.
type quietError struct{ err error }

func (q *quietError) Error() string { return q.err.Error() }
func (q *quietError) Unwrap() error { return q.err }
