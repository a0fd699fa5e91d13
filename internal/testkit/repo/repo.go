// Package repo finds this repository's own files from tests: its root, the
// pinned Claude Code CLI and the example site.
package repo

import (
	"encoding/json"
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

// CLI is one installed Claude Code CLI.
type CLI struct {
	// Version is the release its package.json pins ("2.1.332"), or
	// "CLAUDE_BIN" for the CLI that variable names.
	Version string
	// Bin is its executable.
	Bin string
}

// CLIs returns the CLIs that tests of the agent run against: the pinned one
// first, then the oldest supported one (claudecode.OldestDir), so that
// either can run the worker. With CLAUDE_BIN set, that CLI alone. It fails
// the test, saying how to install them, when one is missing.
func CLIs(tb testing.TB) []CLI {
	tb.Helper()
	if p := os.Getenv("CLAUDE_BIN"); p != "" {
		return []CLI{{Version: "CLAUDE_BIN", Bin: p}}
	}
	root := Root(tb)
	var out []CLI
	for _, c := range []struct{ dir, bin string }{{claudecode.Dir, claudecode.Bin}, {claudecode.OldestDir, claudecode.OldestBin}} {
		bin := filepath.Join(root, c.bin)
		if _, err := os.Stat(bin); err != nil {
			tb.Fatalf("the Claude Code CLI of %s is not installed (%v): run `npm ci --prefix %s`", c.dir, err, c.dir)
		}
		out = append(out, CLI{Version: PinnedVersion(tb, c.dir), Bin: bin})
	}
	return out
}

// PinnedVersion returns the Claude Code release that the package.json in
// dir (relative to the repository root) pins.
func PinnedVersion(tb testing.TB, dir string) string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(Root(tb), dir, "package.json"))
	if err != nil {
		tb.Fatalf("read the CLI's pin: %v", err)
	}
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		tb.Fatalf("parse %s/package.json: %v", dir, err)
	}
	v := pkg.Dependencies["@anthropic-ai/claude-code"]
	if v == "" {
		tb.Fatalf("%s/package.json pins no @anthropic-ai/claude-code", dir)
	}
	return v
}

// ExampleSite returns the example Astro site's directory.
func ExampleSite(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(Root(tb), "examples", "site")
}
