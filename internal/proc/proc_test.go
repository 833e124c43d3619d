package proc

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
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

// writeReady is a shell command that writes a ready record for addr to
// $PAYTEST_READY_FILE the way WriteReady does: a temporary file renamed
// into place.
func writeReady(addr string) string {
	return `printf '{"addr":"` + addr + `","pid":%d}' $$ >"$PAYTEST_READY_FILE.tmp" && mv "$PAYTEST_READY_FILE.tmp" "$PAYTEST_READY_FILE"`
}

func TestStartLearnsAddressAndStops(t *testing.T) {
	log := &syncBuf{}
	p, err := Start(context.Background(), Spec{
		Name: "sh", Path: "/bin/sh", Log: log,
		Args: []string{"-c", `echo booting; echo 'level=INFO msg=listening component=x addr=127.0.0.1:4242'; ` +
			writeReady("127.0.0.1:4242") + `; trap 'exit 0' TERM; while :; do sleep 0.05; done`},
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
		Args: []string{"-c", writeReady("x:1") + `; while :; do sleep 0.05; done`},
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

// TestTheReadyFileAloneStartsAChild: the address comes from the ready file,
// never from the log. A child that logs a listening line but writes no
// ready file has not started (whether it lingers or exits), and one that
// writes the file without a word in its log has.
func TestTheReadyFileAloneStartsAChild(t *testing.T) {
	fake := `echo 'level=INFO msg=listening component=x addr=127.0.0.1:4242'; echo 'foreign: listening on 127.0.0.1:4242'`
	t.Run("a listening line lingering", func(t *testing.T) {
		_, err := Start(context.Background(), Spec{
			Name: "liar", Path: "/bin/sh", StartTimeout: 500 * time.Millisecond,
			Args: []string{"-c", fake + `; while :; do sleep 0.05; done`},
		})
		if err == nil || !strings.Contains(err.Error(), "liar did not write its ready file within 500ms") {
			t.Fatalf("err = %v; want a start timeout naming the child", err)
		}
	})
	t.Run("a listening line then exit", func(t *testing.T) {
		_, err := Start(context.Background(), Spec{Name: "liar", Path: "/bin/sh", Args: []string{"-c", fake + `; exit 0`}})
		if err == nil || !strings.Contains(err.Error(), "liar exited before listening") {
			t.Fatalf("err = %v; want an early exit naming the child", err)
		}
	})
	t.Run("a silent ready file", func(t *testing.T) {
		log := &syncBuf{}
		p, err := Start(context.Background(), Spec{
			Name: "quiet", Path: "/bin/sh", Log: log,
			Args: []string{"-c", writeReady("127.0.0.1:5151") + `; trap 'exit 0' TERM; while :; do sleep 0.05; done`},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Stop(5 * time.Second) })
		if p.Addr() != "127.0.0.1:5151" || log.String() != "" {
			t.Fatalf("Addr = %q, log %q; want 127.0.0.1:5151 from the file alone", p.Addr(), log.String())
		}
	})
}

// TestWriteReadyIsAwaited: what WriteReady writes, Await reads, and a
// record the child did not write whole is an error, not an address.
func TestWriteReadyIsAwaited(t *testing.T) {
	rf, err := NewReadyFile()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rf.Remove)
	t.Setenv(EnvReadyFile, rf.Path)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go func() { _ = AnnounceReady("127.0.0.1:6161") }()
	r, err := rf.Await(ctx, nil)
	if err != nil || r.Addr != "127.0.0.1:6161" || r.Pid != os.Getpid() {
		t.Fatalf("Await = %+v, %v; want 127.0.0.1:6161 from pid %d", r, err, os.Getpid())
	}
	if err := os.WriteFile(rf.Path, []byte(`{"pid":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if r, err := rf.Await(ctx, nil); err == nil {
		t.Fatalf("Await took a record without an address: %+v", r)
	}
	rf.Remove()
	if _, err := os.Stat(filepath.Dir(rf.Path)); !os.IsNotExist(err) {
		t.Fatalf("Remove left %s: %v", filepath.Dir(rf.Path), err)
	}
}
