package foreign

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paytest/paytest/internal/proc"
)

// Environment variables that turn a binary calling Main into an endpoint
// process or into the client of a Process's control page.
const (
	EnvEndpoint = "PAYTEST_FOREIGN_ENDPOINT"
	EnvControl  = "PAYTEST_FOREIGN_CONTROL"
)

// childSpec is what an endpoint process is started with (JSON in
// EnvEndpoint).
type childSpec struct {
	Options     Options `json:"options"`
	DatabaseURL string  `json:"database_url"`
	Addr        string  `json:"addr"`
}

// Main makes the calling binary an endpoint process when EnvEndpoint is
// set, or posts to a control URL when EnvControl is set, and exits; it
// returns at once otherwise. A test binary calls it from an init function,
// so that a Process can re-execute the test binary as a real endpoint
// (killed with SIGKILL like any service).
func Main() {
	if spec := os.Getenv(EnvEndpoint); spec != "" {
		if err := serveChild(spec); err != nil {
			fmt.Fprintln(os.Stderr, "foreign endpoint:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if u := os.Getenv(EnvControl); u != "" {
		if err := postControl(u); err != nil {
			fmt.Fprintln(os.Stderr, "foreign control:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
}

func serveChild(raw string) error {
	var spec childSpec
	if err := json.Unmarshal([]byte(raw), &spec); err != nil {
		return fmt.Errorf("%s: %w", EnvEndpoint, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	db, err := pgxpool.New(ctx, spec.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	e, err := New(ctx, db, spec.Options)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", spec.Addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	fmt.Fprintf(os.Stderr, "foreign: listening on %s\n", ln.Addr())
	if err := proc.AnnounceReady(ln.Addr().String()); err != nil {
		_ = srv.Close()
		return err
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// postControl posts to a control URL, naming the component paytest's
// --kill-cmd or --restart-cmd was run for (PAYTEST_COMPONENT).
func postControl(u string) error {
	c := &http.Client{Timeout: 60 * time.Second}
	resp, err := c.Post(u+"?component="+url.QueryEscape(os.Getenv("PAYTEST_COMPONENT")), "text/plain", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s: %s", u, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// ProcessConfig starts an endpoint process.
type ProcessConfig struct {
	// Exe is a binary whose start calls Main (default: this one,
	// os.Executable).
	Exe         string
	Options     Options
	DatabaseURL string
	// Stderr receives the process's errors (default: discarded).
	Stderr io.Writer
}

// Process is an endpoint in a process of its own, listening on the same
// address across kills and restarts. Its ServeHTTP is a control page
// (POST /kill, POST /restart) for the shell commands of Commands.
type Process struct {
	cfg  ProcessConfig
	addr string

	mu         sync.Mutex
	cmd        *exec.Cmd
	exited     chan struct{}
	kills      int
	components []string
}

// StartProcess starts the endpoint process and waits until it listens.
// Stop it with Stop.
func StartProcess(ctx context.Context, cfg ProcessConfig) (*Process, error) {
	if cfg.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cfg.Exe = exe
	}
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
	p := &Process{cfg: cfg, addr: "127.0.0.1:0"}
	if err := p.start(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// URL is the endpoint's charge URL.
func (p *Process) URL() string { return "http://" + p.addr + Path }

// MetricsURL is the endpoint's /metrics page.
func (p *Process) MetricsURL() string { return "http://" + p.addr + "/metrics" }

// Kills returns how many times Kill stopped a running process.
func (p *Process) Kills() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.kills
}

// start starts the endpoint process on p.addr and waits until it has
// written its address to the ready file it is handed (proc.EnvReadyFile).
func (p *Process) start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return errors.New("foreign: the endpoint process is already running")
	}
	spec, err := json.Marshal(childSpec{Options: p.cfg.Options, DatabaseURL: p.cfg.DatabaseURL, Addr: p.addr})
	if err != nil {
		return err
	}
	rf, err := proc.NewReadyFile()
	if err != nil {
		return fmt.Errorf("foreign: %w", err)
	}
	defer rf.Remove()
	cmd := exec.Command(p.cfg.Exe)
	cmd.Env = append(os.Environ(), EnvEndpoint+"="+string(spec), rf.Env())
	cmd.Stderr = p.cfg.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	r, err := rf.Await(wait, exited)
	if err != nil {
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("foreign: the endpoint process did not start: %w", err)
	}
	p.addr = r.Addr
	p.cmd, p.exited = cmd, exited
	return nil
}

// Kill stops the process with SIGKILL (no goodbye: keys in flight stay
// as they are) and waits for it to exit. Killing a stopped process does
// nothing.
func (p *Process) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	p.cmd, p.exited = nil, nil
	p.kills++
}

// Restart starts the process again on the same address (after a Kill).
func (p *Process) Restart(ctx context.Context) error { return p.start(ctx) }

// Stop kills the process if it runs; for t.Cleanup.
func (p *Process) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.exited
	p.cmd, p.exited = nil, nil
}

// Controls returns each control request so far as "action component"
// (component: the PAYTEST_COMPONENT the command ran with).
func (p *Process) Controls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.components...)
}

// ServeHTTP is the control page: POST /kill and POST /restart.
func (p *Process) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	p.mu.Lock()
	p.components = append(p.components, strings.TrimPrefix(r.URL.Path, "/")+" "+r.URL.Query().Get("component"))
	p.mu.Unlock()
	switch r.URL.Path {
	case "/kill":
		p.Kill()
	case "/restart":
		if err := p.Restart(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
	default:
		http.NotFound(w, r)
		return
	}
	_, _ = io.WriteString(w, "ok\n")
}

// Commands returns shell commands (for --kill-cmd and --restart-cmd) that
// kill and restart the process through its control page at controlURL:
// each runs Exe, which Main turns into a one-shot client.
func (p *Process) Commands(controlURL string) (kill, restart string) {
	q := shellQuote(p.cfg.Exe)
	base := strings.TrimSuffix(controlURL, "/")
	return fmt.Sprintf("%s=%s %s", EnvControl, shellQuote(base+"/kill"), q),
		fmt.Sprintf("%s=%s %s", EnvControl, shellQuote(base+"/restart"), q)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
