package charge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/paytest/paytest/internal/apperr"
)

// Defaults for ServerConfig's zero fields.
const (
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 15 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 60 * time.Second
	// DefaultMaxHeaderBytes is far above what POST /charge needs (an
	// Authorization, an Idempotency-Key of at most 255 bytes).
	DefaultMaxHeaderBytes = 32 << 10
)

// ServerConfig bounds what one client connection may hold of the service, so
// that slow or idle clients (slowloris) cannot exhaust it. Zero fields take
// the defaults above.
type ServerConfig struct {
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, headers and body: a body
	// trickled in slower is cut off with a 400.
	ReadTimeout time.Duration
	// WriteTimeout bounds a request from the end of its headers to the end
	// of its answer: reading the body, the charge, the write. It must be at
	// least ReadTimeout plus the service's RequestTimeout, so that no charge
	// that was made loses its answer to it.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection left idle this long.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's header section; more is a 431.
	MaxHeaderBytes int
}

func (c ServerConfig) withDefaults() ServerConfig {
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{{&c.ReadHeaderTimeout, DefaultReadHeaderTimeout}, {&c.ReadTimeout, DefaultReadTimeout},
		{&c.WriteTimeout, DefaultWriteTimeout}, {&c.IdleTimeout, DefaultIdleTimeout}} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	return c
}

// Validate checks the limits, with defaults for zero fields, for a service
// whose database work takes up to requestTimeout (Config.RequestTimeout;
// zero means DefaultRequestTimeout).
func (c ServerConfig) Validate(requestTimeout time.Duration) error {
	c = c.withDefaults()
	if requestTimeout == 0 {
		requestTimeout = DefaultRequestTimeout
	}
	switch {
	case c.ReadHeaderTimeout < 0 || c.ReadTimeout < 0 || c.WriteTimeout < 0 || c.IdleTimeout < 0 || c.MaxHeaderBytes < 0:
		return apperr.Errorf(apperr.EUSAGE, "server timeouts and the header limit must be positive")
	case c.ReadHeaderTimeout > c.ReadTimeout:
		return apperr.Errorf(apperr.EUSAGE, "the read-header timeout (%s) must not exceed the read timeout (%s)", c.ReadHeaderTimeout, c.ReadTimeout)
	case c.WriteTimeout < c.ReadTimeout+requestTimeout:
		return apperr.Errorf(apperr.EUSAGE, "the write timeout (%s) must be at least the read timeout (%s) plus the %s the database work may take, or a charge could lose its answer",
			c.WriteTimeout, c.ReadTimeout, requestTimeout)
	}
	return nil
}

// Server returns an http.Server for the service's Handler with cfg's limits.
// Serve it on a listener wrapped by ProblemListener, so that the answers
// net/http gives on its own are problem documents too.
func (s *Service) Server(cfg ServerConfig) (*http.Server, error) {
	if err := cfg.Validate(s.cfg.RequestTimeout); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}, nil
}

// ProblemListener wraps ln so that the answers net/http writes by itself,
// before any handler runs (431 for oversized headers, 400 for a malformed
// request line, header or Content-Length, 501 for an unknown
// Transfer-Encoding, all text/plain, and an empty 417 for an Expect other
// than 100-continue), go out as application/problem+json like every other
// error of the service. Requests cut off by a timeout before their headers
// are complete get no answer at all: net/http just closes the connection.
func ProblemListener(ln net.Listener) net.Listener { return problemListener{ln} }

type problemListener struct{ net.Listener }

func (l problemListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return problemConn{c}, nil
}

type problemConn struct{ net.Conn }

// Write passes every write through but net/http's canned error answers,
// which it writes to the connection in one call each, as the last thing on
// that connection.
func (c problemConn) Write(p []byte) (int, error) {
	if doc, ok := problemOf(p); ok {
		if _, err := c.Conn.Write(doc); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// CloseWrite keeps net/http's half-close before it hangs up after a 431, so
// that the client reads the answer rather than a reset.
func (c problemConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// cannedHeaders is what stands between the status line and the body in
// net/http's canned answers (errorHeaders in net/http/server.go). No answer
// of the Handler matches: net/http writes a handler's headers sorted
// (Connection before Content-Type) and with a Date, and no body the service
// writes holds a carriage return.
const cannedHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// expectationFailed starts the empty 417 net/http writes for an unknown
// Expect; the Handler never answers 417.
const expectationFailed = "HTTP/1.1 417 Expectation Failed\r\n"

// problemOf turns one canned answer, "HTTP/1.1 <code> <text>" + cannedHeaders
// + body, or the empty 417, into the same status as a problem document.
func problemOf(p []byte) ([]byte, bool) {
	if bytes.HasPrefix(p, []byte(expectationFailed)) && bytes.HasSuffix(p, []byte("\r\n\r\n")) {
		return problemAnswer(http.StatusExpectationFailed, apperr.EINVALID, "the Expect header asks for what the service does not do (only 100-continue)"), true
	}
	rest, ok := bytes.CutPrefix(p, []byte("HTTP/1.1 "))
	if !ok {
		return nil, false
	}
	statusLine, body, ok := bytes.Cut(rest, []byte(cannedHeaders))
	if !ok || len(statusLine) < 3 || bytes.Contains(statusLine, []byte("\r\n")) {
		return nil, false
	}
	status, err := strconv.Atoi(string(statusLine[:3]))
	if err != nil || status < 400 || status > 599 {
		return nil, false
	}
	code, detail := apperr.EINVALID, "the request could not be parsed: its request line, a header, or its Content-Length or Transfer-Encoding is malformed"
	switch {
	case status == http.StatusRequestHeaderFieldsTooLarge:
		code, detail = apperr.ETOOLARGE, "the request's header section is over the server's limit"
	case status == http.StatusNotImplemented:
		detail = "the request's Transfer-Encoding is not supported"
	default:
		// "400 Bad Request: missing required Host header" says more.
		prefix := fmt.Sprintf("%d %s: ", status, http.StatusText(status))
		if why, ok := bytes.CutPrefix(body, []byte(prefix)); ok && len(why) > 0 {
			detail = "the request could not be parsed: " + string(why)
		}
	}
	return problemAnswer(status, code, detail), true
}

// problemAnswer is a whole HTTP answer carrying a problem document, after
// which the connection closes.
func problemAnswer(status int, code, detail string) []byte {
	b, _ := json.Marshal(Problem{Type: ProblemTypePrefix + code, Title: http.StatusText(status), Status: status, Detail: detail})
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: application/problem+json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), len(b), b)
}
