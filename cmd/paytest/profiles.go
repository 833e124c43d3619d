package main

import "github.com/spf13/cobra"

func newProfilesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "profiles",
		Short: "List the built-in profiles and what each injects",
		RunE:  func(*cobra.Command, []string) error { return errNotYet },
	}
}
