package main

import (
	"bytes"
	"testing"

	"github.com/paytest/paytest/runbook"
)

func TestRunbookCommand(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		env      string
		want     string
		wantCode int
	}{
		{name: "prints the runbook", args: []string{"runbook"}, want: runbook.Runbook()},
		{name: "--alerts prints the rules", args: []string{"runbook", "--alerts"}, want: string(runbook.Alerts())},
		{name: "PAYTEST_ALERTS too", args: []string{"runbook"}, env: "true", want: string(runbook.Alerts())},
		{name: "the flag beats the environment", args: []string{"runbook", "--alerts=false"}, env: "true", want: runbook.Runbook()},
		{name: "an argument is a usage error", args: []string{"runbook", "extra"}, wantCode: exitUsage},
		{name: "an unknown flag is a usage error", args: []string{"runbook", "--alert"}, wantCode: exitUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PAYTEST_ALERTS", tc.env)
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), tc.args, &stdout, &stderr)
			if code := exitCode(err); code != tc.wantCode {
				t.Fatalf("paytest %v: exit %d (%v), want %d", tc.args, code, err, tc.wantCode)
			}
			if tc.wantCode != 0 {
				return
			}
			if stdout.String() != tc.want {
				t.Errorf("paytest %v printed %d bytes starting %.60q, want %d bytes starting %.60q",
					tc.args, stdout.Len(), stdout.String(), len(tc.want), tc.want)
			}
		})
	}
}
