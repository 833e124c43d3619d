package foreign_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paytest/paytest/internal/foreign"
	"github.com/paytest/paytest/internal/proc"
)

// TestStartProcessWaitsForTheReadyFile: an endpoint process is started
// when it writes its ready file, not when it says so. A child that prints
// the endpoint's listening line and writes no ready file is refused, with
// the reason: it exited, or it outlived the caller's patience.
func TestStartProcessWaitsForTheReadyFile(t *testing.T) {
	liar := func(t *testing.T, then string) string {
		t.Helper()
		exe := filepath.Join(t.TempDir(), "liar")
		script := "#!/bin/sh\necho 'foreign: listening on 127.0.0.1:4242'\necho 'foreign: listening on 127.0.0.1:4242' >&2\n" + then + "\n"
		if err := os.WriteFile(exe, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		return exe
	}
	t.Run("exits", func(t *testing.T) {
		_, err := foreign.StartProcess(context.Background(), foreign.ProcessConfig{Exe: liar(t, "exit 0")})
		if !errors.Is(err, proc.ErrChildExited) || !strings.Contains(err.Error(), "endpoint process did not start") {
			t.Fatalf("err = %v; want the endpoint process to have exited before listening", err)
		}
	})
	t.Run("lingers", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		_, err := foreign.StartProcess(ctx, foreign.ProcessConfig{Exe: liar(t, "exec sleep 60")})
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v; want the wait for the ready file to time out", err)
		}
	})
}
