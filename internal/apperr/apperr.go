// Package apperr is paytest's one error vocabulary: a small set of codes,
// an Error type that carries one, and helpers to read the code back out of a
// wrapped chain. Codes are mapped to HTTP statuses and exit codes only at the
// edges (the charge service's HTTP layer and cmd/paytest), never in between.
package apperr

import (
	"errors"
	"fmt"
	"time"
)

// Error codes. Each names a kind of failure a caller can act on.
const (
	// EINVALID is a malformed request or an invalid value: the caller's mistake.
	EINVALID = "invalid"
	// EUNAUTHORIZED is a missing or unknown credential.
	EUNAUTHORIZED = "unauthorized"
	// ENOTFOUND is a missing resource.
	ENOTFOUND = "not_found"
	// EMETHOD is a request with a method the resource does not take.
	EMETHOD = "method_not_allowed"
	// ECONFLICT is a request that collides with one still in flight.
	ECONFLICT = "conflict"
	// EMISMATCH is an idempotency key reused with a different request.
	EMISMATCH = "mismatch"
	// ETOOLARGE is a request body over the limit.
	ETOOLARGE = "too_large"
	// EUNAVAILABLE is a dependency that is down or an overloaded service.
	EUNAVAILABLE = "unavailable"
	// EINTERNAL is a bug or an unexpected failure.
	EINTERNAL = "internal"
	// EUSAGE is a bad flag, an unknown profile or an unreadable file.
	EUSAGE = "usage"
	// EVIOLATED is a verification whose checks did not all hold.
	EVIOLATED = "violated"
	// EINCONCLUSIVE is a verification whose evidence could not be collected.
	EINCONCLUSIVE = "inconclusive"
)

// Error is an error with a code, a message meant for users, and an optional
// cause. RetryAfter, when positive, tells a client when to come back.
type Error struct {
	Code       string
	Message    string
	RetryAfter time.Duration
	Err        error
}

// Error implements the error interface.
func (e *Error) Error() string {
	switch {
	case e.Err != nil && e.Message != "":
		return e.Message + ": " + e.Err.Error()
	case e.Err != nil:
		return e.Err.Error()
	default:
		return e.Message
	}
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an Error with the given code whose cause is err. It returns
// nil when err is nil.
func Wrap(code string, err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: err}
}

// Code returns the code of the first Error in err's chain, EINTERNAL for any
// other non-nil error and "" for nil.
func Code(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// Message returns the user-facing message of the first Error in err's chain,
// or a generic text for errors without one so internals never leak.
func Message(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) && e.Message != "" {
		return e.Message
	}
	return "internal error"
}

// RetryAfter returns the RetryAfter of the first Error in err's chain.
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}
