package verify

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadCacheFigures(t *testing.T) {
	page := `# TYPE paytest_idempotency_cache_total counter
paytest_idempotency_cache_total{result="hit",tier="redis"} 30
paytest_idempotency_cache_total{result="busy",tier="redis"} 4
paytest_idempotency_cache_total{result="claimed",tier="redis"} 100
paytest_idempotency_cache_total{result="error",tier="redis"} 2
paytest_idempotency_cache_total{result="new",tier="postgres"} 90
paytest_idempotency_cache_total{result="replay",tier="postgres"} 7
paytest_idempotency_cache_total{result="conflict",tier="postgres"} 2
paytest_idempotency_cache_total{result="mismatch",tier="postgres"} 1
paytest_idempotency_cache_total{result="error",tier="postgres"} 5
`
	dir := t.TempDir()
	tests := []struct {
		name, page string
		want       *CacheFigures
	}{
		{"with redis", page, &CacheFigures{RedisHit: 30, RedisBusy: 4, RedisError: 2, FallThrough: 10, PostgresNew: 90, HitRatio: 0.75}},
		{"without the metric", "# TYPE x counter\nx 1\n", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, "charge.prom")
			if err := os.WriteFile(p, []byte(tc.page), 0o644); err != nil {
				t.Fatal(err)
			}
			got := readCacheFigures(p)
			if (got == nil) != (tc.want == nil) || got != nil && *got != *tc.want {
				t.Fatalf("readCacheFigures = %+v, want %+v", got, tc.want)
			}
		})
	}
}
