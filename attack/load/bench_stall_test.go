//go:build unix

package load

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// stallAt stops proc (SIGSTOP) after after, and lets it go on d later; it
// is never left stopped when tb ends.
func stallAt(tb testing.TB, proc *os.Process, after, d time.Duration) {
	stop := time.AfterFunc(after, func() { _ = proc.Signal(syscall.SIGSTOP) })
	cont := time.AfterFunc(after+d, func() { _ = proc.Signal(syscall.SIGCONT) })
	tb.Cleanup(func() {
		stop.Stop()
		cont.Stop()
		_ = proc.Signal(syscall.SIGCONT)
	})
}

// BenchmarkOpenModelRecoversFromStall stops the trivial endpoint's process
// for 300 ms two seconds into a 5 s run at 15,000/s, for paytest's open
// model and then for vegeta's constant pacer, and reports both tools' p99
// and the arrivals paytest dropped. A sender that recovers once the
// endpoint is back drops nothing, and its p99 is about the stall; one that
// fell behind for good drops arrivals at its cap and its p99 is seconds.
// Goal: no arrival dropped, and p99 near vegeta's.
func BenchmarkOpenModelRecoversFromStall(b *testing.B) {
	url, proc := trivialChild(b)
	const rate = 15000
	const stall = 300 * time.Millisecond
	for range b.N {
		dir := b.TempDir()
		stallAt(b, proc, 2*time.Second, stall)
		achieved, p50, p99, dropped, _ := openFigures(b, url, dir, rate, benchDuration)
		veg := vegeta(b, url, dir, benchDuration, func() { stallAt(b, proc, 2*time.Second, stall) }, "-rate", "15000/s")
		vp99 := time.Duration(veg.Latencies.P99)
		b.ReportMetric(float64(dropped), "dropped")
		b.ReportMetric(float64(p99)/float64(vp99), "p99-ratio")
		b.Logf("%d/s for %s, the endpoint stopped for %s at 2s: paytest %.1f/s p50 %v p99 %v from due, %d dropped; vegeta %.1f/s p50 %v p99 %v; p99 ratio %.2f",
			rate, benchDuration, stall, achieved, p50, p99, dropped, veg.Rate, time.Duration(veg.Latencies.P50), vp99, float64(p99)/float64(vp99))
	}
}
