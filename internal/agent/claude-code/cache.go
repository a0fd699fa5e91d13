package claudecode

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Cache is a directory of CLI installs that every uid may read and run:
// Dir/claude-code/{key}/, one per pin or copied install, each an npm
// prefix whose CLI is node_modules/.bin/claude. Directories are mode 0755,
// files 0644 or 0755, all owned by the process that filled them (root, on a
// worker that runs tenants). An install is complete once its directory
// exists: it is filled under a temporary name and renamed, so workers that
// fill the same key at once do not see each other's half.
type Cache struct {
	// Dir is the cache's root (WORKER_CACHE_DIR). It is created, mode 0755,
	// when missing; an existing one keeps its mode.
	Dir string
}

// ErrUntrusted reports a cache directory that others could have changed.
var ErrUntrusted = errors.New("the CLI cache is not safe")

// DefaultCacheDir is the cache of a worker that runs as root; other users
// get theirs under os.UserCacheDir.
const DefaultCacheDir = "/var/cache/claude-code-astro"

// DefaultDir returns the cache directory of a process of uid euid: root's is
// DefaultCacheDir (the directories above it are open to every uid, unlike
// root's home), another user's is under its own cache directory.
func DefaultDir(euid int, getenv func(string) string) string {
	if euid == 0 {
		return DefaultCacheDir
	}
	if d := getenv("XDG_CACHE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "claude-code-astro")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".cache", "claude-code-astro")
	}
	return filepath.Join(os.TempDir(), "claude-code-astro-"+strconv.Itoa(euid))
}

// Path returns the directory of key's install.
func (c Cache) Path(key string) string { return filepath.Join(c.Dir, "claude-code", key) }

// Pinned returns the pinned CLI's path in the cache, and whether it is
// installed there.
func (c Cache) Pinned() (string, bool) {
	bin := filepath.Join(c.Path(Key()), binInPrefix)
	fi, err := os.Stat(bin)
	return bin, err == nil && fi.Mode().IsRegular() && c.trusted(c.Path(Key())) == nil
}

// trusted checks that nobody but this process's user can have changed
// what lies in dir: dir, and every directory from the cache's root down to
// it, is this user's and writable by nobody else. A cache others may write
// to would let one tenant replace the CLI every tenant runs.
func (c Cache) trusted(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Lstat(d)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !fi.IsDir() || !ok || int(st.Uid) != os.Geteuid() || fi.Mode().Perm()&0o022 != 0 {
			return fmt.Errorf("%w: %s must be a directory of uid %d that no one else may write to", ErrUntrusted, d, os.Geteuid())
		}
		if d == filepath.Clean(c.Dir) || d == filepath.Dir(d) {
			return nil
		}
	}
}

// InstallOptions configure Cache.Install.
type InstallOptions struct {
	// PATH is npm's PATH: where it finds npm and node.
	PATH string
	// Env is the rest of npm's environment (HOME, npm_config_cache, a
	// proxy), "KEY=value" each; nothing else of the worker's is passed.
	Env []string
	// Progress receives npm's output and a line every ProgressEvery while
	// it runs; nil discards them.
	Progress io.Writer
	// ProgressEvery is how often a line says how long the install has
	// taken. Zero means 10 s.
	ProgressEvery time.Duration
}

// Install installs the pinned CLI into the cache with `npm ci` from the
// pinned package.json and lockfile, unless it is there already, and
// returns its path.
func (c Cache) Install(ctx context.Context, opt InstallOptions) (string, error) {
	if bin, ok := c.Pinned(); ok {
		return bin, nil
	}
	npm, err := lookPath("npm", opt.PATH)
	if err != nil {
		return "", fmt.Errorf("install the Claude Code CLI: %w (install Node.js with npm)", err)
	}
	dir, err := c.fill(Key(), func(tmp string) error {
		for name, b := range map[string][]byte{"package.json": packageJSON, "package-lock.json": lockfile} {
			if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
				return err
			}
		}
		cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=http")
		cmd.Dir = tmp
		cmd.Env = append([]string{"PATH=" + opt.PATH, "npm_config_update_notifier=false"}, opt.Env...)
		out := opt.Progress
		if out == nil {
			out = io.Discard
		}
		var tail bytes.Buffer
		cmd.Stdout, cmd.Stderr = io.MultiWriter(out, &tail), io.MultiWriter(out, &tail)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start npm ci: %w", err)
		}
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			every := opt.ProgressEvery
			if every <= 0 {
				every = 10 * time.Second
			}
			start := time.Now()
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					fmt.Fprintf(out, "  ... still installing the Claude Code CLI (%s)\n", time.Since(start).Round(time.Second))
				}
			}
		}()
		err := cmd.Wait()
		close(stop)
		<-done
		if err != nil {
			return fmt.Errorf("npm ci: %w: %s", err, lastLines(tail.String(), 3))
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, binInPrefix), nil
}

// Share copies the npm install holding bin (the prefix above its
// node_modules, e.g. a checkout's internal/agent/claude-code) into the
// cache, or bin alone when it is no npm install's, and returns the copy's
// CLI. A prefix whose package.json and lockfile are the pinned ones is
// stored under Key, where Install puts the pin; any other under a key of
// its own path and the CLI's size and time, so a reinstall is copied anew.
func (c Cache) Share(ctx context.Context, bin string) (string, error) {
	abs, err := filepath.Abs(bin)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("share the Claude Code CLI: %w", err)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", fmt.Errorf("share the Claude Code CLI: %w", err)
	}
	digest := func(parts ...string) string {
		h := sha256.Sum256([]byte(strings.Join(append(parts, strconv.FormatInt(fi.Size(), 10), fi.ModTime().UTC().Format(time.RFC3339Nano)), "\x00")))
		return hex.EncodeToString(h[:])[:12]
	}
	prefix, rel, ok := npmPrefix(abs)
	if ok {
		if r, err := filepath.EvalSymlinks(filepath.Join(prefix, "node_modules")); err != nil || !within(real, r) {
			ok = false // the CLI lies outside the install: copy it alone
		}
	}
	if !ok {
		key := "file-" + digest(real)
		copied := filepath.Join(c.Path(key), "claude")
		_, err := c.fill(key, func(tmp string) error {
			return copyFile(real, filepath.Join(tmp, "claude"), fi.Mode())
		})
		return copied, err
	}
	key := "copy-" + digest(prefix)
	if same(filepath.Join(prefix, "package.json"), packageJSON) && same(filepath.Join(prefix, "package-lock.json"), lockfile) {
		key = Key()
	}
	if _, err := c.fill(key, func(tmp string) error {
		for _, name := range []string{"package.json", "package-lock.json"} {
			if fi, err := os.Stat(filepath.Join(prefix, name)); err == nil && fi.Mode().IsRegular() {
				if err := copyFile(filepath.Join(prefix, name), filepath.Join(tmp, name), 0o644); err != nil {
					return err
				}
			}
		}
		return copyTree(ctx, filepath.Join(prefix, "node_modules"), filepath.Join(tmp, "node_modules"))
	}); err != nil {
		return "", err
	}
	return filepath.Join(c.Path(key), rel), nil
}

// fill makes key's install with do, which fills a temporary directory,
// then opens it to every uid (directories 0755, files 0644 or 0755) and
// moves it into place. An install already in place is kept. It returns
// the install's directory.
func (c Cache) fill(key string, do func(tmp string) error) (string, error) {
	final := c.Path(key)
	parent := filepath.Dir(final)
	for _, d := range []string{c.Dir, parent} {
		if err := mkdirOpen(d); err != nil {
			return "", fmt.Errorf("create the CLI cache: %w", err)
		}
	}
	if err := c.trusted(parent); err != nil {
		return "", err
	}
	if err := c.trusted(final); err == nil {
		return final, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	// What a worker killed while filling left (never one still being
	// filled: none takes an hour).
	if old, err := filepath.Glob(filepath.Join(parent, ".tmp-*")); err == nil {
		for _, o := range old {
			if fi, err := os.Lstat(o); err == nil && time.Since(fi.ModTime()) > time.Hour {
				_ = os.RemoveAll(o) // best effort: it only takes room
			}
		}
	}
	tmp, err := os.MkdirTemp(parent, ".tmp-"+key+"-")
	if err != nil {
		return "", fmt.Errorf("create the CLI cache: %w", err)
	}
	defer os.RemoveAll(tmp) // gone once renamed; else what a failure left
	if err := do(tmp); err != nil {
		return "", fmt.Errorf("fill %s: %w", final, err)
	}
	if err := openModes(tmp); err != nil {
		return "", fmt.Errorf("fill %s: %w", final, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		if c.trusted(final) == nil {
			return final, nil // another worker filled it first
		}
		return "", fmt.Errorf("fill %s: %w", final, err)
	}
	return final, nil
}

// mkdirOpen creates dir, mode 0755 whatever the umask, when it is missing.
func mkdirOpen(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := mkdirOpen(filepath.Dir(dir)); err != nil {
			return err
		}
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return os.Chmod(dir, 0o755)
}

// openModes sets every directory under root to 0755 and every file to 0755
// when anyone may run it, else 0644: readable by all, writable by the
// owner only. Symlinks are left as they are.
func openModes(root string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := fs.FileMode(0o644)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			return nil
		case d.IsDir():
			mode = 0o755
		default:
			fi, err := d.Info()
			if err != nil {
				return err
			}
			if fi.Mode()&0o111 != 0 {
				mode = 0o755
			}
		}
		return os.Chmod(p, mode)
	})
}

// copyTree copies src to dst, until ctx ends: directories, regular files (files hard-linked
// to each other in src are hard-linked in dst: npm's install links the
// CLI's binary into two packages) and symlinks as they are.
func copyTree(ctx context.Context, src, dst string) error {
	linked := map[[2]uint64]string{}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.Mkdir(to, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, to)
		case d.Type().IsRegular():
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
				id := [2]uint64{uint64(st.Dev), st.Ino}
				if first, ok := linked[id]; ok {
					return os.Link(first, to)
				}
				linked[id] = to
			}
			return copyFile(p, to, fi.Mode())
		}
		return nil // sockets, devices: no install has them
	})
}

// copyFile copies the regular file src to a new file dst.
func copyFile(src, dst string, mode fs.FileMode) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close() // read only
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode.Perm()|0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		return errors.Join(err, out.Close())
	}
	return out.Close()
}

// npmPrefix splits bin at its last node_modules: the npm prefix above it,
// and bin relative to that prefix.
func npmPrefix(bin string) (prefix, rel string, ok bool) {
	i := strings.LastIndex(bin, "/node_modules/")
	if i < 0 {
		return "", "", false
	}
	return bin[:i], bin[i+1:], true
}

// within reports whether p is dir or under it.
func within(p, dir string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// same reports whether the file at path holds exactly b.
func same(path string, b []byte) bool {
	got, err := os.ReadFile(path)
	return err == nil && bytes.Equal(got, b)
}

// lookPath finds an executable named file in pathList.
func lookPath(file, pathList string) (string, error) {
	for _, dir := range filepath.SplitList(pathList) {
		p := filepath.Join(dir, file)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH %s", file, pathList)
}

// lastLines returns the last n non-empty lines of s, joined by " | ".
func lastLines(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "npm http") {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
