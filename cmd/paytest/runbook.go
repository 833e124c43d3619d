package main

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/paytest/paytest/runbook"
)

func newRunbookCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "runbook",
		Short: "Print the on-call runbook",
		Long: `Print the one-page on-call runbook (Markdown): triage from the four
metrics (charge outcomes, client attempts by attempt number, outbox lag, side
effects applied against charges created), what a 422 spike, an attempt-3 surge
and growing outbox lag each mean, the PromQL to look at, and the fix for each.

--alerts prints the Prometheus alerting rules (a rule file for
rule_files:) instead; each alert's runbook_url names its runbook section.`,
		Example: `  paytest runbook | less
  paytest runbook --alerts > /etc/prometheus/rules/paytest.yaml && promtool check rules /etc/prometheus/rules/paytest.yaml`,
		Args: cobra.NoArgs,
	}
	cmd.Flags().Bool("alerts", false, "print the Prometheus alerting rules (YAML) instead of the runbook")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		v, err := settings(cmd, nil)
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if v.GetBool("alerts") {
			_, err = out.Write(runbook.Alerts())
		} else {
			_, err = io.WriteString(out, runbook.Runbook())
		}
		return err
	}
	return cmd
}
