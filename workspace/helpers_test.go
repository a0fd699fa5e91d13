package workspace_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/redact"
	"github.com/webordinary/claude-code-astro/internal/testkit/sandboxtest"
	"github.com/webordinary/claude-code-astro/workspace"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// testToken is recognisable so that a leak is easy to grep for.
const testToken = "ghp_TESTtoken_0123456789_must_never_leak"

// plainSite has no package.json: nothing to install, fast.
func plainSite() map[string]string {
	return map[string]string{
		"index.html": "<h1>Hello</h1>\n",
		"about.html": "<p>About</p>\n",
	}
}

func requireTool(tb testing.TB, name, hint string) {
	tb.Helper()
	if _, err := exec.LookPath(name); err != nil {
		tb.Fatalf("%s not found in PATH: %s", name, hint)
	}
}

func requireNpm(tb testing.TB) {
	requireTool(tb, "npm", "install Node.js 20 and npm (apt-get install -y nodejs npm)")
}

// newWorkspaces opens Workspaces on a fresh root whose users run under
// tenant uids of their own (the test needs root, as CI runs).
func newWorkspaces(tb testing.TB, mods ...func(*workspace.Config)) *workspace.Workspaces {
	tb.Helper()
	sb := sandboxtest.New(tb)
	cfg := workspace.Config{
		Root:     sandboxtest.Root(tb),
		Sandbox:  sb,
		PATH:     os.Getenv("PATH"),
		Redactor: redact.New(testToken),
	}
	for _, m := range mods {
		m(&cfg)
	}
	ws, err := workspace.Open(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return ws
}

func mustUser(tb testing.TB, ws *workspace.Workspaces, client, user string) *workspace.User {
	tb.Helper()
	u, err := ws.User(client, user)
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

func mustInit(tb testing.TB, u *workspace.User, opt workspace.InitOptions) workspace.InitResult {
	tb.Helper()
	res, err := u.Init(ctx(tb), opt)
	if err != nil {
		tb.Fatalf("init %s: %v", opt.ThreadID, err)
	}
	return res
}

func ctx(tb testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	tb.Cleanup(cancel)
	return c
}

// writeFile writes a file as its directory's owner would: the file, and any
// directory it creates, belong to the owner of the nearest existing
// directory above (a tenant, inside a tenant's project).
func writeFile(tb testing.TB, path, content string) {
	tb.Helper()
	workspacetest.WriteOwned(tb, path, content)
}

func readFile(tb testing.TB, path string) string {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return string(data)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// filesContaining walks dirs and returns every file whose content holds s.
func filesContaining(tb testing.TB, s string, dirs ...string) []string {
	tb.Helper()
	var hits []string
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.Type().IsRegular() {
				return nil
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if strings.Contains(string(data), s) {
				hits = append(hits, p)
			}
			return nil
		})
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			tb.Fatal(err)
		}
	}
	return hits
}

// head returns the project's checked-out branch and commit.
func head(tb testing.TB, g *workspacetest.Git, u *workspace.User) (branch, sha string) {
	tb.Helper()
	return g.Run(u.ProjectDir, "symbolic-ref", "--short", "HEAD"), g.Run(u.ProjectDir, "rev-parse", "HEAD")
}
