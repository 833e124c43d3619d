package main

import "github.com/spf13/cobra"

func newAttackCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "attack",
		Short: "Run a scenario against the reference system or your endpoint, then verify it",
		RunE:  func(*cobra.Command, []string) error { return errNotYet },
	}
}
