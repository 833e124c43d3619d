package main

import "github.com/spf13/cobra"

func newServeRelayCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "relay",
		Short: "Run the outbox relay (Postgres outbox -> NATS JetStream)",
		RunE:  func(*cobra.Command, []string) error { return errNotYet },
	}
}
