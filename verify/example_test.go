package verify_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/paytest/paytest/internal/rundir"
	"github.com/paytest/paytest/verify"
)

// A run directory with two charges, one of them applied twice by the
// ledger, gets a violated verdict naming that operation.
func ExampleVerify() {
	dir, _ := os.MkdirTemp("", "paytest-example-")
	defer os.RemoveAll(dir)
	start := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

	plan, _ := rundir.Create[rundir.Op](filepath.Join(dir, rundir.PlanFile))
	hist, _ := rundir.Create[rundir.Attempt](filepath.Join(dir, rundir.HistoryFile))
	ledger, _ := rundir.Create[rundir.LedgerRow](filepath.Join(dir, rundir.LedgerFile))
	for op, effects := range []int64{1, 2} {
		key := fmt.Sprintf("order-%d", op)
		plan.Write(rundir.Op{Op: op, Kind: rundir.KindCharge, Merchant: "demo", Key: key, Senders: 1})
		hist.Write(rundir.Attempt{Op: op, Kind: rundir.KindCharge, Merchant: "demo", Key: key, Attempt: 1,
			Status: 200, Outcome: rundir.OutcomeNew, Start: start, End: start.Add(time.Millisecond)})
		ledger.Write(rundir.LedgerRow{Merchant: "demo", Key: key, Effects: effects})
	}
	plan.Close()
	hist.Close()
	ledger.Close()
	os.Mkdir(filepath.Join(dir, rundir.MetricsDir), 0o755)
	os.WriteFile(filepath.Join(dir, rundir.MetricsDir, "consumer.prom"),
		[]byte("# TYPE paytest_side_effects_applied_total counter\npaytest_side_effects_applied_total 3\n"), 0o644)

	rep, err := verify.Verify(context.Background(), dir, verify.Options{NoHTML: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(rep.Verdict, rep.ExitCode)
	c := rep.Check(verify.CheckExactlyOncePerOp)
	fmt.Println(c.Name, c.Status)
	fmt.Println(c.Counterexamples[0])
	// Output:
	// violated 1
	// exactly-once-per-op failed
	// op 1 key demo/order-1, 1 attempt, ledger effects 2: acknowledged (2xx) and applied 2 times
}

// Collect saves a live system's metrics page into the run directory, where
// Verify reads it later.
func ExampleCollect() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "# TYPE paytest_side_effects_applied_total counter")
		fmt.Fprintln(w, "paytest_side_effects_applied_total 1000")
	}))
	defer srv.Close()
	dir, _ := os.MkdirTemp("", "paytest-example-")
	defer os.RemoveAll(dir)

	err := verify.Collect(context.Background(), verify.Sources{
		MetricsURLs: map[string]string{"consumer": srv.URL + "/metrics"},
	}, dir)
	fmt.Println(err)
	_, err = os.Stat(filepath.Join(dir, rundir.MetricsDir, "consumer.prom"))
	fmt.Println(err == nil)
	// Output:
	// <nil>
	// true
}
