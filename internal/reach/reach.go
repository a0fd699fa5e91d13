// Package reach tells whether a tenant uid can reach a file the worker
// reaches: pass through every directory on the way (symlinks followed), then
// read or run the file.
//
// A tenant owns none of the worker's files and is in none of their groups
// (it runs with no supplementary groups), so what counts is the "other" bits
// of each mode: a checkout under root's home (mode 0700) is out of reach for
// every tenant though root, the worker, reaches it. The check is made from
// the file modes alone, so it costs a few stat calls and starts no process.
package reach

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrUnreachable is wrapped by every error saying a tenant cannot reach a
// path.
var ErrUnreachable = errors.New("tenant uids cannot reach it")

// Need says what a tenant must be able to do with the file at the end of
// the path.
type Need int

const (
	// Search is passing through a directory (o+x).
	Search Need = iota
	// Read is reading a file, or listing and passing through a directory
	// (o+r, and o+x for a directory).
	Read
	// Exec is running a file: reading it too, since a script is read by its
	// interpreter (o+rx).
	Exec
)

// maxLinks bounds the symlinks followed on one path, as the kernel does.
const maxLinks = 40

// Error says which directory or file stops a tenant, and its mode.
type Error struct {
	// Path is the path that was checked.
	Path string
	// Blocker is the directory or file that stops a tenant.
	Blocker string
	// Mode is Blocker's permission bits.
	Mode fs.FileMode
	// Lacks says what a tenant may not do to Blocker: "pass through",
	// "read" or "run".
	Lacks string
}

func (e *Error) Error() string {
	if e.Blocker == e.Path {
		return fmt.Sprintf("%s: %v: others may not %s it (mode %#o)", e.Path, ErrUnreachable, e.Lacks, e.Mode)
	}
	return fmt.Sprintf("%s: %v: others may not %s %s (mode %#o)", e.Path, ErrUnreachable, e.Lacks, e.Blocker, e.Mode)
}

// Unwrap makes errors.Is(err, ErrUnreachable) true.
func (e *Error) Unwrap() error { return ErrUnreachable }

// Check returns nil when a tenant can reach path and do need to it; an
// *Error naming the directory or file in the way when it cannot; or the
// error of a path that does not resolve at all.
func Check(path string, need Need) error {
	real, err := walk(path)
	if err != nil {
		return err
	}
	fi, err := os.Stat(real)
	if err != nil {
		return err
	}
	bits := fi.Mode().Perm() & 0o007
	lacks := ""
	switch {
	case need == Search && bits&0o1 == 0:
		lacks = "pass through"
	case need == Read && bits&0o4 == 0, need == Read && fi.IsDir() && bits&0o1 == 0:
		lacks = "read"
	case need == Exec && (bits&0o5 != 0o5 || fi.IsDir()):
		lacks = "run"
	}
	if lacks != "" {
		return &Error{Path: path, Blocker: real, Mode: fi.Mode().Perm(), Lacks: lacks}
	}
	return nil
}

// CheckTree checks that a tenant can reach dir and read everything under
// it: every directory listed and passed through, every file read. It
// reports the first thing in the way.
func CheckTree(dir string) error {
	if err := Check(dir, Read); err != nil {
		return err
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			return nil // the link itself has no mode; its target is checked where it lies
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		bits := fi.Mode().Perm() & 0o007
		switch {
		case d.IsDir() && bits&0o5 != 0o5:
			return &Error{Path: dir, Blocker: p, Mode: fi.Mode().Perm(), Lacks: "read"}
		case !d.IsDir() && bits&0o4 == 0:
			return &Error{Path: dir, Blocker: p, Mode: fi.Mode().Perm(), Lacks: "read"}
		}
		return nil
	})
}

// walk resolves path one name at a time, as the kernel does for a process,
// checking that others may pass through every directory it looks a name up
// in, the directories a symlink leads through included. It returns the
// path resolved.
func walk(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	todo := splitPath(abs)
	cur := "/"
	links := 0
	for len(todo) > 0 {
		name := todo[0]
		todo = todo[1:]
		if name == ".." {
			cur = filepath.Dir(cur)
			continue
		}
		fi, err := os.Stat(cur)
		if err != nil {
			return "", err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return "", &Error{Path: path, Blocker: cur, Mode: fi.Mode().Perm(), Lacks: "pass through"}
		}
		next := filepath.Join(cur, name)
		li, err := os.Lstat(next)
		if err != nil {
			return "", err
		}
		if li.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if links++; links > maxLinks {
			return "", fmt.Errorf("%s: too many levels of symbolic links", path)
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			cur = "/"
		}
		todo = append(splitPath(target), todo...)
	}
	return cur, nil
}

// splitPath splits p into its names, dropping empty ones and ".".
func splitPath(p string) []string {
	var names []string
	for _, n := range strings.Split(p, "/") {
		if n != "" && n != "." {
			names = append(names, n)
		}
	}
	return names
}
