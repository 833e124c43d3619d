package crashpoint

import (
	"strings"
	"testing"

	"github.com/paytest/paytest/internal/apperr"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		specs []string
		code  string
	}{
		{nil, ""},
		{[]string{"after-publish"}, ""},
		{[]string{"after-publish:3"}, ""},
		{[]string{"after-publish:0"}, apperr.EUSAGE},
		{[]string{"after-publish:x"}, apperr.EUSAGE},
		{[]string{"nowhere"}, apperr.EUSAGE},
	} {
		_, err := Parse(tc.specs, "after-publish", "after-claim")
		if apperr.Code(err) != tc.code {
			t.Errorf("Parse(%q) code = %q, want %q (%v)", tc.specs, apperr.Code(err), tc.code, err)
		}
	}
}

func TestHitFiresOnTheNthPassOnly(t *testing.T) {
	s, err := Parse([]string{"after-publish:3"}, "after-publish")
	if err != nil {
		t.Fatal(err)
	}
	fired := 0
	s.kill = func() { fired++ }
	s.Notes = func(string) {}
	for i := 0; i < 5; i++ {
		s.Hit("after-publish")
		s.Hit("other")
	}
	if fired != 1 {
		t.Fatalf("fired %d times, want once", fired)
	}
	var none *Set
	none.Hit("after-publish") // must not panic
	if none.Armed("after-publish") || !s.Armed("after-publish") {
		t.Fatal("Armed is wrong")
	}
}

// TestCheckOSRefusesWithoutSIGKILL refuses crash points, as a usage error,
// where a process cannot SIGKILL itself, and allows them on Unix.
func TestCheckOSRefusesWithoutSIGKILL(t *testing.T) {
	for _, goos := range []string{"linux", "darwin", "freebsd"} {
		if err := checkOS(goos); err != nil {
			t.Errorf("%s: %v", goos, err)
		}
	}
	err := checkOS("windows")
	if apperr.Code(err) != apperr.EUSAGE || !strings.Contains(err.Error(), "crash points need Linux or macOS") {
		t.Fatalf("windows: %v (code %q)", err, apperr.Code(err))
	}
}
