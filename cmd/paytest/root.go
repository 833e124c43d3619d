package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/paytest/paytest/internal/apperr"
)

// Set by the linker: -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = "none"
)

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "paytest",
		Short: "Prove that a payment API moves money exactly once",
		Long: `paytest turns "effectively-once" from a belief into evidence.

It boots a bundled reference payment system (POST /charge with an idempotency
key state machine in Postgres, a transactional outbox, a relay to NATS
JetStream and a ledger consumer with an inbox), or points at your own endpoint,
attacks it with duplicates, same-key races, lost responses, a cut broker and a
crashed relay, and verifies from metrics, the ledger and the client's history
that every logical operation moved money exactly once.

Exit codes: 0 held, 1 violated, 2 usage error, 3 inconclusive.`,
		Example: `  paytest attack                          # the default scenario on embedded infrastructure
  paytest attack --profile race --ops 200 # one scenario, smaller
  paytest attack --target https://api.example.test/charge --metrics-url http://.../metrics
  paytest verify --run runs/2026-11-28T12-00-00
  paytest profiles                        # what each scenario injects`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.PersistentFlags().String("config", "", "config file (YAML, JSON or TOML) with the command's flag names as keys (any other key is refused)")
	root.PersistentFlags().String("log-level", "info", "log level: debug, info, warn, error")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		msg := err.Error()
		if cmd.HasParent() {
			msg = cmd.CommandPath() + ": " + msg
		}
		return apperr.Errorf(apperr.EUSAGE, "%s\n\nRun '%s --help' for usage.", msg, cmd.CommandPath())
	})
	root.AddCommand(
		newVersionCmd(),
		newAttackCmd(),
		newVerifyCmd(),
		newServeCmd(),
		newRunbookCmd(),
		newProfilesCmd(),
	)
	// cobra adds its help and completion commands when it executes: add
	// them now, so that their arguments are checked like every other's.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	strictArgs(root)
	return root
}

// strictArgs makes every positional argument that names no command a usage
// error (exit 2) with cobra's suggestions, on every command of the tree:
// cobra's own "unknown command" errors carry no code (exit 3), and a
// command that only groups others would print its help and exit 0.
func strictArgs(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		strictArgs(c)
	}
	if cmd.Name() == "help" && !cmd.HasSubCommands() {
		// "paytest help attack": its arguments name a command.
		cmd.Args = func(c *cobra.Command, args []string) error {
			found, rest, err := c.Root().Find(args)
			if err != nil {
				return apperr.Wrap(apperr.EUSAGE, err, "%s", c.CommandPath())
			}
			return unknownCommand(found, rest)
		}
		return
	}
	if cmd.HasSubCommands() {
		cmd.Args = unknownCommand
		if cmd.RunE == nil && cmd.Run == nil {
			// Bare "paytest" or "paytest serve": the help, exit 0.
			cmd.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
		}
		return
	}
	// No paytest command that runs takes positional arguments.
	cmd.Args = func(c *cobra.Command, args []string) error {
		if len(args) > 0 {
			return apperr.Errorf(apperr.EUSAGE, "unknown command %q for %q: it takes no arguments\n\nRun '%s --help' for usage.",
				args[0], c.CommandPath(), c.CommandPath())
		}
		return nil
	}
}

// unknownCommand refuses any argument of a command that groups others,
// naming the closest subcommands.
func unknownCommand(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	cmd.SuggestionsMinimumDistance = 2
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
	}
	return apperr.Errorf(apperr.EUSAGE, "%s\n\nRun '%s --help' for usage.", msg, cmd.CommandPath())
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print paytest's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "paytest %s (commit %s)\n", version, commit)
			return err
		},
	}
}

// settings resolves a command's configuration with the documented
// precedence: flag > PAYTEST_* environment > --config file > profile >
// built-in default. Profile values, when a command has them, are laid in
// with SetDefault before anything is read, so everything above overrides
// them.
func settings(cmd *cobra.Command, profile map[string]any) (*viper.Viper, error) {
	v := viper.New()
	v.SetEnvPrefix("PAYTEST")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	for k, val := range profile {
		v.SetDefault(k, val)
	}
	var bindErr error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Name == "config" || f.Name == "help" {
			return
		}
		if err := v.BindPFlag(f.Name, f); err != nil && bindErr == nil {
			bindErr = err
		}
	})
	if bindErr != nil {
		return nil, bindErr
	}
	if path, _ := cmd.Flags().GetString("config"); path != "" {
		if err := checkConfigKeys(cmd, path); err != nil {
			return nil, err
		}
		v.SetConfigFile(path)
		if err := v.ReadInConfig(); err != nil {
			return nil, apperr.Wrap(apperr.EUSAGE, err, "reading config file %s", path)
		}
	}
	return v, nil
}

// newLogger returns the structured logger every command logs with, to stderr.
func newLogger(cmd *cobra.Command, v *viper.Viper) (*slog.Logger, error) {
	var level slog.Level
	name := "info"
	if v != nil && v.IsSet("log-level") {
		name = v.GetString("log-level")
	} else if f := cmd.Flags().Lookup("log-level"); f != nil {
		name = f.Value.String()
	}
	if err := level.UnmarshalText([]byte(name)); err != nil {
		return nil, apperr.Errorf(apperr.EUSAGE, "--log-level %q: want debug, info, warn or error", name)
	}
	w := cmd.ErrOrStderr()
	if w == nil {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), nil
}
