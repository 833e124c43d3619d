package proc

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/apperr"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestStartLearnsAddressAndStops(t *testing.T) {
	log := &syncBuf{}
	p, err := Start(context.Background(), Spec{
		Name: "sh", Path: "/bin/sh", Log: log,
		Args: []string{"-c", `echo booting; echo 'level=INFO msg=listening component=x addr=127.0.0.1:4242'; trap 'exit 0' TERM; while :; do sleep 0.05; done`},
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.Addr() != "127.0.0.1:4242" {
		t.Fatalf("Addr = %q", p.Addr())
	}
	if err := p.Stop(5 * time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := p.Stop(time.Second); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if !strings.Contains(log.String(), "[sh] booting") {
		t.Fatalf("log not teed: %q", log.String())
	}
}

func TestKillIsACrash(t *testing.T) {
	p, err := Start(context.Background(), Spec{
		Name: "sh", Path: "/bin/sh",
		Args: []string{"-c", `echo 'msg=listening addr=x:1'; while :; do sleep 0.05; done`},
	})
	if err != nil {
		t.Fatal(err)
	}
	p.Kill()
	if done, err := p.Exited(); !done || !KilledBySignal(err, syscall.SIGKILL) {
		t.Fatalf("Exited = %v, %v; want killed by SIGKILL", done, err)
	}
}

func TestExitBeforeListeningIsAnError(t *testing.T) {
	tests := []struct {
		name, script, code string
	}{
		{"a crash", "echo one; echo two; echo three; echo nope; exit 3", apperr.EINTERNAL},
		{"flags refused", "echo 'unknown flag: --bogus' >&2; exit 2", apperr.EUSAGE},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Start(context.Background(), Spec{Name: "sh", Path: "/bin/sh", Args: []string{"-c", tc.script}})
			if err == nil || !strings.Contains(err.Error(), "exited before listening") {
				t.Fatalf("err = %v", err)
			}
			// The error quotes the child's last words.
			last := tc.script[strings.LastIndex(tc.script, "echo ")+5 : strings.LastIndex(tc.script, ";")]
			last = strings.TrimSuffix(strings.Trim(strings.TrimSuffix(last, " >&2"), "'"), "'")
			if !strings.Contains(err.Error(), last) {
				t.Errorf("err = %v; want it to quote %q", err, last)
			}
			if got := apperr.Code(err); got != tc.code {
				t.Errorf("code %s, want %s", got, tc.code)
			}
		})
	}
}
