package proc

import (
	"testing"

	"github.com/paytest/paytest/internal/apperr"
)

// TestCheckOS refuses the bundled system on Windows with a usage error
// (exit 2) that points at --target, and allows it on Unix.
func TestCheckOS(t *testing.T) {
	for _, goos := range []string{"linux", "darwin", "freebsd"} {
		if err := CheckOS(goos); err != nil {
			t.Errorf("%s: %v", goos, err)
		}
	}
	err := CheckOS("windows")
	if apperr.Code(err) != apperr.EUSAGE || err.Error() != "the bundled reference system needs Linux or macOS; use --target URL" {
		t.Fatalf("windows: %v (code %q)", err, apperr.Code(err))
	}
}
