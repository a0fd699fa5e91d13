//go:build !nolocal

package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	claudecode "github.com/webordinary/claude-code-astro/internal/agent/claude-code"
	"github.com/webordinary/claude-code-astro/internal/reach"
	"github.com/webordinary/claude-code-astro/internal/sandbox"
)

// npmEnv are the variables of worker local's environment that npm gets
// when it installs the CLI: where its cache and registry are, and a proxy.
var npmEnv = []string{"HOME", "npm_config_cache", "npm_config_registry", "npm_config_userconfig",
	"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"}

// pinnedCLI returns the pinned Claude Code CLI: the checkout's own install
// (`npm ci --prefix internal/agent/claude-code`) when it is the pinned
// version, else the one in the cache, else it installs it into the cache first, npm's progress on
// stderr. The error says how to install it by hand.
func (c *LocalCommand) pinnedCLI(ctx context.Context, cache claudecode.Cache) (string, error) {
	if bin, err := filepath.Abs(claudecode.Bin); err == nil {
		if _, err := os.Stat(bin); err == nil {
			v := claudecode.InstalledVersion(filepath.Dir(filepath.Dir(filepath.Dir(bin))))
			if v == claudecode.Version() {
				return bin, nil
			}
			fmt.Fprintf(c.Stderr, "worker local: %s holds the Claude Code CLI %q, not the pinned %s: using the pinned one from %s\n",
				claudecode.Dir, v, claudecode.Version(), cache.Dir)
		}
	}
	if bin, ok := cache.Pinned(); ok {
		return bin, nil
	}
	fmt.Fprintf(c.Stderr, "worker local: the Claude Code CLI is not installed: installing the pinned %s into %s\n"+
		"  (npm ci from %s/package-lock.json; the CLI is a native binary of about 250 MB)\n",
		claudecode.Version(), cache.Path(claudecode.Key()), claudecode.Dir)
	var env []string
	for _, k := range npmEnv {
		if v := c.Getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	start := time.Now()
	bin, err := cache.Install(ctx, claudecode.InstallOptions{PATH: c.Getenv("PATH"), Env: env, Progress: c.Stderr})
	if err != nil {
		return "", fmt.Errorf("the pinned Claude Code CLI could not be installed into %s: %w. Fix: check that npm reaches its registry, "+
			"or install it yourself with `npm ci --prefix %s`, then start worker local again", cache.Dir, err, claudecode.Dir)
	}
	fmt.Fprintf(c.Stderr, "worker local: installed the Claude Code CLI %s in %s\n", claudecode.Version(), time.Since(start).Round(time.Second))
	return bin, nil
}

// localTenantDir returns the directory for what tenant uids use: the
// workspaces and the example repository. That is dir, unless tenants run
// under uids of their own and cannot pass through dir (a checkout under
// root's home, mode 0700): then, when -dir was not given, a directory of
// its own under the cache, and moved says why.
func localTenantDir(dir string, dirSet bool, cacheDir string) (tenantDir, moved string, err error) {
	if !sandbox.CanSwitchUIDs() {
		return dir, "", nil // tenants run as this user
	}
	why := reach.Check(dir, reach.Search)
	if why == nil {
		return dir, "", nil
	}
	fallback := filepath.Join(cacheDir, "local")
	if dirSet {
		return "", "", fmt.Errorf("-dir %s: %v: tenant uids work in its workspaces and clone its example repository: "+
			"give -dir a directory every uid may pass through, or leave -dir out (worker local then keeps them under %s)", dir, why, fallback)
	}
	sum := sha256.Sum256([]byte(dir))
	tenantDir = filepath.Join(fallback, hex.EncodeToString(sum[:])[:12])
	for _, d := range []string{cacheDir, fallback, tenantDir} {
		if err := mkdirOpen(d); err != nil {
			return "", "", fmt.Errorf("WORKER_CACHE_DIR: create %s: %w", d, err)
		}
	}
	if err := reach.Check(tenantDir, reach.Search); err != nil {
		return "", "", fmt.Errorf("WORKER_CACHE_DIR: %v: set WORKER_CACHE_DIR to a directory every uid may pass through", err)
	}
	moved = why.Error()
	if re := (*reach.Error)(nil); errors.As(why, &re) {
		moved = fmt.Sprintf("not under %s: tenant uids may not pass through %s, mode %#o", dir, re.Blocker, re.Mode)
	}
	return tenantDir, moved, nil
}

// mkdirOpen creates dir and its parents, each one it creates mode 0755
// whatever the umask.
func mkdirOpen(dir string) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := mkdirOpen(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		return err
	}
	return os.Chmod(dir, 0o755)
}

// exampleReachable checks that tenant uids, which clone the example
// repository and push to it, can read all of it.
func exampleReachable(repo string) error {
	if repo == "" || !sandbox.CanSwitchUIDs() {
		return nil
	}
	if err := reach.CheckTree(repo); err != nil {
		return fmt.Errorf("the example repository: %v: remove %s (worker local makes it again)", err, repo)
	}
	return nil
}
