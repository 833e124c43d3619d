package main

import "github.com/spf13/cobra"

func newServeConsumerCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "consumer",
		Short: "Run the ledger consumer (NATS JetStream -> ledger, with an inbox)",
		RunE:  func(*cobra.Command, []string) error { return errNotYet },
	}
}
