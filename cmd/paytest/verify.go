package main

import "github.com/spf13/cobra"

func newVerifyCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "verify",
		Short: "Check the evidence of a run or of a live system and print a verdict",
		RunE:  func(*cobra.Command, []string) error { return errNotYet },
	}
}
