package main

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/profiles"
)

func newProfilesCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "profiles",
		Short: "List the built-in profiles and what each injects",
		Long: `List the scenarios built into paytest: how many operations each drives, with
how much concurrency, duplication, racing and key reuse, and which faults it
fires when. Choose one with ` + "`paytest attack --profile NAME`" + `, or pass the path
of a YAML file of the same shape.`,
		Example: `  paytest profiles
  paytest profiles --output json | jq '.[].name'
  paytest attack --profile lost-response`,
		Args: cobra.NoArgs,
	}
	cmd.Flags().String("output", "text", "output format: text or json")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		v, err := settings(cmd, nil)
		if err != nil {
			return err
		}
		list := profiles.List()
		out := cmd.OutOrStdout()
		switch v.GetString("output") {
		case "json":
			type entry struct {
				profiles.Profile
				Injects []string `json:"injects"`
			}
			var es []entry
			for _, p := range list {
				es = append(es, entry{Profile: p, Injects: p.Injects()})
			}
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			return enc.Encode(es)
		case "text":
			for i, p := range list {
				if i > 0 {
					fmt.Fprintln(out)
				}
				fmt.Fprintf(out, "%s: %d ops, concurrency %d\n", p.Name, p.Ops, p.Concurrency)
				fmt.Fprintf(out, "  %s\n", strings.TrimSpace(p.Description))
				fmt.Fprintf(out, "  injects: %s\n", strings.Join(p.Injects(), "; "))
			}
			return nil
		default:
			return apperr.Errorf(apperr.EUSAGE, "--output %q: want text or json", v.GetString("output"))
		}
	}
	return cmd
}
