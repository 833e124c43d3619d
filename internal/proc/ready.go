package proc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// EnvReadyFile is the environment variable through which a parent names a
// child's ready file: the file the child writes its bound address to
// (WriteReady) once it listens. The parent learns the address from the file
// rather than from the child's log, which is free to change its wording.
const EnvReadyFile = "PAYTEST_READY_FILE"

// ErrChildExited is Await's error when the child exits without having
// written its ready file.
var ErrChildExited = errors.New("exited before listening")

// readyDirPattern names the temporary directories ready files live in.
const readyDirPattern = "paytest-ready-"

// readyPoll is how often Await looks for the file.
const readyPoll = 10 * time.Millisecond

// Ready is a child's ready record: JSON in its ready file.
type Ready struct {
	// Addr is the host:port the child listens on.
	Addr string `json:"addr"`
	// Pid is the process id of the process that wrote the record.
	Pid int `json:"pid"`
}

// WriteReady records in the file at path that this process listens on
// addr. It writes a temporary file beside path and renames it into place,
// so that a reader sees the whole record or none.
func WriteReady(path, addr string) error {
	b, err := json.Marshal(Ready{Addr: addr, Pid: os.Getpid()})
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("ready file: %w", err)
	}
	_, werr := tmp.Write(append(b, '\n'))
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("ready file: %w", werr)
	}
	return nil
}

// AnnounceReady is WriteReady to the file EnvReadyFile names; with the
// variable unset it does nothing.
func AnnounceReady(addr string) error {
	if path := os.Getenv(EnvReadyFile); path != "" {
		return WriteReady(path, addr)
	}
	return nil
}

// ReadyFile is a path, in a temporary directory of the parent's own, that
// a parent hands a child (as EnvReadyFile) and then awaits.
type ReadyFile struct {
	// Path is the file the child is to write.
	Path string
	dir  string
}

// NewReadyFile makes a fresh ready-file path. Its directory is owned by
// this process (OwnedTempDir), so that one left by a paytest killed while
// a child started is swept by the next; Remove removes it.
func NewReadyFile() (*ReadyFile, error) {
	SweepOrphans(readyDirPattern, nil)
	dir, err := OwnedTempDir(readyDirPattern)
	if err != nil {
		return nil, fmt.Errorf("ready file: %w", err)
	}
	return &ReadyFile{Path: filepath.Join(dir, "ready.json"), dir: dir}, nil
}

// Env is the environment entry that hands the file to a child.
func (f *ReadyFile) Env() string { return EnvReadyFile + "=" + f.Path }

// Remove removes the file and its directory.
func (f *ReadyFile) Remove() { _ = os.RemoveAll(f.dir) }

// Await polls the file until the child has written it and returns the
// record. It returns ErrChildExited once exited is closed with no record
// written, and ctx's error when ctx ends first.
func (f *ReadyFile) Await(ctx context.Context, exited <-chan struct{}) (Ready, error) {
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for {
		if r, ok, err := f.read(); ok || err != nil {
			return r, err
		}
		select {
		case <-exited:
			// A child that wrote its record and then died did listen.
			if r, ok, err := f.read(); ok || err != nil {
				return r, err
			}
			return Ready{}, ErrChildExited
		case <-ctx.Done():
			return Ready{}, ctx.Err()
		case <-tick.C:
		}
	}
}

// read reads the record; ok is false while the file does not exist.
func (f *ReadyFile) read() (Ready, bool, error) {
	b, err := os.ReadFile(f.Path)
	if errors.Is(err, os.ErrNotExist) {
		return Ready{}, false, nil
	}
	if err != nil {
		return Ready{}, false, fmt.Errorf("ready file: %w", err)
	}
	var r Ready
	if err := json.Unmarshal(b, &r); err != nil || r.Addr == "" {
		return Ready{}, false, fmt.Errorf("ready file %s: want {\"addr\":\"host:port\",...}, got %q", f.Path, b)
	}
	return r, true, nil
}
