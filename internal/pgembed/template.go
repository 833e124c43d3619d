package pgembed

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// initdb's data directory is the same for every cluster of one set of
// binaries and options, and making it is most of a cluster's start (about
// 1.5 s of the 2 s on a small machine; a copy takes about 0.15 s). Start
// therefore keeps one per set of binaries in the user's cache and copies
// it; the copy is a whole new data directory, so clusters never share a
// file.

// templateMarker is written into a template after it is complete, before
// it is renamed into place: a template without it is never used.
const templateMarker = "paytest-template"

// initdbArgs are initdb's options after -D; they are part of a template's key.
var initdbArgs = []string{"-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C"}

// templateKey names the template of the binaries in bin: their directory,
// initdb's size and modification time (an upgrade changes them) and
// initdb's options.
func templateKey(bin string) (string, error) {
	fi, err := os.Stat(filepath.Join(bin, "initdb"))
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%d\x00%q", bin, fi.Size(), fi.ModTime().UnixNano(), initdbArgs)
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// templateDir is where the template of bin lives under cacheDir, or "" when
// templates are off.
func templateDir(cacheDir, bin string) string {
	if cacheDir == CacheOff {
		return ""
	}
	if cacheDir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return ""
		}
		cacheDir = filepath.Join(base, "paytest", "pgembed")
	}
	key, err := templateKey(bin)
	if err != nil {
		return ""
	}
	return filepath.Join(cacheDir, key)
}

// useTemplate copies the template in tmpl to data, owned by acct, and
// reports whether there was one to copy.
func useTemplate(tmpl, data string, acct account) (bool, error) {
	if tmpl == "" {
		return false, nil
	}
	if _, err := os.Stat(filepath.Join(tmpl, templateMarker)); err != nil {
		return false, nil
	}
	if err := copyTree(tmpl, data, acct); err != nil {
		_ = os.RemoveAll(data)
		return false, fmt.Errorf("pgembed: copy template %s: %w", tmpl, err)
	}
	return true, os.Remove(filepath.Join(data, templateMarker))
}

// saveTemplate keeps data, fresh from initdb, as the template in tmpl. It
// is best effort: a cache that cannot be written costs the next start an
// initdb, nothing else. Concurrent saves race harmlessly: each copies into
// a directory of its own and the first rename wins.
func saveTemplate(tmpl, data string) {
	if tmpl == "" {
		return
	}
	if err := os.MkdirAll(filepath.Dir(tmpl), 0o700); err != nil {
		return
	}
	tmp, err := os.MkdirTemp(filepath.Dir(tmpl), filepath.Base(tmpl)+".tmp-")
	if err != nil {
		return
	}
	defer os.RemoveAll(tmp)
	if err := copyTree(data, tmp, thisUser()); err != nil {
		return
	}
	if err := os.WriteFile(filepath.Join(tmp, templateMarker), nil, 0o600); err != nil {
		return
	}
	if _, err := os.Stat(filepath.Join(tmpl, templateMarker)); errors.Is(err, fs.ErrNotExist) {
		_ = os.RemoveAll(tmpl) // incomplete (no marker): never used, so replace it
	}
	_ = os.Rename(tmp, tmpl)
}

// copyTree copies the directory src to dst (which it creates with src's
// mode), files, directories and symlinks, owned by acct when it is another
// user. Runs of zeros at least a block long are left as holes (a fresh
// WAL segment is 16 MB of mostly zeros; PostgreSQL reads holes as zeros).
func copyTree(src, dst string, acct account) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			err = os.Mkdir(to, info.Mode().Perm())
			if errors.Is(err, fs.ErrExist) && rel == "." {
				err = os.Chmod(to, info.Mode().Perm())
			}
		case d.Type()&fs.ModeSymlink != 0:
			var target string
			if target, err = os.Readlink(path); err == nil {
				err = os.Symlink(target, to)
			}
		case d.Type().IsRegular():
			err = copyFile(path, to, info.Mode().Perm())
		default:
			return fmt.Errorf("%s: not a file, directory or symlink", path)
		}
		if err != nil {
			return err
		}
		return acct.chown(to)
	})
}

// copyBlock is the unit copyFile reads and leaves as a hole when all zero.
const copyBlock = 64 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBlock); return &b }}

var zeroBlock = make([]byte, copyBlock)

// copyFile copies a regular file, leaving zero blocks as holes.
func copyFile(src, dst string, perm fs.FileMode) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
	}()
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	var size int64
	for {
		n, rerr := io.ReadFull(in, buf)
		if n > 0 {
			if bytes.Equal(buf[:n], zeroBlock[:n]) {
				_, err = out.Seek(int64(n), io.SeekCurrent)
			} else {
				_, err = out.Write(buf[:n])
			}
			if err != nil {
				return err
			}
			size += int64(n)
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	// A file that ends in a hole gets its length from Truncate.
	return out.Truncate(size)
}
