package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/target/stack"
)

func newServeStackCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "stack",
		Short: "Run every reference component on embedded infrastructure, for poking at by hand",
		Long: `Run the whole reference payment system: Postgres (embedded unless
--database-url), NATS JetStream (embedded unless --nats-url), and the charge
service, relay and consumer as child processes. It prints where each listens
and runs until Ctrl-C, then stops everything and removes its temp dirs.`,
		Example: `  paytest serve stack
  curl -s -X POST "$CHARGE_URL" -H 'Authorization: Bearer sk_test_demo' \
    -H 'Idempotency-Key: k1' -H 'Content-Type: application/json' \
    -d '{"amount":1299,"currency":"EUR","customer":"cus_1","sku":"sku-1","quantity":1}'`,
		Args: cobra.NoArgs,
	}
	f := cmd.Flags()
	f.String("database-url", "", "PostgreSQL URL (default: a throwaway embedded cluster)")
	f.String("nats-url", "", "NATS URL with JetStream (default: an embedded server)")
	f.String("redis-url", "", "Redis URL for the charge service's idempotency cache (default: none)")
	f.StringArray("api-key", nil, "merchant=secret accepted by the charge service (repeatable; default "+stack.DefaultAPIKey+")")
	f.StringArray("unsafe", nil, "break a guarantee on purpose, to test a checker: "+strings.Join(stack.UnsafeModes(), ", "))
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		v, err := settings(cmd, nil)
		if err != nil {
			return err
		}
		log, err := newLogger(cmd, v)
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		infra, err := stack.StartInfra(ctx, stack.InfraConfig{
			DatabaseURL: v.GetString("database-url"), NATSURL: v.GetString("nats-url"),
			RedisURL: v.GetString("redis-url"), Log: log,
		})
		if err != nil {
			return err
		}
		defer infra.Stop()
		s, err := stack.Start(ctx, stack.Config{
			DatabaseURL: infra.DatabaseURL, NATSURL: infra.NATSURL, RedisURL: infra.RedisURL,
			APIKeys: v.GetStringSlice("api-key"), Unsafe: v.GetStringSlice("unsafe"), Log: os.Stderr,
		})
		if err != nil {
			return apperr.Wrap(apperr.EINCONCLUSIVE, err, "starting the reference stack")
		}
		defer s.Stop()
		out := cmd.OutOrStdout()
		fmt.Fprintf(out, "charge:   %s\n", s.ChargeURL())
		for _, n := range []string{stack.Charge, stack.Relay, stack.Consumer} {
			fmt.Fprintf(out, "metrics:  %-9s %s\n", n, s.MetricsURLs()[n])
		}
		fmt.Fprintf(out, "database: %s\nnats:     %s\nCtrl-C to stop.\n", infra.DatabaseURL, infra.NATSURL)
		<-ctx.Done()
		return nil
	}
	return cmd
}
