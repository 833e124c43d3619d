package main

import "github.com/spf13/cobra"

func newRunbookCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "runbook",
		Short: "Print the on-call runbook",
		RunE:  func(*cobra.Command, []string) error { return errNotYet },
	}
}
