package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/sandboxtest"
	"github.com/webordinary/claude-code-astro/preview"
	"github.com/webordinary/claude-code-astro/preview/previewtest"
	"github.com/webordinary/claude-code-astro/workspace"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// benchSiteWorkspace: rows 6, 5a, 5b, 10a and 10b on one workspace of the
// example site, through the workspace and preview packages directly: the
// first init (clone, npm ci from the registry), resumed inits, thread
// switches with commits, and resumed inits followed by a dev server start.
func benchSiteWorkspace(b *testing.B, e *env) {
	const resumes, commits, warmStarts = 7, 10, 3
	if _, err := exec.LookPath("npm"); err != nil {
		b.Fatalf("npm not found in PATH (%v): install Node.js 20 and npm", err)
	}
	g := workspacetest.NewGit(b)
	remote := workspacetest.NewRemote(b, g, previewtest.SiteFiles(b))
	ws, err := workspace.Open(workspace.Config{
		Root: sandboxtest.Root(b), Sandbox: sandboxtest.New(b), PATH: os.Getenv("PATH"),
		NpmSeedCache: e.npmCache, Logger: quietLogger(b),
	})
	if err != nil {
		b.Fatal(err)
	}
	u, err := ws.User("acme", "bench")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// 6: the first init.
	start := time.Now()
	res, err := u.Init(ctx, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "t1"})
	first := time.Since(start)
	if err != nil {
		b.Fatalf("first init: %v", err)
	}
	if !res.Cloned || !res.Installed {
		b.Fatalf("first init did not clone and install: %+v", res)
	}
	// The tenant's cache is the seed of the later workers' tenants.
	for _, args := range [][]string{{"cp", "-R", filepath.Join(u.HomeDir, ".npm") + "/.", e.npmCache}, {"chmod", "-R", "a+rX", e.npmCache}} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			b.Fatalf("keep the npm cache: %v: %s", err, out)
		}
	}
	e.npmCacheWarm.Store(true)
	packages, err := countPackages(filepath.Join(u.ProjectDir, "node_modules"))
	if err != nil {
		b.Fatal(err)
	}
	e.table.Info("6", fmt.Sprintf("%s (%d packages)", Ms(first), packages))
	b.ReportMetric(first.Seconds(), "first-init-s")

	// 5a: resumed inits.
	resume := func() time.Duration {
		start := time.Now()
		res, err := u.Init(ctx, workspace.InitOptions{ThreadID: "t1"})
		took := time.Since(start)
		if err != nil {
			b.Fatalf("resumed init: %v", err)
		}
		if !res.Resumed || res.Cloned || res.Installed {
			b.Fatalf("resumed init did more than resume: %+v", res)
		}
		return took
	}
	var resumed []time.Duration
	for range resumes {
		resumed = append(resumed, resume())
	}
	e.table.Check("5a", medMax(resumed), Median(resumed) < 500*time.Millisecond)
	b.ReportMetric(ms(Median(resumed)), "resume-init-median-ms")

	// 5b: switch to the other thread, edit one file, commit.
	if _, err := u.Init(ctx, workspace.InitOptions{ThreadID: "t2"}); err != nil {
		b.Fatalf("init t2: %v", err)
	}
	page := filepath.Join(u.ProjectDir, "src", "pages", "index.astro")
	// The baseline: the same change with bare git in a plain clone, two
	// processes (checkout, commit -a), taking turns with the workspace's.
	plain := filepath.Join(b.TempDir(), "plain")
	g.Run("", "clone", "-q", remote.URL, plain)
	g.Run(plain, "branch", "t1")
	g.Run(plain, "branch", "t2")
	plainPage := filepath.Join(plain, "src", "pages", "index.astro")
	var switched, bare []time.Duration
	for i := range commits {
		thread := []string{"t1", "t2"}[i%2]
		start := time.Now()
		g.Run(plain, "checkout", "-q", thread)
		setHeading(b, plainPage, fmt.Sprintf("Commit %d on %s", i, thread))
		g.Run(plain, "commit", "-q", "-a", "-m", "Change the heading")
		bare = append(bare, time.Since(start))

		start = time.Now()
		if _, err := u.SwitchThread(ctx, thread); err != nil {
			b.Fatalf("switch to %s: %v", thread, err)
		}
		setHeading(b, page, fmt.Sprintf("Commit %d on %s", i, thread))
		c, err := u.Commit(ctx, thread, fmt.Sprintf("job-%d", i), "Change the heading")
		took := time.Since(start)
		if err != nil || c.SHA == "" {
			b.Fatalf("commit on %s: %+v %v", thread, c, err)
		}
		switched = append(switched, took)
	}
	e.table.Check("5b", VsBaseline(switched, bare), Ratio(switched, bare) < switchGoal)
	b.ReportMetric(ms(Median(switched)), "switch-commit-median-ms")
	b.ReportMetric(Ratio(switched, bare), "switch-commit-vs-git-x")

	// 10a, 10b: resumed init then the dev server serving the project, as
	// an init job on a freshly started worker does.
	var cold time.Duration
	var warm []time.Duration
	for i := range warmStarts + 1 {
		servers := preview.NewServers(preview.ServersConfig{
			BasePort: previewtest.FreePort(b), PATH: previewtest.NodePATH(b), Logger: quietLogger(b),
			ReadyTimeout: 90 * time.Second,
		})
		start := time.Now()
		resume()
		err := servers.Target(ctx, preview.Target{ID: preview.ID("acme", "alice"), Key: u.Tenant.Key, Dir: u.ProjectDir,
			As: preview.RunAs{Credential: u.Tenant.Credential(), Home: u.HomeDir}})
		took := time.Since(start)
		closeCtx, cancelClose := context.WithTimeout(context.Background(), 30*time.Second)
		cerr := servers.Close(closeCtx)
		cancelClose()
		if err != nil {
			b.Fatalf("dev server start %d: %v", i, err)
		}
		if cerr != nil {
			b.Fatalf("close dev server: %v", cerr)
		}
		if i == 0 {
			cold = took
		} else {
			warm = append(warm, took)
		}
	}
	e.table.Check("10a", Ms(cold), cold < 5*time.Second)
	e.table.Check("10b", medMax(warm), Median(warm) < 5*time.Second)
	b.ReportMetric(ms(cold), "init-to-preview-cold-ms")
	b.ReportMetric(ms(Median(warm)), "init-to-preview-warm-median-ms")
}

// countPackages returns how many packages npm installed: the entries of
// its hidden lockfile, node_modules/.package-lock.json.
func countPackages(nodeModules string) (int, error) {
	data, err := os.ReadFile(filepath.Join(nodeModules, ".package-lock.json"))
	if err != nil {
		return 0, fmt.Errorf("count installed packages: %w", err)
	}
	var lock struct {
		Packages map[string]json.RawMessage `json:"packages"`
	}
	if err := json.Unmarshal(data, &lock); err != nil {
		return 0, fmt.Errorf("count installed packages: %w", err)
	}
	if len(lock.Packages) == 0 {
		return 0, fmt.Errorf("count installed packages: none in %s", nodeModules)
	}
	return len(lock.Packages), nil
}

// quietLogger logs warnings and errors to the benchmark's output.
func quietLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// titleRE matches the example site's <h1 id="title">.
var titleRE = regexp.MustCompile(`<h1 id="title">[^<]*</h1>`)

// setHeading rewrites the <h1 id="title"> of page in place, as an editor or
// the agent's Edit tool does.
func setHeading(tb testing.TB, page, text string) {
	tb.Helper()
	src, err := os.ReadFile(page)
	if err != nil {
		tb.Fatal(err)
	}
	if !titleRE.Match(src) {
		tb.Fatalf("no <h1 id=\"title\"> in %s", page)
	}
	out := titleRE.ReplaceAllLiteral(src, []byte(`<h1 id="title">`+text+`</h1>`))
	if err := os.WriteFile(page, out, 0o644); err != nil {
		tb.Fatal(err)
	}
}
