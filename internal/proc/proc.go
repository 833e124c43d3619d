// Package proc supervises paytest's child processes: it starts a command,
// tees its log, learns the address the child bound from a ready file the
// child writes (EnvReadyFile), waits for readiness, and stops it (SIGTERM,
// then SIGKILL) or kills it outright to simulate a crash. The attack orchestrator and the tests that
// crash real processes both use it.
package proc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/paytest/paytest/internal/apperr"
)

// Spec describes a child process.
type Spec struct {
	// Name labels the process in errors and logs ("charge", "relay").
	Name string
	// Path and Args are the command; Args excludes the program name.
	Path string
	Args []string
	// Env is added to the parent's environment.
	Env []string
	// Log receives the child's stdout and stderr, line by line; nil discards.
	Log io.Writer
	// Ready, if set, is polled (GET, 2xx) after the address is known: a
	// path such as "/readyz" on the bound address.
	Ready string
	// StartTimeout bounds waiting for the ready file and readiness;
	// default 30s.
	StartTimeout time.Duration
}

// Process is a running child.
type Process struct {
	spec Spec
	cmd  *exec.Cmd
	addr string
	done chan struct{}
	err  error
	once sync.Once
	wg   sync.WaitGroup

	tailMu sync.Mutex
	tail   []string // the child's last few output lines, for errors
}

// tailLines is how many of the child's last output lines an error quotes.
const tailLines = 3

func (p *Process) keep(line string) {
	p.tailMu.Lock()
	defer p.tailMu.Unlock()
	if len(p.tail) == tailLines {
		p.tail = append(p.tail[:0], p.tail[1:]...)
	}
	p.tail = append(p.tail, line)
}

// lastWords is the child's last output lines joined, or "".
func (p *Process) lastWords() string {
	p.tailMu.Lock()
	defer p.tailMu.Unlock()
	return strings.Join(p.tail, " | ")
}

// Start starts the child and waits until it has written its bound address
// to the ready file Start hands it (EnvReadyFile) and, if Spec.Ready is set,
// until that endpoint answers 2xx. What the child logs is teed, never parsed.
func Start(ctx context.Context, spec Spec) (*Process, error) {
	if err := CheckOS(runtime.GOOS); err != nil {
		return nil, fmt.Errorf("proc: start %s: %w", spec.Name, err)
	}
	if spec.StartTimeout == 0 {
		spec.StartTimeout = 30 * time.Second
	}
	rf, err := NewReadyFile()
	if err != nil {
		return nil, fmt.Errorf("proc: start %s: %w", spec.Name, err)
	}
	defer rf.Remove()
	p, err := spawn(spec, rf)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeoutCause(ctx, spec.StartTimeout, errStartTimeout)
	defer cancel()
	if err := p.awaitAddr(wctx, rf); err != nil {
		return nil, err
	}
	if spec.Ready != "" {
		if err := p.waitReady(wctx); err != nil {
			p.Kill()
			return nil, err
		}
	}
	return p, nil
}

// errStartTimeout is the cause of a start that outlived Spec.StartTimeout.
var errStartTimeout = errors.New("start timeout")

// spawn starts the child with the ready file in its environment and tees
// its output to Spec.Log.
func spawn(spec Spec, rf *ReadyFile) (*Process, error) {
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Env = append(append(os.Environ(), spec.Env...), rf.Env())
	cmd.SysProcAttr = SysProcAttr()
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("proc: start %s: %w", spec.Name, err)
	}
	p := &Process{spec: spec, cmd: cmd, done: make(chan struct{})}
	p.wg.Go(func() { p.tee(out) })
	go func() {
		p.wg.Wait()
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// tee copies the child's output, line by line, to Spec.Log and keeps its
// last lines for errors.
func (p *Process) tee(out io.Reader) {
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		p.keep(line)
		if p.spec.Log != nil {
			fmt.Fprintf(p.spec.Log, "[%s] %s\n", p.spec.Name, line)
		}
	}
}

// awaitAddr waits for the child's ready record. A child that fails to
// start is killed (if it still runs) and its error names it.
func (p *Process) awaitAddr(ctx context.Context, rf *ReadyFile) error {
	r, err := rf.Await(ctx, p.done)
	switch {
	case err == nil:
		p.addr = r.Addr
		return nil
	case errors.Is(err, ErrChildExited):
		return p.exitError()
	case errors.Is(context.Cause(ctx), errStartTimeout):
		p.Kill()
		return fmt.Errorf("proc: %s did not write its ready file within %s", p.spec.Name, p.spec.StartTimeout)
	default:
		p.Kill()
		return fmt.Errorf("proc: %s: %w", p.spec.Name, err)
	}
}

// exitError says that the child exited before listening, quoting its
// last words.
func (p *Process) exitError() error {
	err := fmt.Errorf("proc: %s %w: %v", p.spec.Name, ErrChildExited, p.err)
	if words := p.lastWords(); words != "" {
		err = fmt.Errorf("%w: %s", err, words)
	}
	// Exit status 2 is a paytest command refusing its flags.
	if ee, ok := errors.AsType[*exec.ExitError](p.err); ok && ee.ExitCode() == 2 {
		return apperr.Wrap(apperr.EUSAGE, err, "%s refused its flags", p.spec.Name)
	}
	return err
}

func (p *Process) waitReady(ctx context.Context) error {
	url := "http://" + p.addr + p.spec.Ready
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode/100 == 2 {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("proc: %s exited before ready: %v", p.spec.Name, p.err)
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), errStartTimeout) {
				return fmt.Errorf("proc: %s not ready at %s", p.spec.Name, url)
			}
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Addr returns the address the child wrote to its ready file.
func (p *Process) Addr() string { return p.addr }

// Pid returns the child's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the child has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the child has exited, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Wait waits for the child to exit and returns how it did.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// KilledBySignal reports whether err (from Wait) says the child died of sig.
func KilledBySignal(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// Kill sends SIGKILL and waits for the child to be gone: a crash.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop sends SIGTERM, waits up to grace for a clean exit, then SIGKILL. It is
// safe to call more than once and after the child has exited.
func (p *Process) Stop(grace time.Duration) error {
	var err error
	p.once.Do(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
			if p.err != nil && !KilledBySignal(p.err, syscall.SIGTERM) {
				err = p.err
			}
		case <-time.After(grace):
			p.Kill()
			err = fmt.Errorf("proc: %s ignored SIGTERM for %s and was killed", p.spec.Name, grace)
		}
	})
	return err
}

// String names the process for logs.
func (p *Process) String() string {
	return fmt.Sprintf("%s(pid %d, %s %s)", p.spec.Name, p.Pid(), p.addr, strings.Join(p.spec.Args, " "))
}
