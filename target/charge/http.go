package charge

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/paytest/paytest/internal/apperr"
)

// ProblemTypePrefix starts the "type" of every problem document this
// service returns; the apperr code follows ("urn:paytest:problem:invalid").
const ProblemTypePrefix = "urn:paytest:problem:"

// Problem is an RFC 9457 problem document, the body of every error answer
// (Content-Type: application/problem+json).
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// ReplayedHeader marks an answer replayed from a finished key.
const ReplayedHeader = "Idempotent-Replayed"

// statusOf maps an apperr code to an HTTP status: the only place where that
// happens.
func statusOf(code string) int {
	switch code {
	case apperr.EINVALID:
		return http.StatusBadRequest
	case apperr.EUNAUTHORIZED:
		return http.StatusUnauthorized
	case apperr.ENOTFOUND:
		return http.StatusNotFound
	case apperr.EMETHOD:
		return http.StatusMethodNotAllowed
	case apperr.ECONFLICT:
		return http.StatusConflict
	case apperr.ETOOLARGE:
		return http.StatusRequestEntityTooLarge
	case apperr.EMISMATCH:
		return http.StatusUnprocessableEntity
	case apperr.EUNAVAILABLE:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// outcomeOf names the metric outcome of an error code.
func outcomeOf(code string) string {
	switch code {
	case apperr.EINVALID, apperr.ETOOLARGE, apperr.EMETHOD, apperr.ENOTFOUND:
		return OutcomeInvalid
	case apperr.EUNAUTHORIZED:
		return OutcomeUnauthorized
	case apperr.ECONFLICT:
		return OutcomeConflict
	case apperr.EMISMATCH:
		return OutcomeMismatch
	default:
		return OutcomeError
	}
}

// Handler serves POST /charge, GET /metrics, /healthz and /readyz.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/charge", s.serveCharge)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.serveReady)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, apperr.Errorf(apperr.ENOTFOUND, "no resource at %s; the API is POST /charge", r.URL.Path))
	})
	return mux
}

func (s *Service) serveReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	if err := s.pool.Ping(ctx); err != nil {
		writeProblem(w, &apperr.Error{Code: apperr.EUNAVAILABLE, RetryAfter: retryAfter, Message: "database unreachable", Err: err})
		return
	}
	if s.nc != nil && !s.nc.IsConnected() {
		writeProblem(w, &apperr.Error{Code: apperr.EUNAVAILABLE, RetryAfter: retryAfter, Message: "NATS not connected"})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ready\n")
}

func (s *Service) serveCharge(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	ans, err := s.handleCharge(w, r)
	var outcome string
	if err != nil {
		code := apperr.Code(err)
		outcome = outcomeOf(code)
		if code == apperr.EINTERNAL {
			s.log.Error("charge failed", "err", err)
		} else if code == apperr.EUNAVAILABLE {
			s.log.Warn("charge failed: dependency unavailable", "err", err)
		}
		if code == apperr.EMETHOD {
			w.Header().Set("Allow", http.MethodPost)
		}
		if code == apperr.EUNAUTHORIZED {
			w.Header().Set("WWW-Authenticate", `Bearer realm="paytest"`)
		}
		writeProblem(w, err)
	} else {
		outcome = OutcomeNew
		h := w.Header()
		if ans.contentType != "" {
			h.Set("Content-Type", ans.contentType)
		}
		if ans.replayed {
			outcome = OutcomeReplay
			h.Set(ReplayedHeader, "true")
		}
		h.Set("Content-Length", strconv.Itoa(len(ans.body)))
		w.WriteHeader(ans.status)
		_, _ = w.Write(ans.body)
	}
	s.m.requests.WithLabelValues(outcome).Inc()
	s.m.duration.Observe(time.Since(start).Seconds())
}

// handleCharge checks the request (method, credential, key, body) without
// touching the database, then runs it through the state machine.
func (s *Service) handleCharge(w http.ResponseWriter, r *http.Request) (answer, error) {
	if r.Method != http.MethodPost {
		return answer{}, apperr.Errorf(apperr.EMETHOD, "%s /charge: only POST is allowed", r.Method)
	}
	merchant, err := s.authenticate(r)
	if err != nil {
		return answer{}, err
	}
	keys := r.Header.Values("Idempotency-Key")
	if len(keys) > 1 {
		return answer{}, apperr.Errorf(apperr.EINVALID, "send exactly one Idempotency-Key header, not %d", len(keys))
	}
	key := ""
	if len(keys) == 1 {
		key = keys[0]
	}
	if err := ValidateKey(key); err != nil {
		return answer{}, err
	}
	if r.ContentLength > MaxBodyBytes {
		return answer{}, tooLarge()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return answer{}, tooLarge()
		}
		return answer{}, apperr.Wrap(apperr.EINVALID, err, "reading the request body")
	}
	req, err := DecodeCharge(body)
	if err != nil {
		return answer{}, err
	}
	// The database work is not cut short by a client that hangs up: it
	// finishes, so that the client's retry finds a replay, not a stuck key.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.cfg.RequestTimeout)
	defer cancel()
	return s.charge(ctx, merchant, key, req)
}

func tooLarge() error {
	return apperr.Errorf(apperr.ETOOLARGE, "request body is over the limit of %d bytes", MaxBodyBytes)
}

// authenticate returns the merchant named by the bearer API key.
func (s *Service) authenticate(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", apperr.Errorf(apperr.EUNAUTHORIZED, "missing API key: send Authorization: Bearer <api key>")
	}
	scheme, secret, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(secret) == "" {
		return "", apperr.Errorf(apperr.EUNAUTHORIZED, "malformed Authorization header: want Bearer <api key>")
	}
	merchant, ok := s.keys[strings.TrimSpace(secret)]
	if !ok {
		return "", apperr.Errorf(apperr.EUNAUTHORIZED, "unknown API key")
	}
	return merchant, nil
}

// writeProblem writes err as an RFC 9457 problem document.
func writeProblem(w http.ResponseWriter, err error) {
	code := apperr.Code(err)
	status := statusOf(code)
	if ra := apperr.RetryAfter(err); ra > 0 {
		secs := int((ra + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	detail := apperr.Message(err)
	if code == apperr.EINTERNAL {
		detail = "internal error"
	}
	b, _ := json.Marshal(Problem{Type: ProblemTypePrefix + code, Title: http.StatusText(status), Status: status, Detail: detail})
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
