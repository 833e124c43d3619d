package testinfra

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
)

// readyIdle is Postgres's ReadyForQuery with status idle: the statement's
// implicit transaction has committed.
var readyIdle = []byte{'Z', 0, 0, 0, 5, 'I'}

// CommitCutter is a TCP proxy in front of Postgres that, once armed, eats
// the first answer its match accepts, up to that answer's ReadyForQuery
// (so the statement committed), and closes that connection: the client
// committed and never heard so. Until released, it then refuses new
// connections too.
type CommitCutter struct {
	ln     net.Listener
	target string
	match  func(answer []byte) bool

	mu       sync.Mutex
	armed    bool
	cut      chan struct{} // closed once the answer was eaten
	released bool
	wg       sync.WaitGroup
}

// StartCommitCutter listens on a random port in front of the Postgres
// server at target (host:port); match is given each chunk of an answer the
// server sends (usually the whole answer) and says whether it is the one
// to eat. The proxy stops with the test.
func StartCommitCutter(tb testing.TB, target string, match func(answer []byte) bool) *CommitCutter {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &CommitCutter{ln: ln, target: target, match: match, cut: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(func() { _ = ln.Close(); p.wg.Wait() })
	return p
}

// Addr is the proxy's host:port, to put in a database URL.
func (p *CommitCutter) Addr() string { return p.ln.Addr().String() }

// Arm makes the proxy eat the next matching answer.
func (p *CommitCutter) Arm() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = true
}

// Release lets new connections through again after the cut (or, called
// before it, never refuses them).
func (p *CommitCutter) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.released = true
}

// Cut is closed once an answer was eaten.
func (p *CommitCutter) Cut() <-chan struct{} { return p.cut }

func (p *CommitCutter) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		blocked := p.isCut() && !p.released
		p.mu.Unlock()
		if blocked {
			_ = c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.wg.Add(2)
		go func() { defer p.wg.Done(); _, _ = io.Copy(s, c); _ = s.Close() }()
		go func() { defer p.wg.Done(); p.downstream(c, s) }()
	}
}

func (p *CommitCutter) isCut() bool {
	select {
	case <-p.cut:
		return true
	default:
		return false
	}
}

// downstream copies the server's answers to the client, holding back and
// then dropping the armed one.
func (p *CommitCutter) downstream(client, server net.Conn) {
	defer client.Close()
	defer server.Close()
	buf := make([]byte, 64<<10)
	var held []byte
	for {
		n, err := server.Read(buf)
		if n > 0 {
			p.mu.Lock()
			armed := p.armed
			p.mu.Unlock()
			chunk := buf[:n]
			if armed && (held != nil || p.match(chunk)) {
				held = append(held, chunk...)
				if bytes.Contains(held, readyIdle) {
					p.mu.Lock()
					p.armed = false
					close(p.cut)
					p.mu.Unlock()
					return
				}
				continue
			}
			if _, werr := client.Write(chunk); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// BackendMessages splits a chunk of Postgres's answer into its messages'
// type bytes and bodies; ok is false when the chunk does not end on a
// message boundary.
func BackendMessages(chunk []byte) (types []byte, bodies [][]byte, ok bool) {
	for len(chunk) > 0 {
		if len(chunk) < 5 {
			return types, bodies, false
		}
		n := int(binary.BigEndian.Uint32(chunk[1:5]))
		if n < 4 || len(chunk) < 1+n {
			return types, bodies, false
		}
		types, bodies = append(types, chunk[0]), append(bodies, chunk[5:1+n])
		chunk = chunk[1+n:]
	}
	return types, bodies, true
}
