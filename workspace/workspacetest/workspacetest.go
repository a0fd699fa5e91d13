// Package workspacetest builds real git repositories for tests of the
// workspace package and its callers: a bare repository on disk playing the
// remote, a tiny site to put in it, and a git smart-HTTP server on loopback
// that demands a token.
//
// Every git the kit runs gets an explicit environment with a temporary
// HOME and GIT_CONFIG_GLOBAL, so the machine's own git configuration is
// never read or written.
package workspacetest

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/sandboxtest"
)

// Git runs git for a test with an explicit environment.
type Git struct {
	tb  testing.TB
	Env []string
}

// NewGit returns a Git with a temporary HOME and global config file. It
// fails the test when git is not installed.
func NewGit(tb testing.TB) *Git {
	tb.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		tb.Fatalf("git not found in PATH: install git (apt-get install -y git)")
	}
	home := tb.TempDir()
	global := filepath.Join(home, "gitconfig")
	// The kit reads repositories that tenant uids own.
	if err := os.WriteFile(global, []byte("[safe]\n\tdirectory = *\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	return &Git{tb: tb, Env: []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"LANG=C",
		"LC_ALL=C",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=" + global,
		"GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=Test Kit",
		"GIT_AUTHOR_EMAIL=kit@example.test",
		"GIT_COMMITTER_NAME=Test Kit",
		"GIT_COMMITTER_EMAIL=kit@example.test",
	}}
}

// Try runs git in dir and returns its trimmed output and error.
func (g *Git) Try(dir string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = g.Env
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	if err != nil {
		return strings.TrimSpace(out.String()), fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, out.String())
	}
	return strings.TrimSpace(out.String()), nil
}

// Run runs git in dir and fails the test on error.
func (g *Git) Run(dir string, args ...string) string {
	g.tb.Helper()
	out, err := g.Try(dir, args...)
	if err != nil {
		g.tb.Fatal(err)
	}
	return out
}

// Remote is a bare repository on disk playing the remote.
type Remote struct {
	git *Git
	// Dir is the bare repository.
	Dir string
	// URL is its file:// URL.
	URL string
}

// NewRemote creates a bare repository whose default branch main holds
// files (path -> content). Every uid can read it and push to it (a shared
// repository in a directory everyone can reach), as tenant uids must.
func NewRemote(tb testing.TB, g *Git, files map[string]string) *Remote {
	tb.Helper()
	dir := filepath.Join(Reachable(tb), "remote.git")
	g.Run("", "init", "--quiet", "--bare", "--shared=0777", "--initial-branch=main", dir)
	r := &Remote{git: g, Dir: dir, URL: "file://" + dir}
	r.Commit(tb, "main", files, "initial site")
	return r
}

// Commit writes files on branch (created from main when missing) in a
// scratch clone, commits and pushes them, and returns the commit.
func (r *Remote) Commit(tb testing.TB, branch string, files map[string]string, msg string) string {
	tb.Helper()
	work := filepath.Join(tb.TempDir(), "work")
	r.git.Run("", "clone", "--quiet", r.URL, work)
	if _, err := r.git.Try(work, "rev-parse", "--verify", "--quiet", "origin/"+branch); err == nil {
		r.git.Run(work, "checkout", "--quiet", branch)
	} else if _, err := r.git.Try(work, "rev-parse", "--verify", "--quiet", "HEAD"); err == nil {
		r.git.Run(work, "checkout", "--quiet", "-b", branch)
	} else {
		r.git.Run(work, "checkout", "--quiet", "--orphan", branch)
	}
	WriteFiles(tb, work, files)
	r.git.Run(work, "add", "-A")
	r.git.Run(work, "commit", "--quiet", "-m", msg)
	r.git.Run(work, "push", "--quiet", "origin", "HEAD:refs/heads/"+branch)
	return r.git.Run(work, "rev-parse", "HEAD")
}

// Rev returns the commit a ref of the remote points to, "" when missing.
func (r *Remote) Rev(ref string) string {
	out, err := r.git.Try("", "--git-dir="+r.Dir, "rev-parse", "--verify", "--quiet", ref)
	if err != nil {
		return ""
	}
	return out
}

// SetHook installs an executable hook script (such as pre-receive) in the
// remote; an empty script removes it.
func (r *Remote) SetHook(tb testing.TB, name, script string) {
	tb.Helper()
	p := filepath.Join(r.Dir, "hooks", name)
	if script == "" {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			tb.Fatal(err)
		}
		return
	}
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		tb.Fatal(err)
	}
}

// Reachable returns a new temporary directory that every uid can reach and
// write (its parents searchable): for repositories and files that tenant
// uids must use.
func Reachable(tb testing.TB) string {
	tb.Helper()
	dir := sandboxtest.SearchableTempDir(tb)
	if err := os.Chmod(dir, 0o777); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// WriteOwned writes a file as its directory's owner would: the file, and any
// directory it creates, get the uid and gid of the nearest existing
// directory above it.
func WriteOwned(tb testing.TB, path, content string) {
	tb.Helper()
	existing := filepath.Dir(path)
	for {
		if _, err := os.Stat(existing); err == nil {
			break
		}
		existing = filepath.Dir(existing)
	}
	fi, err := os.Stat(existing)
	if err != nil {
		tb.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		tb.Fatal(err)
	}
	for p := path; p != existing && len(p) > len(existing); p = filepath.Dir(p) {
		if err := os.Lchown(p, int(st.Uid), int(st.Gid)); err != nil {
			tb.Fatal(err)
		}
	}
}

// WriteFiles writes files (path -> content) under dir.
func WriteFiles(tb testing.TB, dir string, files map[string]string) {
	tb.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// SiteFiles returns a tiny site whose package-lock.json installs offline
// with npm ci: its one dependency is a local file: package.
func SiteFiles() map[string]string {
	return map[string]string{
		".gitignore":             "node_modules/\ndist/\n",
		"src/pages/index.astro":  "<h1>Hello</h1>\n",
		"local-dep/package.json": `{"name":"local-dep","version":"1.0.0"}` + "\n",
		"package.json": `{
  "name": "site",
  "version": "1.0.0",
  "private": true,
  "dependencies": {
    "local-dep": "file:./local-dep"
  }
}
`,
		"package-lock.json": `{
  "name": "site",
  "version": "1.0.0",
  "lockfileVersion": 3,
  "requires": true,
  "packages": {
    "": {
      "name": "site",
      "version": "1.0.0",
      "dependencies": {
        "local-dep": "file:./local-dep"
      }
    },
    "local-dep": {
      "version": "1.0.0"
    },
    "node_modules/local-dep": {
      "resolved": "local-dep",
      "link": true
    }
  }
}
`,
	}
}

// HTTPServer serves the bare repositories under a directory over git's
// smart HTTP protocol on 127.0.0.1, through git http-backend, and demands
// HTTP basic authentication with a given password.
type HTTPServer struct {
	// URL is the server's base URL: URL + "/remote.git" is a repository.
	URL string

	mu    sync.Mutex
	auths []string
	srv   *http.Server
}

// ServeHTTP starts an HTTPServer for the bare repositories in root that
// accepts only user x-access-token with password token. It is shut down
// when the test ends.
func ServeHTTP(tb testing.TB, g *Git, root, token string) *HTTPServer {
	tb.Helper()
	execPath := g.Run("", "--exec-path")
	backend := filepath.Join(execPath, "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		tb.Fatalf("git-http-backend not found at %s: install git's full package", backend)
	}
	s := &HTTPServer{}
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+token))
	env := append([]string{
		"GIT_PROJECT_ROOT=" + root,
		"GIT_HTTP_EXPORT_ALL=1",
		// Allow pushes: the handler authenticated the request already.
		"GIT_CONFIG_COUNT=1",
		"GIT_CONFIG_KEY_0=http.receivepack",
		"GIT_CONFIG_VALUE_0=true",
	}, g.Env...)
	h := &cgi.Handler{Path: backend, Dir: root, Env: env, Stderr: os.Stderr}
	mux := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		got := req.Header.Get("Authorization")
		s.mu.Lock()
		s.auths = append(s.auths, got)
		s.mu.Unlock()
		if got != want {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, req)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.srv.Serve(ln) // returns http.ErrServerClosed on Shutdown
	}()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			tb.Error(err)
		}
		<-done
	})
	s.URL = "http://" + ln.Addr().String()
	return s
}

// Authorizations returns every Authorization header the server received,
// in order ("" for requests without one).
func (s *HTTPServer) Authorizations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.auths...)
}
