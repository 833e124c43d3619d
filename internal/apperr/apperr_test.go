package apperr

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestCodeAndMessageThroughWrapping(t *testing.T) {
	base := &Error{Code: EUNAVAILABLE, Message: "database down", RetryAfter: 2 * time.Second}
	wrapped := fmt.Errorf("charge: %w", base)
	if got := Code(wrapped); got != EUNAVAILABLE {
		t.Fatalf("Code = %q, want %q", got, EUNAVAILABLE)
	}
	if got := Message(wrapped); got != "database down" {
		t.Fatalf("Message = %q", got)
	}
	if got := RetryAfter(wrapped); got != 2*time.Second {
		t.Fatalf("RetryAfter = %v", got)
	}
	if Code(errors.New("boom")) != EINTERNAL || Message(errors.New("secret detail")) != "internal error" {
		t.Fatal("a plain error must read as internal without leaking its text")
	}
	if Code(nil) != "" || Wrap(EINVALID, nil, "x") != nil {
		t.Fatal("nil must stay nil")
	}
	w := Wrap(EUSAGE, errors.New("no such file"), "reading %s", "x.yaml")
	if Code(w) != EUSAGE || w.Error() != "reading x.yaml: no such file" {
		t.Fatalf("Wrap = %v (%s)", w, Code(w))
	}
}
