// Package redisembed starts a throwaway redis-server from the machine's own
// binary on a free loopback port, with persistence off: paytest's embedded
// Redis for profiles that need one when no --redis-url is given.
package redisembed

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/internal/proc"
)

// dirPattern names the servers' temporary directories.
const dirPattern = "paytest-redis-"

// ErrNoBinary is returned when redis-server cannot be found.
var ErrNoBinary = &apperr.Error{
	Code:    apperr.EINCONCLUSIVE,
	Message: "redis-server not found in PATH: install it (Debian: apt-get install redis-server) or pass --redis-url redis://...",
}

// Server is a running throwaway redis-server.
type Server struct {
	port int
	dir  string
	bin  string
	cmd  *exec.Cmd
	done chan struct{}
	log  *bytes.Buffer
	once sync.Once
}

// Start starts redis-server on a free loopback port and returns once it
// answers PING.
func Start(ctx context.Context) (*Server, error) {
	if err := proc.CheckOS(runtime.GOOS); err != nil {
		return nil, fmt.Errorf("redisembed: %w", err)
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, ErrNoBinary
	}
	// A paytest killed outright (SIGKILL) could not remove its directory:
	// take it back first.
	proc.SweepOrphans(dirPattern, nil)
	dir, err := proc.OwnedTempDir(dirPattern)
	if err != nil {
		return nil, fmt.Errorf("redisembed: %w", err)
	}
	s := &Server{dir: dir, bin: bin}
	for attempt := 0; ; attempt++ {
		if err = s.start(ctx, 0); err == nil {
			return s, nil
		}
		if attempt >= 3 || ctx.Err() != nil {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
}

func (s *Server) start(ctx context.Context, port int) error {
	if port == 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("redisembed: free port: %w", err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		ln.Close()
	}
	s.port = port
	s.done = make(chan struct{})
	s.log = &bytes.Buffer{}
	cmd := exec.Command(s.bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir, "--daemonize", "no", "--loglevel", "warning")
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.SysProcAttr = proc.SysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redisembed: start: %w", err)
	}
	s.cmd = cmd
	done := s.done
	go func() { _ = cmd.Wait(); close(done) }()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("redisembed: redis-server exited: %s", s.log.String())
		default:
		}
		if rdb.Ping(ctx).Err() == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.kill()
			return fmt.Errorf("redisembed: redis-server not ready after 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Addr returns host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Dir returns the server's temporary directory.
func (s *Server) Dir() string { return s.dir }

// URL returns redis://host:port/0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Restart kills the server and starts it again, empty, on the same port: a
// simulated Redis loss.
func (s *Server) Restart(ctx context.Context) error {
	s.kill()
	return s.start(ctx, s.port)
}

// Stop kills the server and removes its directory. It is safe to call more
// than once.
func (s *Server) Stop() {
	s.once.Do(func() {
		s.kill()
		_ = os.RemoveAll(s.dir)
	})
}

func (s *Server) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}
