// Package crashpoint lets a process kill itself with SIGKILL at a named place
// in its code, so that tests and attacks can crash a component exactly
// between two steps (after publish and before mark, say). A point is armed
// with a spec "name" or "name:N": the process dies the N-th time (default 1)
// the point is hit. Points are off unless armed.
package crashpoint

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/paytest/paytest/internal/apperr"
)

// Set is a set of armed crash points. A nil *Set is valid and never fires.
type Set struct {
	mu    sync.Mutex
	at    map[string]int // point -> hit that fires
	hits  map[string]int
	kill  func()
	Notes func(msg string) // called just before the kill; default writes to stderr
}

// Parse arms the points in specs ("name" or "name:N"), accepting only the
// names in allowed. An empty specs gives a nil Set. On Windows, which has
// no SIGKILL to die of, arming any point is refused.
func Parse(specs []string, allowed ...string) (*Set, error) {
	var s *Set
	for _, spec := range specs {
		spec = strings.TrimSpace(spec)
		if spec == "" {
			continue
		}
		name, nStr, hasN := strings.Cut(spec, ":")
		n := 1
		if hasN {
			v, err := strconv.Atoi(nStr)
			if err != nil || v < 1 {
				return nil, apperr.Errorf(apperr.EUSAGE, "crash point %q: the count after ':' must be a whole number >= 1", spec)
			}
			n = v
		}
		ok := false
		for _, a := range allowed {
			ok = ok || a == name
		}
		if !ok {
			sorted := append([]string(nil), allowed...)
			sort.Strings(sorted)
			return nil, apperr.Errorf(apperr.EUSAGE, "unknown crash point %q (this component has: %s)", name, strings.Join(sorted, ", "))
		}
		if err := checkOS(runtime.GOOS); err != nil {
			return nil, err
		}
		if s == nil {
			s = &Set{at: map[string]int{}, hits: map[string]int{}}
		}
		s.at[name] = n
	}
	return s, nil
}

// Armed reports whether the named point is armed.
func (s *Set) Armed(name string) bool {
	if s == nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.at[name]
	return ok
}

// Hit counts one pass through the named point and, if this is the pass it is
// armed for, kills the process with SIGKILL: no deferred function, no flush,
// no goodbye, exactly like a crash.
func (s *Set) Hit(name string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	n, ok := s.at[name]
	if !ok {
		s.mu.Unlock()
		return
	}
	s.hits[name]++
	fire := s.hits[name] == n
	s.mu.Unlock()
	if !fire {
		return
	}
	msg := fmt.Sprintf("crashpoint: %s reached (hit %d): SIGKILL pid %d", name, n, os.Getpid())
	if s.Notes != nil {
		s.Notes(msg)
	} else {
		fmt.Fprintln(os.Stderr, msg)
	}
	if s.kill != nil {
		s.kill()
		return
	}
	killSelf()
	select {} // never returns: the signal is on its way
}

// checkOS refuses crash points on an operating system (runtime.GOOS) where
// a process cannot SIGKILL itself.
func checkOS(goos string) error {
	if goos == "windows" || goos == "plan9" || goos == "js" || goos == "wasip1" {
		return apperr.Errorf(apperr.EUSAGE, "crash points need Linux or macOS: a crash is the process sending itself SIGKILL, which %s has no equivalent of", goos)
	}
	return nil
}
