// Package repo finds this repository's own files from tests: its root, the
// pinned Claude Code CLI and the example site.
package repo

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	claudecode "github.com/webordinary/claude-code-astro/internal/agent/claude-code"
)

// Root returns the repository's root directory (the one holding go.mod).
func Root(tb testing.TB) string {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatal("repo: cannot find this source file")
	}
	root := filepath.Join(filepath.Dir(file), "..", "..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		tb.Fatalf("repo: no go.mod at %s: %v", root, err)
	}
	return filepath.Clean(root)
}

// ClaudeBin returns the pinned Claude Code CLI, or CLAUDE_BIN when that is
// set. It fails the test, saying how to install it, when the CLI is missing.
func ClaudeBin(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("CLAUDE_BIN"); p != "" {
		return p
	}
	root := Root(tb)
	bin := filepath.Join(root, claudecode.Bin)
	if _, err := os.Stat(bin); err != nil {
		tb.Fatalf("the Claude Code CLI is not installed (%v): run `npm ci --prefix %s`", err, claudecode.Dir)
	}
	return bin
}

// ExampleSite returns the example Astro site's directory.
func ExampleSite(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(Root(tb), "examples", "site")
}
