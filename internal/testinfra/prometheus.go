package testinfra

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Prometheus runs the machine's prometheus binary scraping each target's
// /metrics once a second under job "paytest", waits until it is ready, and
// returns its URL; t.Cleanup stops it. A target is a URL (http://host:port)
// or host:port. The test is skipped when there is no prometheus in PATH.
func Prometheus(tb testing.TB, targets ...string) string {
	tb.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		tb.Skip("no prometheus in PATH: apt-get install -y prometheus (the .ci/run script does)")
	}
	dir := tb.TempDir()
	hosts := make([]string, len(targets))
	for i, u := range targets {
		hosts[i] = fmt.Sprintf("%q", strings.TrimPrefix(u, "http://"))
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	conf := "global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: paytest\n    static_configs: [{targets: [" + strings.Join(hosts, ", ") + "]}]\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	logPath := filepath.Join(dir, "prometheus.log")
	logf, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--config.file="+cfg, "--web.listen-address="+addr,
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		logf.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		logf.Close()
	})
	url := "http://" + addr
	WaitFor(tb, 30*time.Second, func() error {
		resp, err := http.Get(url + "/-/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			log, _ := os.ReadFile(logPath)
			return fmt.Errorf("prometheus /-/ready: %s; its log:\n%s", resp.Status, log)
		}
		return nil
	})
	return url
}
