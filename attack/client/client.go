// Package client is paytest's retrying HTTP client: a per-attempt timeout,
// full-jitter exponential backoff, Retry-After honoured and spread above,
// retries with the same idempotency key and body, and a per-call-site retry
// budget that fails fast when the server is struggling. Every attempt, and
// every retry the budget refused, is handed to a record callback as a
// rundir.Attempt, so a run's history shows exactly what the client did.
package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paytest/paytest/internal/redact"
	"github.com/paytest/paytest/internal/rundir"
)

// Unlimited as Options.MaxAttempts retries until the context ends.
const Unlimited = -1

// DefaultKeyHeader is the header that carries the idempotency key.
const DefaultKeyHeader = "Idempotency-Key"

// ErrBudgetExhausted is Result.Err when the retry budget refused a retry.
var ErrBudgetExhausted = errors.New("client: retry budget exhausted")

// Options configure a Client. Zero fields take the defaults named.
type Options struct {
	// CallSite names the caller in metrics and history (default "charge").
	CallSite string
	// Timeout bounds each attempt (default 2s).
	Timeout time.Duration
	// MaxAttempts bounds the attempts per Do, first try included (default
	// 3; Unlimited retries until the context ends).
	MaxAttempts int
	// Base is the backoff's base delay (default 50ms).
	Base time.Duration
	// Cap is the largest backoff window (default 2s). Retry-After is
	// honoured even above it.
	Cap time.Duration
	// RetryAfterSpread spreads the wait after a Retry-After R over
	// [R, R+spread*max(R, Base)] (default 0.5): never sooner than R, and
	// clients told the same R do not come back together.
	RetryAfterSpread float64
	// NoJitter is UNSAFE and exists to prove the jitter check fails: every
	// backoff sleeps exactly min(Cap, Base*2^attempt) and a Retry-After R
	// exactly R.
	NoJitter bool
	// Budget, when set, is the retry budget of the call site, shared by
	// all its clients. nil means retries are never refused.
	Budget *Budget
	// HTTPClient sends the requests (default: keep-alive transport with
	// MaxIdleConnsPerHost = MaxIdleConnsPerHost, no redirects followed).
	HTTPClient *http.Client
	// MaxIdleConnsPerHost sizes the default transport's keep-alive pool
	// (default 1024); set it to the concurrency.
	MaxIdleConnsPerHost int
	// Registerer gets paytest_client_attempts_total and
	// paytest_retry_budget_exhausted_total (nil: metrics are kept but not
	// registered). Clients sharing a Registerer share the metrics.
	Registerer prometheus.Registerer
	// Rand draws the jitter. It is used under the client's lock. nil means
	// a PCG seeded from Seed.
	Rand *rand.Rand
	// Seed seeds the jitter when Rand is nil.
	Seed int64
	// MaxBody bounds how much of a response body is kept (default 1 MiB).
	// A longer 2xx body is still read to its end, so a cut-off is seen and
	// BodySHA256 covers all of it, but no id is read from it; any other
	// body is read no further.
	MaxBody int64
	// IDField is an RFC 6901 JSON pointer to the resource id in a 2xx JSON
	// body, recorded as the attempt's ChargeID (default "/id"). A string or
	// a number is taken as its text; anything else is no id.
	IDField string
	// ReplayHeader is the response header that marks a 2xx as a replay:
	// "Name" (present) or "Name=Value" (present with that value, compared
	// case-insensitively). Default "Idempotent-Replayed=true".
	ReplayHeader string
	// ReuseStatuses are the statuses with which a reuse op
	// (rundir.KindReuse) expects its changed body to be refused: such an
	// answer is a definite mismatch, never retried (default [422]). Every
	// one must be a 4xx.
	ReuseStatuses []int
	// Sleep waits d or until ctx ends (default: a real timer). Tests
	// inject one to avoid sleeping.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now is the clock for the attempts' start and end times (default
	// time.Now).
	Now func() time.Time
}

// Request is one logical operation's request, sent again unchanged on every
// retry: same key, same body.
type Request struct {
	Op       int
	Kind     string
	Sender   int
	Merchant string
	// Method defaults to POST.
	Method string
	URL    string
	Header http.Header
	// KeyHeader defaults to Idempotency-Key.
	KeyHeader string
	Key       string
	Body      []byte
	// FirstDelay is waited before the first attempt and recorded with
	// FirstReason (default rundir.ReasonFirst).
	FirstDelay  time.Duration
	FirstReason string
	// Intended is when the first attempt was due (the open model's
	// arrival); it is recorded with that attempt and its latency counts
	// from it. Zero: due when sent.
	Intended time.Time
}

// Result is what Do learnt about one request.
type Result struct {
	// Status is the last attempt's HTTP status (0 when none arrived).
	Status int
	// Outcome is the last attempt's rundir.Outcome*.
	Outcome  string
	Attempts int
	// Body is the last response's body (nil when it was cut off).
	Body []byte
	// ChargeID is the id (Options.IDField) in the complete 2xx JSON body,
	// if any.
	ChargeID string
	// BodySHA256 is the hex SHA-256 of the complete 2xx body.
	BodySHA256 string
	// Definite is true when the op's fate is known: a complete 2xx, or a
	// definite rejection (a 4xx other than 408, 409, 425 and 429; for a
	// reuse op, also one of Options.ReuseStatuses).
	Definite bool
	// Succeeded is true when an attempt got a complete 2xx. A 2xx whose
	// body was cut off is indeterminate, and retried.
	Succeeded bool
	// Err says why Do gave up without a definite answer (nil when Definite).
	Err error
}

// Client sends Requests with retries. It is safe for concurrent use.
type Client struct {
	o         Options
	hc        *http.Client
	idField   jsonPointer
	replay    replayRule
	attempts  [maxAttemptLabel]prometheus.Counter
	exhausted prometheus.Counter
	outcomes  *prometheus.CounterVec   // by outcome
	latency   *prometheus.HistogramVec // by outcome: from when an attempt was due to its end

	mu  sync.Mutex
	rng *rand.Rand
}

const maxAttemptLabel = 10

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// copyBufPool holds readBody's copy buffers: io.Copy would allocate (and
// clear) 32 KiB for every response, since neither a response body nor
// readBody's writer offers a shortcut around the buffer.
var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// New returns a Client for o.
func New(o Options) (*Client, error) {
	if o.CallSite == "" {
		o.CallSite = "charge"
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 3
	}
	if o.Base <= 0 {
		o.Base = 50 * time.Millisecond
	}
	if o.Cap <= 0 {
		o.Cap = 2 * time.Second
	}
	if o.Cap < o.Base {
		return nil, fmt.Errorf("client: cap %v is below base %v", o.Cap, o.Base)
	}
	if o.RetryAfterSpread == 0 {
		o.RetryAfterSpread = 0.5
	}
	if o.RetryAfterSpread < 0 {
		return nil, fmt.Errorf("client: negative Retry-After spread %v", o.RetryAfterSpread)
	}
	if o.MaxIdleConnsPerHost <= 0 {
		o.MaxIdleConnsPerHost = 1024
	}
	if o.MaxBody <= 0 {
		o.MaxBody = 1 << 20
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Client{o: o, hc: o.HTTPClient, rng: o.Rand}
	if err := c.answerOptions(); err != nil {
		return nil, err
	}
	if c.hc == nil {
		c.hc = NewHTTPClient(o.MaxIdleConnsPerHost)
	}
	if c.rng == nil {
		s := uint64(o.Seed)
		c.rng = rand.New(rand.NewPCG(s, s^0x9e3779b97f4a7c15))
	}
	if err := c.metrics(); err != nil {
		return nil, err
	}
	return c, nil
}

// metrics creates the client's metrics, or shares those of the same names
// already in Options.Registerer (clients of other call sites).
func (c *Client) metrics() error {
	o := &c.o
	attempts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "paytest_client_attempts_total",
		Help: "Attempts the retrying client made, by call site and attempt number (1 is the first try).",
	}, []string{"call_site", "attempt"})
	exhausted := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "paytest_retry_budget_exhausted_total",
		Help: "Retries the retry budget refused, by call site.",
	}, []string{"call_site"})
	outcomes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "paytest_client_attempt_outcomes_total",
		Help: "Attempts the retrying client made (or the budget refused), by call site and outcome.",
	}, []string{"call_site", "outcome"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "paytest_client_attempt_duration_seconds",
		Help:    "Attempt latency from when the attempt was due (the open model's arrival, else its send) to its answer, by call site and outcome.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
	}, []string{"call_site", "outcome"})
	if o.Registerer != nil {
		var err error
		if attempts, err = register(o.Registerer, attempts); err != nil {
			return err
		}
		if exhausted, err = register(o.Registerer, exhausted); err != nil {
			return err
		}
		if outcomes, err = register(o.Registerer, outcomes); err != nil {
			return err
		}
		if latency, err = register(o.Registerer, latency); err != nil {
			return err
		}
	}
	c.outcomes, c.latency = outcomes.MustCurryWith(prometheus.Labels{"call_site": o.CallSite}), latency.MustCurryWith(prometheus.Labels{"call_site": o.CallSite}).(*prometheus.HistogramVec)
	for i := range c.attempts {
		c.attempts[i] = attempts.WithLabelValues(o.CallSite, attemptLabel(i+1))
	}
	c.exhausted = exhausted.WithLabelValues(o.CallSite)
	return nil
}

// answerOptions fills in and checks the options that read an answer.
func (c *Client) answerOptions() error {
	o := &c.o
	if o.IDField == "" {
		o.IDField = DefaultIDField
	}
	if o.ReplayHeader == "" {
		o.ReplayHeader = DefaultReplayHeader
	}
	if len(o.ReuseStatuses) == 0 {
		o.ReuseStatuses = DefaultReuseStatuses
	}
	o.ReuseStatuses = slices.Clone(o.ReuseStatuses)
	for _, s := range o.ReuseStatuses {
		if s < 400 || s > 499 {
			return fmt.Errorf("client: reuse status %d is not a 4xx: a reuse must be refused with a client error", s)
		}
	}
	var err error
	if c.idField, err = parsePointer(o.IDField); err != nil {
		return err
	}
	c.replay, err = parseReplayHeader(o.ReplayHeader)
	return err
}

// NewHTTPClient returns the default HTTP client: keep-alive with
// maxIdlePerHost idle connections per host, at most maxDialing connections
// being opened at once, no compression, no redirects.
func NewHTTPClient(maxIdlePerHost int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 0
	t.MaxIdleConnsPerHost = maxIdlePerHost
	t.DisableCompression = true
	t.ForceAttemptHTTP2 = false
	t.IdleConnTimeout = 90 * time.Second
	t.DialContext = limitDials(t.DialContext, maxDialing)
	return &http.Client{
		Transport:     t,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// register registers v, or returns the collector of the same name already
// registered (several clients, one call site each, share a registry).
func register[V prometheus.Collector](reg prometheus.Registerer, v V) (V, error) {
	if err := reg.Register(v); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(V); ok {
				return existing, nil
			}
		}
		return v, fmt.Errorf("client: register metrics: %w", err)
	}
	return v, nil
}

func attemptLabel(n int) string {
	if n >= maxAttemptLabel {
		return strconv.Itoa(maxAttemptLabel) + "+"
	}
	return strconv.Itoa(n)
}

// Options returns the client's options with defaults filled in.
func (c *Client) Options() Options { return c.o }

// CloseIdleConnections closes the keep-alive connections of the client's
// HTTP client.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// Do sends req until it gets a definite answer, the attempts or the budget
// run out, or ctx ends. record, when not nil, gets every attempt, including
// a retry the budget refused (rundir.OutcomeBudget, not sent), in order.
func (c *Client) Do(ctx context.Context, req Request, record func(rundir.Attempt)) Result {
	var res Result
	delay, reason, capMS := req.FirstDelay, req.FirstReason, 0.0
	if reason == "" {
		reason = rundir.ReasonFirst
	}
	var retryCost float64
	lastTimeout := false
	for attempt := 1; ; attempt++ {
		if attempt > 1 && c.o.Budget != nil {
			cost, ok := c.o.Budget.take(lastTimeout)
			if !ok {
				c.refused(req, attempt, record)
				res.Outcome, res.Err = rundir.OutcomeBudget, ErrBudgetExhausted
				return res
			}
			retryCost = cost
		}
		if delay > 0 {
			if err := c.o.Sleep(ctx, delay); err != nil {
				res.Err = err
				return res
			}
		}
		a := c.base(req, attempt)
		if attempt == 1 {
			a.Intended = req.Intended
		}
		a.DelayMS = ms(delay)
		a.DelayReason = reason
		a.CapMS = capMS
		c.attempts[min(attempt, maxAttemptLabel)-1].Inc()
		retryAfter, hasRA, body, err := c.send(ctx, req, &a)
		c.observe(&a)
		if record != nil {
			record(a)
		}
		res.Attempts = attempt
		res.Status = a.Status
		res.Outcome = a.Outcome
		res.Body = body
		if c.definite(&res, &a, err, retryCost) {
			return res
		}
		if err == nil {
			err = fmt.Errorf("status %d", a.Status)
		}
		res.Err = err
		if ctx.Err() != nil {
			res.Err = ctx.Err()
			return res
		}
		if c.o.MaxAttempts > 0 && attempt >= c.o.MaxAttempts {
			res.Err = fmt.Errorf("client: gave up after %d attempts: %w", attempt, err)
			return res
		}
		lastTimeout = a.Outcome == rundir.OutcomeTimeout
		if hasRA {
			delay, capMS = c.retryAfterDelay(retryAfter)
			reason = rundir.ReasonRetryAfter
		} else {
			delay, capMS = c.backoff(attempt)
			reason = rundir.ReasonBackoff
		}
	}
}

// refused records a retry the budget refused: not sent.
func (c *Client) refused(req Request, attempt int, record func(rundir.Attempt)) {
	c.exhausted.Inc()
	now := c.o.Now()
	a := c.base(req, attempt)
	a.Outcome = rundir.OutcomeBudget
	a.Error = ErrBudgetExhausted.Error()
	a.Start, a.End = now, now
	c.observe(&a)
	if record != nil {
		record(a)
	}
}

// definite fills res when attempt a's answer settles the request: a
// complete 2xx, or a definite rejection (err is then non-nil only when
// the request could not even be built). Either refunds the retry's cost.
func (c *Client) definite(res *Result, a *rundir.Attempt, err error, retryCost float64) bool {
	switch {
	case err == nil && (a.Outcome == rundir.OutcomeNew || a.Outcome == rundir.OutcomeReplay):
		res.Definite, res.Succeeded, res.Err = true, true, nil
		res.ChargeID, res.BodySHA256 = a.ChargeID, a.BodySHA256
	case a.Outcome == rundir.OutcomeRejected || a.Outcome == rundir.OutcomeMismatch:
		res.Definite, res.Err = true, err
	default:
		return false
	}
	if c.o.Budget != nil {
		c.o.Budget.Success(retryCost)
	}
	return true
}

// observe counts a finished attempt in the live client metrics.
func (c *Client) observe(a *rundir.Attempt) {
	c.outcomes.WithLabelValues(a.Outcome).Inc()
	if a.Sent() && !a.End.IsZero() {
		c.latency.WithLabelValues(a.Outcome).Observe(a.End.Sub(a.Due()).Seconds())
	}
}

func (c *Client) base(req Request, attempt int) rundir.Attempt {
	return rundir.Attempt{
		Op: req.Op, Kind: req.Kind, Sender: req.Sender, CallSite: c.o.CallSite,
		Merchant: req.Merchant, Key: req.Key, Attempt: attempt,
	}
}

// Backoff returns the full-jitter window before the retry that follows
// failed attempt n: min(Cap, Base*2^n).
func (c *Client) Backoff(n int) time.Duration {
	w := c.o.Base
	for i := 0; i < n && w < c.o.Cap; i++ {
		w *= 2
	}
	return min(w, c.o.Cap)
}

// backoff draws the sleep after failed attempt n and returns it with the
// window it was drawn from, in milliseconds.
func (c *Client) backoff(n int) (time.Duration, float64) {
	w := c.Backoff(n)
	if c.o.NoJitter {
		return w, ms(w)
	}
	return time.Duration(c.float64() * float64(w)), ms(w)
}

// retryAfterDelay draws the sleep after a Retry-After ra: ra plus up to
// spread*max(ra, Base) above it. It returns the width of that window too.
func (c *Client) retryAfterDelay(ra time.Duration) (time.Duration, float64) {
	if c.o.NoJitter {
		return ra, 0
	}
	width := time.Duration(c.o.RetryAfterSpread * float64(max(ra, c.o.Base)))
	return ra + time.Duration(c.float64()*float64(width)), ms(width)
}

func (c *Client) float64() float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rng.Float64()
}

// send makes one attempt and fills a's status, outcome and times. err is
// non-nil when no complete response arrived.
func (c *Client) send(ctx context.Context, req Request, a *rundir.Attempt) (ra time.Duration, hasRA bool, body []byte, err error) {
	actx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	a.Start = c.o.Now()
	defer func() { a.End = c.o.Now() }()
	hreq, err := newHTTPRequest(actx, req)
	if err != nil {
		a.Outcome, a.Error = rundir.OutcomeRejected, redact.String(err.Error())
		return 0, false, nil, err
	}
	resp, err := c.hc.Do(hreq)
	if err != nil {
		a.Outcome, a.Error = failure(ctx, actx, err)
		return 0, false, nil, err
	}
	defer resp.Body.Close()
	a.Status = resp.StatusCode
	if v := resp.Header.Get("Retry-After"); v != "" {
		if d, ok := ParseRetryAfter(v, c.o.Now()); ok {
			ra, hasRA = d, true
			a.RetryAfterMS = ms(d)
		}
	}
	ok2xx := a.Status >= 200 && a.Status < 300
	body, sum, err := c.readBody(resp.Body, ok2xx)
	if err != nil {
		// The status line came but the body did not: the answer is lost,
		// whatever the status said.
		a.Outcome, a.Error = failure(ctx, actx, err)
		return ra, hasRA, nil, err
	}
	a.Outcome = c.outcome(req.Kind, resp.StatusCode)
	if ok2xx {
		if c.replay.marks(resp.Header) {
			a.Replayed = true
			a.Outcome = rundir.OutcomeReplay
		}
		a.ChargeID = c.idField.lookup(body)
		a.BodySHA256 = sum
	}
	return ra, hasRA, body, nil
}

// newHTTPRequest builds the request of one attempt. The body cannot be
// rewound (no GetBody) and is never http.NoBody: net/http then never sends
// it a second time on its own, as it would when a reused keep-alive
// connection drops after the request went out and the request carries an
// Idempotency-Key header or has no body. Every request on the wire is then
// one recorded attempt, whatever transport wraps this one. An empty body is
// thereby sent chunked on methods that usually carry one (POST, PUT, PATCH).
func newHTTPRequest(ctx context.Context, req Request) (*http.Request, error) {
	method := req.Method
	if method == "" {
		method = http.MethodPost
	}
	hreq, err := http.NewRequestWithContext(ctx, method, req.URL, bytes.NewReader(req.Body))
	if err != nil {
		return nil, err
	}
	hreq.GetBody = nil
	if hreq.Body == http.NoBody {
		hreq.Body = io.NopCloser(bytes.NewReader(nil))
	}
	h := make(http.Header, len(req.Header)+2)
	for k, v := range req.Header {
		h[k] = v
	}
	kh := req.KeyHeader
	if kh == "" {
		kh = DefaultKeyHeader
	}
	if req.Key != "" {
		h[http.CanonicalHeaderKey(kh)] = []string{req.Key}
	}
	if _, ok := h["Content-Type"]; !ok && len(req.Body) > 0 {
		h["Content-Type"] = jsonContentType
	}
	hreq.Header = h
	return hreq, nil
}

// readBody reads a response body, keeping at most MaxBody bytes. A 2xx
// body (digest) is read to its end and its hex SHA-256 returned: only a
// body that arrived whole is an answer. err is non-nil when the body was
// cut off (short of its Content-Length, a chunked body without its last
// chunk, a reset or a timeout).
func (c *Client) readBody(r io.Reader, digest bool) (body []byte, sum string, err error) {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	w := cappedBody{buf: buf, max: c.o.MaxBody, digest: digest}
	cb := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(cb)
	// Without a digest the body is read no further than the cap.
	for digest || int64(buf.Len()) < c.o.MaxBody {
		n, rerr := r.Read(*cb)
		w.write((*cb)[:n])
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, "", rerr
		}
	}
	if digest {
		sum = w.sum()
	}
	return bytes.Clone(buf.Bytes()), sum, nil
}

var jsonContentType = []string{"application/json"}

// failure classifies an attempt that got no complete response.
// The error names the request's URL, which may carry a secret in its query
// or userinfo: it is masked before it reaches history.jsonl.
func failure(ctx, actx context.Context, err error) (string, string) {
	msg := redact.String(err.Error())
	var ne net.Error
	switch {
	case ctx.Err() == nil && errors.Is(actx.Err(), context.DeadlineExceeded):
		return rundir.OutcomeTimeout, msg
	case errors.As(err, &ne) && ne.Timeout():
		return rundir.OutcomeTimeout, msg
	default:
		return rundir.OutcomeNetwork, msg
	}
}

// outcome maps a complete answer's status to a rundir.Outcome*. For a
// reuse op, a declared reuse status is the expected mismatch; an
// undeclared 422 is still a definite refusal, but not the one declared.
func (c *Client) outcome(kind string, status int) string {
	if kind == rundir.KindReuse {
		if slices.Contains(c.o.ReuseStatuses, status) {
			return rundir.OutcomeMismatch
		}
		if status == http.StatusUnprocessableEntity {
			return rundir.OutcomeRejected
		}
	}
	return outcome(status)
}

// outcome maps a status to a rundir.Outcome*.
func outcome(status int) string {
	switch {
	case status >= 200 && status < 300:
		return rundir.OutcomeNew
	case status == http.StatusConflict:
		return rundir.OutcomeConflict
	case status == http.StatusUnprocessableEntity:
		return rundir.OutcomeMismatch
	case status == http.StatusTooManyRequests, status == http.StatusServiceUnavailable,
		status == http.StatusRequestTimeout, status == http.StatusTooEarly:
		return rundir.OutcomeUnavailable
	case status >= 400 && status < 500:
		return rundir.OutcomeRejected
	default:
		return rundir.OutcomeServerError
	}
}

// Retryable reports whether an attempt with this outcome is retried.
func Retryable(outcome string) bool {
	switch outcome {
	case rundir.OutcomeConflict, rundir.OutcomeUnavailable, rundir.OutcomeServerError,
		rundir.OutcomeTimeout, rundir.OutcomeNetwork:
		return true
	}
	return false
}

// ParseRetryAfter parses a Retry-After value, delay-seconds (fractions
// accepted) or an HTTP-date, relative to now. A date in the past is 0.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		if s < 0 || s > 1e9 {
			return 0, false
		}
		return time.Duration(s * float64(time.Second)), true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(0, t.Sub(now)), true
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
