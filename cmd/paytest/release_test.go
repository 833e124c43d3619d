package main

import (
	"bytes"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// releaseConfig is the part of .goreleaser.yaml this repository uses; the
// file is decoded strictly, so a key outside it (a typo, a field renamed by
// goreleaser) fails the test.
type releaseConfig struct {
	Version     int    `yaml:"version"`
	ProjectName string `yaml:"project_name"`
	Release     struct {
		GitHub struct {
			Owner string `yaml:"owner"`
			Name  string `yaml:"name"`
		} `yaml:"github"`
	} `yaml:"release"`
	Builds []struct {
		ID      string   `yaml:"id"`
		Main    string   `yaml:"main"`
		Binary  string   `yaml:"binary"`
		Env     []string `yaml:"env"`
		Flags   []string `yaml:"flags"`
		Ldflags []string `yaml:"ldflags"`
		Goos    []string `yaml:"goos"`
		Goarch  []string `yaml:"goarch"`
	} `yaml:"builds"`
	Archives []struct {
		ID              string   `yaml:"id"`
		IDs             []string `yaml:"ids"`
		Formats         []string `yaml:"formats"`
		FormatOverrides []struct {
			Goos    string   `yaml:"goos"`
			Formats []string `yaml:"formats"`
		} `yaml:"format_overrides"`
		NameTemplate string   `yaml:"name_template"`
		Files        []string `yaml:"files"`
	} `yaml:"archives"`
	Checksum struct {
		NameTemplate string `yaml:"name_template"`
		Algorithm    string `yaml:"algorithm"`
	} `yaml:"checksum"`
	DockersV2 []struct {
		ID         string            `yaml:"id"`
		IDs        []string          `yaml:"ids"`
		Dockerfile string            `yaml:"dockerfile"`
		Images     []string          `yaml:"images"`
		Tags       []string          `yaml:"tags"`
		Platforms  []string          `yaml:"platforms"`
		Labels     map[string]string `yaml:"labels"`
	} `yaml:"dockers_v2"`
}

// repoFile reads a file at the repository's root.
func repoFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("../../" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func loadReleaseConfig(t *testing.T) releaseConfig {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(repoFile(t, ".goreleaser.yaml")))
	dec.KnownFields(true)
	var c releaseConfig
	if err := dec.Decode(&c); err != nil {
		t.Fatalf(".goreleaser.yaml: %v", err)
	}
	return c
}

// TestReleaseConfigBuilds: one static, trimmed build of cmd/paytest with
// the version stamped, for exactly the targets `make cross` checks.
func TestReleaseConfigBuilds(t *testing.T) {
	c := loadReleaseConfig(t)
	if c.Version != 2 || c.ProjectName != "paytest" || len(c.Builds) != 1 {
		t.Fatalf("version %d, project %q, %d builds; want 2, paytest, 1", c.Version, c.ProjectName, len(c.Builds))
	}
	b := c.Builds[0]
	if b.Main != "./cmd/paytest" || b.Binary != "paytest" {
		t.Errorf("main %q, binary %q", b.Main, b.Binary)
	}
	if !slices.Contains(b.Env, "CGO_ENABLED=0") || !slices.Contains(b.Flags, "-trimpath") {
		t.Errorf("env %q, flags %q: want CGO_ENABLED=0 and -trimpath", b.Env, b.Flags)
	}
	_, _ = version, commit // the variables the ldflags set
	ld := strings.Join(b.Ldflags, " ")
	for _, x := range []string{"-X main.version={{ .Version }}", "-X main.commit="} {
		if !strings.Contains(ld, x) {
			t.Errorf("ldflags %q lack %q", ld, x)
		}
	}
	var targets []string
	for _, goos := range b.Goos {
		for _, arch := range b.Goarch {
			targets = append(targets, goos+"/"+arch)
		}
	}
	m := regexp.MustCompile(`(?m)^CROSS_TARGETS\s*:=\s*(.*)$`).FindSubmatch(repoFile(t, "Makefile"))
	if m == nil {
		t.Fatal("Makefile: no CROSS_TARGETS")
	}
	cross := strings.Fields(string(m[1]))
	slices.Sort(targets)
	slices.Sort(cross)
	want := []string{"darwin/amd64", "darwin/arm64", "linux/amd64", "linux/arm64", "windows/amd64", "windows/arm64"}
	if !slices.Equal(targets, want) || !slices.Equal(cross, want) {
		t.Errorf("release targets %q, make cross %q; want both %q", targets, cross, want)
	}
}

// TestReleaseConfigArchives: tar.gz, zip for Windows, and checksums.
func TestReleaseConfigArchives(t *testing.T) {
	c := loadReleaseConfig(t)
	if len(c.Archives) != 1 {
		t.Fatalf("%d archives, want 1", len(c.Archives))
	}
	a := c.Archives[0]
	if !slices.Equal(a.IDs, []string{c.Builds[0].ID}) || !slices.Equal(a.Formats, []string{"tar.gz"}) {
		t.Errorf("archive ids %q, formats %q", a.IDs, a.Formats)
	}
	if len(a.FormatOverrides) != 1 || a.FormatOverrides[0].Goos != "windows" || !slices.Equal(a.FormatOverrides[0].Formats, []string{"zip"}) {
		t.Errorf("format overrides %+v: want windows zip", a.FormatOverrides)
	}
	for _, x := range []string{"{{ .Os }}", "{{ .Arch }}", "{{ .Version }}"} {
		if !strings.Contains(a.NameTemplate, x) {
			t.Errorf("archive name %q lacks %s", a.NameTemplate, x)
		}
	}
	if c.Checksum.NameTemplate == "" || c.Checksum.Algorithm != "sha256" {
		t.Errorf("checksum %+v", c.Checksum)
	}
}

// TestReleaseConfigImage: a Linux image of the released binary, built from
// a Dockerfile that copies it from goreleaser's context (<os>/<arch>/) onto
// a static base.
func TestReleaseConfigImage(t *testing.T) {
	c := loadReleaseConfig(t)
	if len(c.DockersV2) != 1 {
		t.Fatalf("%d images, want 1", len(c.DockersV2))
	}
	d := c.DockersV2[0]
	if !slices.Equal(d.IDs, []string{c.Builds[0].ID}) || len(d.Images) == 0 || len(d.Tags) == 0 {
		t.Errorf("image ids %q, images %q, tags %q", d.IDs, d.Images, d.Tags)
	}
	for _, p := range d.Platforms {
		goos, arch, _ := strings.Cut(p, "/")
		if goos != "linux" || !slices.Contains(c.Builds[0].Goarch, arch) {
			t.Errorf("image platform %q is not a Linux target of the build", p)
		}
	}
	if len(d.Platforms) == 0 {
		t.Error("image has no platforms")
	}
	df := string(repoFile(t, d.Dockerfile))
	for _, x := range []string{"FROM gcr.io/distroless/static", "ARG TARGETPLATFORM", "COPY $TARGETPLATFORM/" + c.Builds[0].Binary + " ", "ENTRYPOINT"} {
		if !strings.Contains(df, x) {
			t.Errorf("%s lacks %q", d.Dockerfile, x)
		}
	}
}

// TestReleaseGoInstallable: `go install github.com/paytest/paytest/cmd/paytest@latest`
// needs the module to be named so and to replace nothing, and releases go
// to that repository.
func TestReleaseGoInstallable(t *testing.T) {
	if gh := loadReleaseConfig(t).Release.GitHub; gh.Owner+"/"+gh.Name != "paytest/paytest" {
		t.Errorf("releases go to %s/%s, not paytest/paytest", gh.Owner, gh.Name)
	}
	mod := string(repoFile(t, "go.mod"))
	if !regexp.MustCompile(`(?m)^module github\.com/paytest/paytest$`).MatchString(mod) {
		t.Error("go.mod: the module is not github.com/paytest/paytest")
	}
	if regexp.MustCompile(`(?m)^\s*replace\b`).MatchString(mod) {
		t.Error("go.mod has a replace directive, which go install ...@latest refuses")
	}
}
