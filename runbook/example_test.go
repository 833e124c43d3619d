package runbook_test

import (
	"fmt"
	"strings"

	"github.com/paytest/paytest/runbook"
)

// Every metric the runbook and its alerting rules query: a test of the
// running stack checks that each is exported.
func ExampleMetricNames() {
	for _, name := range runbook.MetricNames() {
		fmt.Println(name)
	}
	// Output:
	// paytest_charge_request_duration_seconds
	// paytest_charge_requests_total
	// paytest_charges_created_total
	// paytest_client_attempts_total
	// paytest_consumer_inflight
	// paytest_consumer_redeliveries_total
	// paytest_dlq_messages_total
	// paytest_inbox_duplicates_total
	// paytest_outbox_lag_seconds
	// paytest_outbox_pending
	// paytest_relay_published_total
	// paytest_retry_budget_exhausted_total
	// paytest_side_effects_applied_total
}

// The runbook is Markdown; its first line is the title.
func ExampleRunbook() {
	title, _, _ := strings.Cut(runbook.Runbook(), "\n")
	fmt.Println(title)
	// Output: # paytest on-call runbook
}
