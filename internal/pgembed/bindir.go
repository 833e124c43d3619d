package pgembed

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"github.com/paytest/paytest/internal/apperr"
)

// binDirGlobs are the directories, by operating system, where findBinDir
// looks for initdb and postgres when PATH has none: in order of preference,
// and within one pattern the newest version first. Homebrew's
// postgresql@N formulae are keg-only, so they are not on PATH by default.
var binDirGlobs = map[string][]string{
	"linux": {"/usr/lib/postgresql/*/bin"},
	"darwin": {
		"/opt/homebrew/opt/postgresql@*/bin", // Homebrew on Apple silicon
		"/opt/homebrew/opt/postgresql/bin",
		"/usr/local/opt/postgresql@*/bin", // Homebrew on Intel
		"/usr/local/opt/postgresql/bin",
		"/Applications/Postgres.app/Contents/Versions/*/bin",
	},
}

// installHints say how to get the server binaries, by operating system.
var installHints = map[string]string{
	"linux":  "install them (Debian: apt-get install postgresql)",
	"darwin": "install them (brew install postgresql@17, or Postgres.app)",
}

// ErrNoBinaries is returned when no initdb/postgres pair can be found.
var ErrNoBinaries = noBinaries(runtime.GOOS)

// noBinaries is ErrNoBinaries on the operating system goos: where it
// looked and how to install the binaries there.
func noBinaries(goos string) *apperr.Error {
	where := "PATH"
	if globs := binDirGlobs[goos]; len(globs) > 0 {
		where += " and " + strings.Join(globs, ", ")
	}
	hint, ok := installHints[goos]
	if !ok {
		hint = "install them"
	}
	return &apperr.Error{
		Code:    apperr.EINCONCLUSIVE,
		Message: "no PostgreSQL server binaries found (looked in " + where + "): " + hint + " or pass --database-url postgres://...",
	}
}

// findBinDir returns dir if it holds initdb and postgres, or, with dir
// empty, the first directory that does: initdb's on PATH, then this
// system's binDirGlobs.
func findBinDir(dir string) (string, error) {
	return searchBinDir(dir, exec.LookPath, "", binDirGlobs[runtime.GOOS])
}

// searchBinDir is findBinDir with its world passed in: lookPath finds a
// program on PATH, and the globs are taken under root ("" for /).
func searchBinDir(dir string, lookPath func(string) (string, error), root string, globs []string) (string, error) {
	if dir != "" {
		if hasServer(dir) {
			return dir, nil
		}
		return "", ErrNoBinaries
	}
	if p, err := lookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil && hasServer(filepath.Dir(real)) {
			return filepath.Dir(real), nil
		}
		if hasServer(filepath.Dir(p)) {
			return filepath.Dir(p), nil
		}
	}
	for _, g := range globs {
		matches, _ := filepath.Glob(filepath.Join(root, g))
		sort.SliceStable(matches, func(i, j int) bool { return versionOf(matches[i]) > versionOf(matches[j]) })
		for _, m := range matches {
			if hasServer(m) {
				return m, nil
			}
		}
	}
	return "", ErrNoBinaries
}

// hasServer reports whether dir holds initdb and postgres.
func hasServer(dir string) bool {
	for _, b := range []string{"initdb", "postgres"} {
		if st, err := os.Stat(filepath.Join(dir, b)); err != nil || st.IsDir() {
			return false
		}
	}
	return true
}

// versionOf is the major version a bin directory's parent names:
// /usr/lib/postgresql/16/bin, .../opt/postgresql@16/bin and
// .../Versions/16/bin are all 16; a name without one ("latest") is 0.
func versionOf(binDir string) float64 {
	name := filepath.Base(filepath.Dir(binDir))
	if _, after, ok := strings.Cut(name, "@"); ok {
		name = after
	}
	v, _ := strconv.ParseFloat(name, 64)
	return v
}
