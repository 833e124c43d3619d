package pgembed

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSearchBinDir finds the server binaries in fake trees laid out like
// Debian's, Homebrew's (both prefixes) and Postgres.app's.
func TestSearchBinDir(t *testing.T) {
	const (
		brewARM = "opt/homebrew/opt"
		brewX86 = "usr/local/opt"
		app     = "Applications/Postgres.app/Contents/Versions"
	)
	tests := []struct {
		name   string
		goos   string
		full   []string // bin directories with initdb and postgres
		half   []string // bin directories with initdb only
		link   string   // usr/local/bin/initdb links to this directory's initdb
		onPath bool     // initdb is found on PATH (usr/local/bin)
		want   string   // "" for ErrNoBinaries
	}{
		{name: "debian newest", goos: "linux",
			full: []string{"usr/lib/postgresql/9.6/bin", "usr/lib/postgresql/16/bin", "usr/lib/postgresql/13/bin"},
			want: "usr/lib/postgresql/16/bin"},
		{name: "debian skips a half install", goos: "linux",
			full: []string{"usr/lib/postgresql/15/bin"}, half: []string{"usr/lib/postgresql/17/bin"},
			want: "usr/lib/postgresql/15/bin"},
		{name: "linux ignores macOS places", goos: "linux",
			full: []string{brewARM + "/postgresql@16/bin"}},
		{name: "homebrew apple silicon newest", goos: "darwin",
			full: []string{brewARM + "/postgresql@14/bin", brewARM + "/postgresql@16/bin"},
			want: brewARM + "/postgresql@16/bin"},
		{name: "homebrew unversioned", goos: "darwin",
			full: []string{brewARM + "/postgresql/bin"},
			want: brewARM + "/postgresql/bin"},
		{name: "homebrew intel", goos: "darwin",
			full: []string{brewX86 + "/postgresql@15/bin"},
			want: brewX86 + "/postgresql@15/bin"},
		{name: "homebrew before postgres.app", goos: "darwin",
			full: []string{app + "/17/bin", brewX86 + "/postgresql@15/bin"},
			want: brewX86 + "/postgresql@15/bin"},
		{name: "postgres.app newest", goos: "darwin",
			full: []string{app + "/15/bin", app + "/latest/bin", app + "/16/bin"},
			want: app + "/16/bin"},
		{name: "postgres.app when homebrew is half there", goos: "darwin",
			full: []string{app + "/15/bin"}, half: []string{brewARM + "/postgresql@17/bin"},
			want: app + "/15/bin"},
		{name: "PATH first, through its symlink", goos: "darwin",
			full: []string{"opt/homebrew/Cellar/postgresql@17/17.2/bin", brewARM + "/postgresql@16/bin"},
			link: "opt/homebrew/Cellar/postgresql@17/17.2/bin",
			want: "opt/homebrew/Cellar/postgresql@17/17.2/bin"},
		{name: "PATH directory itself", goos: "linux",
			full: []string{"usr/local/bin", "usr/lib/postgresql/16/bin"}, onPath: true,
			want: "usr/local/bin"},
		{name: "nothing", goos: "darwin", half: []string{app + "/16/bin"}},
		{name: "windows looks only in PATH", goos: "windows", full: []string{"usr/lib/postgresql/16/bin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			for _, d := range tt.full {
				touch(t, filepath.Join(root, d, "initdb"), filepath.Join(root, d, "postgres"))
			}
			for _, d := range tt.half {
				touch(t, filepath.Join(root, d, "initdb"))
			}
			pathBin := filepath.Join(root, "usr/local/bin")
			if tt.link != "" {
				if err := os.MkdirAll(pathBin, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Symlink(filepath.Join(root, tt.link, "initdb"), filepath.Join(pathBin, "initdb")); err != nil {
					t.Fatal(err)
				}
			}
			lookPath := func(string) (string, error) {
				if tt.link != "" || tt.onPath {
					return filepath.Join(pathBin, "initdb"), nil
				}
				return "", errors.New("not on PATH")
			}
			got, err := searchBinDir("", lookPath, root, binDirGlobs[tt.goos])
			if tt.want == "" {
				if !errors.Is(err, ErrNoBinaries) {
					t.Fatalf("got %q, %v; want ErrNoBinaries", got, err)
				}
				return
			}
			if err != nil || got != filepath.Join(root, tt.want) {
				t.Fatalf("got %q, %v; want %q", strings.TrimPrefix(got, root+"/"), err, tt.want)
			}
		})
	}
}

// TestSearchBinDirGiven takes a given directory only if it holds both
// programs.
func TestSearchBinDirGiven(t *testing.T) {
	root := t.TempDir()
	full, half := filepath.Join(root, "full"), filepath.Join(root, "half")
	touch(t, filepath.Join(full, "initdb"), filepath.Join(full, "postgres"), filepath.Join(half, "initdb"))
	noPath := func(string) (string, error) { return "", errors.New("not on PATH") }
	if got, err := searchBinDir(full, noPath, root, nil); err != nil || got != full {
		t.Fatalf("full: got %q, %v", got, err)
	}
	if got, err := searchBinDir(half, noPath, root, nil); !errors.Is(err, ErrNoBinaries) {
		t.Fatalf("half: got %q, %v; want ErrNoBinaries", got, err)
	}
}

// TestNoBinariesSaysWhere names the places searched and the installer of
// each system.
func TestNoBinariesSaysWhere(t *testing.T) {
	for goos, want := range map[string][]string{
		"linux":   {"looked in PATH and /usr/lib/postgresql/*/bin)", "apt-get install postgresql", "--database-url"},
		"darwin":  {"/opt/homebrew/opt/postgresql@*/bin", "/usr/local/opt/postgresql@*/bin", "Postgres.app", "brew install", "--database-url"},
		"freebsd": {"looked in PATH)", "install them or pass --database-url"},
	} {
		msg := noBinaries(goos).Error()
		for _, w := range want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: %q lacks %q", goos, msg, w)
			}
		}
	}
}

func touch(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}
