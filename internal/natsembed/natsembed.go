// Package natsembed runs a NATS server with JetStream inside the paytest
// process: paytest's embedded broker when no --nats-url is given.
package natsembed

import (
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/paytest/paytest/internal/proc"
)

// dirPattern names the temporary store directories.
const dirPattern = "paytest-nats-"

// Options configures an embedded server. The zero value is ready to use.
type Options struct {
	// Port to listen on; 0 picks a free loopback port.
	Port int
	// StoreDir for JetStream; empty means a new temporary directory that
	// Shutdown removes (or, after a SIGKILL, the next Start of any process).
	StoreDir string
}

// Server is a running embedded NATS server with JetStream enabled.
type Server struct {
	ns      *server.Server
	dir     string
	ownsDir bool
	once    sync.Once
}

// Start starts a NATS server with JetStream on loopback and returns once it
// accepts connections.
func Start(opts Options) (*Server, error) {
	s := &Server{dir: opts.StoreDir}
	if s.dir == "" {
		// A paytest killed outright (SIGKILL) could not remove its
		// store: take that space back first.
		d, err := proc.OwnedScratchDir(dirPattern, nil)
		if err != nil {
			return nil, fmt.Errorf("natsembed: temp dir: %w", err)
		}
		s.dir, s.ownsDir = d, true
	}
	port := opts.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      port,
		JetStream: true,
		StoreDir:  s.dir,
		NoSigs:    true,
		NoLog:     true,
		// A dead relay's unacked subscriptions must not keep the server busy.
		MaxPayload: 1 << 20,
	})
	if err != nil {
		s.cleanup()
		return nil, fmt.Errorf("natsembed: %w", err)
	}
	s.ns = ns
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("natsembed: server not ready after 10s")
	}
	return s, nil
}

// URL returns the client URL, nats://127.0.0.1:PORT.
func (s *Server) URL() string { return s.ns.ClientURL() }

// StoreDir returns the JetStream store directory.
func (s *Server) StoreDir() string { return s.dir }

// Shutdown stops the server and removes a store directory it created. It is
// safe to call more than once.
func (s *Server) Shutdown() {
	s.once.Do(func() {
		if s.ns != nil {
			s.ns.Shutdown()
			s.ns.WaitForShutdown()
		}
		s.cleanup()
	})
}

func (s *Server) cleanup() {
	if s.ownsDir {
		_ = os.RemoveAll(s.dir)
	}
}
