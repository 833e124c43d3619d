package consumer_test

import (
	"bytes"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/paytest/paytest/target/consumer/consumertest"
)

// readyIdle is Postgres's ReadyForQuery with status idle: the statement's
// implicit transaction has committed.
var readyIdle = []byte{'Z', 0, 0, 0, 5, 'I'}

// commitCutter is a TCP proxy in front of Postgres that, once armed, eats
// the first answer holding "applied" up to its ReadyForQuery (so the commit
// happened), closes that connection, and refuses new ones until released:
// the consumer's apply committed and never heard so.
type commitCutter struct {
	ln     net.Listener
	target string

	mu       sync.Mutex
	armed    bool
	cut      chan struct{} // closed once the answer was eaten
	released bool
	wg       sync.WaitGroup
}

func startCommitCutter(t *testing.T, target string) *commitCutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &commitCutter{ln: ln, target: target, cut: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() { _ = ln.Close(); p.wg.Wait() })
	return p
}

func (p *commitCutter) accept() {
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

func (p *commitCutter) isCut() bool {
	select {
	case <-p.cut:
		return true
	default:
		return false
	}
}

// downstream copies the server's answers to the client, holding back and
// then dropping the armed one.
func (p *commitCutter) downstream(client, server net.Conn) {
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
			if armed && (held != nil || bytes.Contains(chunk, []byte("applied"))) {
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

func (p *commitCutter) arm() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = true
}

func (p *commitCutter) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.released = true
}

// An apply whose commit answer is lost is retried; the retry finds the
// inbox row its own attempt wrote and counts the effect as applied, not as
// a duplicate. Without that, the counter undercounts the ledger by one for
// every lost answer and paytest would read a lost charge.
func TestConsumerCountsAnApplyWhoseCommitAnswerWasLost(t *testing.T) {
	env := consumertest.New(t, "")
	u, err := url.Parse(env.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	cutter := startCommitCutter(t, u.Host)
	u.Host = cutter.ln.Addr().String()
	cfg := env.ConsumerConfig()
	cfg.DatabaseURL = u.String()
	_, curl := startConsumer(t, cfg)

	cutter.arm()
	env.Publish(t, consumertest.Payload(t, consumertest.Event(1)))
	select {
	case <-cutter.cut:
	case <-time.After(30 * time.Second):
		t.Fatal("the apply's answer never came through the proxy")
	}
	// The commit happened (its ReadyForQuery was eaten), unheard.
	env.WaitLedger(t, 10*time.Second, 1)
	cutter.release()

	consumertest.WaitCounter(t, curl, "paytest_side_effects_applied_total", 1, 30*time.Second)
	got := consumertest.Scrape(t, curl+"/metrics")
	if got["paytest_inbox_duplicates_total"] != 0 {
		t.Errorf("the retry was counted as %v duplicates, want 0", got["paytest_inbox_duplicates_total"])
	}
	if got["paytest_consumer_retries_total"] < 1 {
		t.Errorf("retries %v: the lost answer was not retried", got["paytest_consumer_retries_total"])
	}
	if n, err := env.LedgerTotal(); err != nil || n != 1 {
		t.Errorf("ledger has %d entries (%v), want 1", n, err)
	}
}
