package load

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/paytest/paytest/attack/client"
	"github.com/paytest/paytest/attack/plan"
)

const shardChildEnv = "PAYTEST_LOAD_SHARD_CHILD" // "K/N URL SECONDS"

// TestShardRateChild is BenchmarkShardsAggregateRate's child: it sends its
// shard of a plan through the closed pool at full speed for the given
// seconds and prints its attempts per second. It does nothing unless the
// benchmark started it.
func TestShardRateChild(t *testing.T) {
	spec := os.Getenv(shardChildEnv)
	if spec == "" {
		t.Skip("run by BenchmarkShardsAggregateRate")
	}
	var k, n int
	var url string
	var secs float64
	if _, err := fmt.Sscanf(spec, "%d/%d %s %g", &k, &n, &url, &secs); err != nil {
		t.Fatal(err)
	}
	whole, err := plan.New(plan.Config{Ops: plan.MaxOps, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Options{MaxIdleConnsPerHost: benchConcurrency})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs*float64(time.Second)))
	defer cancel()
	start := time.Now()
	s, _ := Run(ctx, whole.Shard(k, n), Config{URL: url, Concurrency: benchConcurrency, Client: c})
	fmt.Printf("shard_rate=%.1f\n", float64(s.Attempts)/time.Since(start).Seconds())
}

// BenchmarkShardsAggregateRate runs 1, 2 and 4 shard processes of one plan
// side by side against one trivial endpoint (each a closed pool of 32 at
// full speed, no history) and reports their summed attempt rate: on one
// machine the shards share its cores with the endpoint, so the sum shows
// where N stops helping here; on separate machines each shard's rate is
// bounded by its own cores and sockets.
func BenchmarkShardsAggregateRate(b *testing.B) {
	srv := trivial()
	defer srv.Close()
	const secs = 5.0
	for range b.N {
		base := 0.0
		for _, n := range []int{1, 2, 4} {
			rates := make([]float64, n)
			var wg sync.WaitGroup
			for k := range n {
				wg.Go(func() {
					cmd := exec.Command(os.Args[0], "-test.run=^TestShardRateChild$", "-test.v")
					cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d/%d %s %g", shardChildEnv, k, n, srv.URL, secs))
					out, err := cmd.CombinedOutput()
					if err != nil {
						b.Errorf("shard %d/%d: %v\n%s", k, n, err, out)
						return
					}
					for _, line := range strings.Split(string(out), "\n") {
						if v, ok := strings.CutPrefix(line, "shard_rate="); ok {
							rates[k], _ = strconv.ParseFloat(v, 64)
						}
					}
				})
			}
			wg.Wait()
			sum := 0.0
			for _, r := range rates {
				sum += r
			}
			if n == 1 {
				base = sum
			}
			b.ReportMetric(sum, fmt.Sprintf("%d-shards-req/s", n))
			b.Logf("%d shard(s): %.0f req/s in all (%.2fx one shard), per shard %v", n, sum, sum/base, rates)
		}
	}
}
