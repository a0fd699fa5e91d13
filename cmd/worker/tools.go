package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	claudecode "github.com/webordinary/claude-code-astro/internal/agent/claude-code"
	"github.com/webordinary/claude-code-astro/internal/config"
	"github.com/webordinary/claude-code-astro/internal/reach"
)

// tenantTools checks, on a worker that runs tenants under uids of their
// own, that those uids reach what tenant processes run: the Claude Code CLI
// and its package, git, Node.js and npm (as the worker finds them in PATH),
// and NPM_CACHE_DIR. The workspace root is checked by workspace.Open.
//
// A CLI out of their reach (a checkout under root's home, mode 0700) is
// copied into the cache directory, which root owns and every uid may read,
// and the copy is what tenants run: nothing else is opened. Anything else
// out of reach stops the worker with one line naming the path and the fix.
// It returns the CLI to run.
func tenantTools(ctx context.Context, cfg config.Config, path string, log *slog.Logger) (string, error) {
	for _, t := range []struct{ name, fix string }{
		{"git", "install git where every user may run it (Debian's git package puts it in /usr/bin)"},
		{"node", "install Node.js where every user may run it (for example under /usr/local), not under a private home directory"},
		{"npm", "install Node.js and npm where every user may run them (for example under /usr/local), not under a private home directory"},
	} {
		p, err := findExec(t.name, path)
		if err != nil {
			log.Warn(t.name+" is not in PATH: jobs that need it will fail", "PATH", path)
			continue
		}
		if err := reach.Check(p, reach.Exec); err != nil {
			return "", &config.FieldError{Var: "PATH", Reason: fmt.Sprintf("%s %v: %s, or put such a %s first in PATH", t.name, err, t.fix, t.name)}
		}
	}
	if d := cfg.NpmCacheDir; d != "" {
		if err := reach.Check(d, reach.Read); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", &config.FieldError{Var: "NPM_CACHE_DIR", Reason: fmt.Sprintf("%v: give a directory every uid may read", err)}
		}
	}

	bin, err := findExec(cfg.ClaudeBin, path)
	if err != nil {
		log.Warn("the Claude Code CLI is not installed: execute jobs will fail",
			"CLAUDE_BIN", cfg.ClaudeBin, "fix", "npm ci --prefix "+claudecode.Dir+" (or set CLAUDE_BIN)")
		return cfg.ClaudeBin, nil
	}
	why := cliReachable(bin)
	if why == nil {
		return bin, nil
	}
	cache := claudecode.Cache{Dir: cacheDir(cfg)}
	copied, err := cache.Share(ctx, bin)
	if err == nil {
		err = cliReachable(copied)
	}
	if err != nil {
		return "", &config.FieldError{Var: "CLAUDE_BIN", Reason: fmt.Sprintf("%v, and a copy for tenants in %s failed: %v: "+
			"set WORKER_CACHE_DIR to a directory root owns that every uid may pass through, or install the CLI where every uid may run it",
			why, cache.Dir, err)}
	}
	log.Info("the Claude Code CLI is out of tenant uids' reach: tenants run a copy in the worker's cache",
		"CLAUDE_BIN", bin, "why", why.Error(), "copy", copied)
	return copied, nil
}

// cacheDir is WORKER_CACHE_DIR, or the default of a worker running as root
// (tenant uids are only checked for then).
func cacheDir(cfg config.Config) string {
	if cfg.CacheDir != "" {
		return cfg.CacheDir
	}
	return claudecode.DefaultCacheDir
}

// cliReachable checks that tenants can run bin and read its npm package
// (the directory above the file bin resolves to that holds package.json,
// when bin is in an npm install).
func cliReachable(bin string) error {
	if err := reach.Check(bin, reach.Exec); err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(bin)
	if err != nil {
		return err
	}
	for d := filepath.Dir(real); strings.Contains(d, "/node_modules/"); d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "package.json")); err == nil {
			return reach.CheckTree(d)
		}
	}
	return nil
}

// findExec finds the program name as the worker runs it: a path as it is,
// a bare name as the first executable file of that name in path.
func findExec(name, path string) (string, error) {
	if strings.Contains(name, "/") {
		fi, err := os.Stat(name)
		if err != nil {
			return "", err
		}
		if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s is not an executable file", name)
		}
		return filepath.Abs(name)
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return filepath.Abs(p)
		}
	}
	return "", fmt.Errorf("%s not found in PATH %s", name, path)
}
