package charge

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/paytest/paytest/internal/apperr"
	"github.com/paytest/paytest/target/consumer"
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
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return answer{}, apperr.Wrap(apperr.EINVALID, err, "the request body did not arrive within the server's read timeout")
		}
		return answer{}, apperr.Wrap(apperr.EINVALID, err, "reading the request body")
	}
	req, err := DecodeCharge(body)
	if err != nil {
		return answer{}, err
	}
	if !consumer.InCatalog(req.SKU, s.cfg.Catalog) {
		return answer{}, apperr.Errorf(apperr.EINVALID, "unknown sku %s: the catalog is %s .. %s",
			quote(req.SKU), consumer.CatalogSKU(1), consumer.CatalogSKU(s.cfg.Catalog))
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

// authenticate returns the merchant named by the bearer API key. Two
// Authorization headers are refused rather than one of them believed.
func (s *Service) authenticate(r *http.Request) (string, error) {
	hs := r.Header.Values("Authorization")
	switch {
	case len(hs) > 1:
		return "", apperr.Errorf(apperr.EINVALID, "send exactly one Authorization header, not %d", len(hs))
	case len(hs) == 0 || hs[0] == "":
		return "", apperr.Errorf(apperr.EUNAUTHORIZED, "missing API key: send Authorization: Bearer <api key>")
	}
	scheme, secret, ok := strings.Cut(hs[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(secret) == "" {
		return "", apperr.Errorf(apperr.EUNAUTHORIZED, "malformed Authorization header: want Bearer <api key>")
	}
	merchant, ok := s.keys.lookup(strings.TrimSpace(secret))
	if !ok {
		return "", apperr.Errorf(apperr.EUNAUTHORIZED, "unknown API key")
	}
	return merchant, nil
}

// apiKeys holds the SHA-256 digest of every configured secret, never the
// secret itself.
type apiKeys []apiKey

type apiKey struct {
	digest   [sha256.Size]byte
	merchant string
}

// lookup returns the merchant of secret. Its time does not depend on which
// key, if any, matches, nor on how much of one matches: every digest is
// compared in constant time, and the loop never stops early.
func (ks apiKeys) lookup(secret string) (string, bool) {
	d := sha256.Sum256([]byte(secret))
	match := -1
	for i := range ks {
		eq := subtle.ConstantTimeCompare(d[:], ks[i].digest[:])
		match = subtle.ConstantTimeSelect(eq, i, match)
	}
	if match < 0 {
		return "", false
	}
	return ks[match].merchant, true
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
