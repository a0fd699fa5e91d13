// Package atomicfile writes files on shared storage (EFS) so that a crash
// leaves either the old file or the new one, never a torn one.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Write writes data to path through a temporary file in the same directory:
// write, chmod to perm, sync, close, rename over path, sync the directory.
// Every error is returned; on failure the temporary file is removed. The
// directory must exist.
func Write(path string, data []byte, perm fs.FileMode) error {
	_, err := commit(path, data, perm, func(tmp string) (bool, error) {
		if err := os.Rename(tmp, path); err != nil {
			return false, fmt.Errorf("rename to %s: %w", path, err)
		}
		return true, nil
	})
	return err
}

// Create is Write for a file that must not exist yet: the temporary file is
// linked to path, which fails when path exists (atomically, on NFS too),
// and then removed. It reports whether it created path; a path that exists
// is left as it is, and is no error.
func Create(path string, data []byte, perm fs.FileMode) (created bool, err error) {
	return commit(path, data, perm, func(tmp string) (bool, error) {
		err := os.Link(tmp, path)
		if rmErr := os.Remove(tmp); rmErr != nil && err == nil {
			return true, fmt.Errorf("remove %s: %w", tmp, rmErr)
		}
		switch {
		case errors.Is(err, fs.ErrExist):
			return false, nil
		case err != nil:
			return false, fmt.Errorf("link to %s: %w", path, err)
		}
		return true, nil
	})
}

// commit writes data to a temporary file beside path (written, chmod to
// perm, synced, closed), puts it in place with put, and syncs the directory
// when put did. On failure the temporary file is removed.
func commit(path string, data []byte, perm fs.FileMode, put func(tmp string) (bool, error)) (done bool, err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return false, fmt.Errorf("create a temporary file beside %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			if rmErr := os.Remove(tmp); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) {
				err = errors.Join(err, rmErr)
			}
		}
	}()
	if _, err := f.Write(data); err != nil {
		return false, errors.Join(fmt.Errorf("write %s: %w", tmp, err), f.Close())
	}
	if err := f.Chmod(perm); err != nil {
		return false, errors.Join(fmt.Errorf("chmod %s: %w", tmp, err), f.Close())
	}
	if err := f.Sync(); err != nil {
		return false, errors.Join(fmt.Errorf("sync %s: %w", tmp, err), f.Close())
	}
	if err := f.Close(); err != nil {
		return false, fmt.Errorf("close %s: %w", tmp, err)
	}
	if done, err = put(tmp); err != nil || !done {
		return done, err
	}
	return true, SyncDir(dir)
}

// SyncDir flushes a directory's entries (a rename or a new file in it) to
// storage.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	if err := d.Sync(); err != nil {
		return errors.Join(fmt.Errorf("sync %s: %w", dir, err), d.Close())
	}
	return d.Close()
}
