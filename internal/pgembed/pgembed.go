// Package pgembed starts a throwaway PostgreSQL cluster from the machine's own
// binaries: initdb (or a copy of an earlier initdb's data directory, kept in
// the user's cache) into a temporary directory, postgres on a free loopback
// port, and on Stop a fast shutdown and the directory removed. It is paytest's
// embedded default when no --database-url is given. A directory left behind
// by a paytest killed outright is removed by the next Start.
package pgembed

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/paytest/paytest/internal/proc"
)

// dirPattern names the temporary directories of clusters.
const dirPattern = "paytest-pg-"

// postmasterRunning reports whether a postgres still runs in a cluster
// directory (its postmaster.pid names a live process): its directory is
// left alone even if the paytest that started it is gone.
func postmasterRunning(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		return false
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	return err == nil && pid > 0 && proc.Alive(pid, "")
}

// Options configures a cluster. The zero value is ready to use.
type Options struct {
	// BinDir holds initdb and postgres; empty means search PATH, then the
	// usual places of this system (Debian's /usr/lib/postgresql/*/bin;
	// Homebrew's and Postgres.app's on macOS), newest first.
	BinDir string
	// Port to listen on; 0 picks a free loopback port.
	Port int
	// StartTimeout bounds how long Start waits for connections; default 30s.
	StartTimeout time.Duration
	// Settings are extra postgres -c name=value settings.
	Settings map[string]string
	// CacheDir keeps the data directory initdb makes, one per set of
	// binaries, so that later clusters copy it instead of running initdb;
	// empty means the user's cache directory (paytest/pgembed under
	// os.UserCacheDir), CacheOff runs initdb every time.
	CacheDir string
}

// CacheOff as Options.CacheDir runs initdb for every cluster.
const CacheOff = "off"

// Cluster is a running throwaway PostgreSQL cluster.
type Cluster struct {
	dir     string
	port    int
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
	log     *bytes.Buffer
	once    sync.Once
	stopErr error
	// copied: the data directory is a copy of a kept template.
	copied bool
}

// Start makes a data directory in a new temporary directory (initdb, or a
// copy of the one an earlier Start kept: see Options.CacheDir) and starts
// postgres on a loopback port, returning once it accepts connections. As root on Linux,
// both run as the "postgres" system user, because initdb refuses to run as
// root.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if err := proc.CheckOS(runtime.GOOS); err != nil {
		return nil, fmt.Errorf("pgembed: %w", err)
	}
	bin, err := findBinDir(opts.BinDir)
	if err != nil {
		return nil, err
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 30 * time.Second
	}
	acct, err := serverAccount()
	if err != nil {
		return nil, err
	}
	// A paytest killed outright (SIGKILL) could not remove its cluster:
	// take that space back first.
	dir, err := proc.OwnedScratchDir(dirPattern, postmasterRunning)
	if err != nil {
		return nil, fmt.Errorf("pgembed: temp dir: %w", err)
	}
	c := &Cluster{dir: dir, done: make(chan struct{}), log: &bytes.Buffer{}}
	fail := func(err error) (*Cluster, error) {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := acct.own(dir); err != nil {
		return fail(err)
	}
	data := filepath.Join(dir, "data")
	if c.copied, err = makeData(ctx, bin, dir, data, acct, templateDir(opts.CacheDir, bin)); err != nil {
		return fail(err)
	}
	for attempt := 0; ; attempt++ {
		port := opts.Port
		if port == 0 {
			if port, err = freePort(); err != nil {
				return fail(err)
			}
		}
		c.port = port
		err = c.startServer(ctx, bin, data, acct, opts)
		if err == nil {
			return c, nil
		}
		if opts.Port != 0 || attempt >= 3 || ctx.Err() != nil {
			return fail(err)
		}
		// Most likely another process took the free port first: try another.
		c.done = make(chan struct{})
		c.log.Reset()
	}
}

// makeData makes the cluster's data directory: a copy of the template in
// tmpl when there is one, else initdb's, which is then kept as the
// template.
func makeData(ctx context.Context, bin, dir, data string, acct account, tmpl string) (copied bool, err error) {
	if copied, err := useTemplate(tmpl, data, acct); copied || err != nil {
		return copied, err
	}
	args := append([]string{"-D", data}, initdbArgs...)
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), args...)
	initdb.SysProcAttr = acct.initdbAttr()
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		return false, fmt.Errorf("pgembed: initdb: %w: %s", err, lastLines(out, 5))
	}
	saveTemplate(tmpl, data)
	return false, nil
}

func (c *Cluster) startServer(ctx context.Context, bin, data string, acct account, opts Options) error {
	args := []string{"-D", data, "-p", strconv.Itoa(c.port), "-h", "127.0.0.1", "-k", c.dir,
		"-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
		"-c", "max_connections=300", "-c", "shared_buffers=128MB", "-c", "log_min_messages=warning"}
	keys := make([]string, 0, len(opts.Settings))
	for k := range opts.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "-c", k+"="+opts.Settings[k])
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), args...)
	cmd.Dir = c.dir
	cmd.Stdout = c.log
	cmd.Stderr = c.log
	cmd.SysProcAttr = acct.serverAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgembed: start postgres: %w", err)
	}
	c.cmd = cmd
	go func() {
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	deadline := time.Now().Add(opts.StartTimeout)
	for {
		select {
		case <-c.done:
			return fmt.Errorf("pgembed: postgres exited: %v: %s", c.waitErr, lastLines(c.log.Bytes(), 5))
		default:
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgx.Connect(pctx, c.URL("postgres"))
		cancel()
		if err == nil {
			_ = conn.Close(ctx)
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			c.kill()
			return fmt.Errorf("pgembed: postgres not ready after %s: %w", opts.StartTimeout, err)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
		}
	}
}

// URL returns a connection URL for the named database on this cluster.
func (c *Cluster) URL(database string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, database)
}

// Port returns the port the cluster listens on.
func (c *Cluster) Port() int { return c.port }

// Dir returns the cluster's temporary directory.
func (c *Cluster) Dir() string { return c.dir }

// Stop shuts the cluster down (fast shutdown, then a kill after 10 s) and
// removes its directory. It is safe to call more than once.
func (c *Cluster) Stop() error {
	c.once.Do(func() {
		if c.cmd != nil && c.cmd.Process != nil {
			_ = c.cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-c.done:
			case <-time.After(10 * time.Second):
				c.kill()
			}
		}
		c.stopErr = os.RemoveAll(c.dir)
	})
	return c.stopErr
}

func (c *Cluster) kill() {
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// CreateDatabase creates a database named name on the server at adminURL.
func CreateDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("pgembed: connect: %w", err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	return err
}

// DropDatabase drops the database named name, closing its connections.
func DropDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("pgembed: connect: %w", err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pgembed: free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// dbnameKV matches the dbname keyword of a key=value connection string.
var dbnameKV = regexp.MustCompile(`(^|\s)dbname\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// WithDatabase returns the connection string dsn pointed at database name
// instead of its own, in either form pgx accepts: a postgres:// URL (its
// path is replaced, its query kept) or key=value pairs (dbname is replaced
// or added).
func WithDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("pgembed: database URL: %w", err)
		}
		u.Path, u.RawPath = "/"+name, ""
		return u.String(), nil
	}
	quoted := "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(name) + "'"
	if dbnameKV.MatchString(dsn) {
		return dbnameKV.ReplaceAllStringFunc(dsn, func(m string) string {
			return dbnameKV.FindStringSubmatch(m)[1] + "dbname=" + quoted
		}), nil
	}
	return strings.TrimSpace(dsn + " dbname=" + quoted), nil
}
