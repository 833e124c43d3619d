package main

import "github.com/spf13/cobra"

func newServeStackCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "stack",
		Short: "Run every component on embedded infrastructure, for poking at by hand",
		RunE:  func(*cobra.Command, []string) error { return errNotYet },
	}
}
