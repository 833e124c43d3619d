package main

import "github.com/spf13/cobra"

func newServeChargeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "charge",
		Short: "Run the reference charge API (POST /charge)",
		RunE:  func(*cobra.Command, []string) error { return errNotYet },
	}
}
