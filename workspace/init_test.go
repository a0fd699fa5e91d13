package workspace_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/workspace"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

func TestInitClonesInstallsAndResumes(t *testing.T) {
	requireNpm(t)
	g := workspacetest.NewGit(t)
	remote := workspacetest.NewRemote(t, g, workspacetest.SiteFiles())
	ws := newWorkspaces(t)
	u := mustUser(t, ws, "client1", "user1")

	res := mustInit(t, u, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "t1"})
	want := workspace.InitResult{Branch: "thread-t1", Cloned: true, Installed: true}
	if res != want {
		t.Fatalf("first init = %+v, want %+v", res, want)
	}
	for _, p := range []string{
		filepath.Join(u.ProjectDir, ".git"),
		filepath.Join(u.ProjectDir, "node_modules", ".package-lock.json"),
		filepath.Join(u.ThreadsDir, "t1.json"),
		u.MetadataPath,
	} {
		if !exists(p) {
			t.Errorf("%s missing after first init", p)
		}
	}
	if branch, sha := head(t, g, u); branch != "thread-t1" || sha != remote.Rev("main") {
		t.Errorf("head = %s %s, want thread-t1 at main %s", branch, sha, remote.Rev("main"))
	}
	meta, err := u.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	if meta.RepoURL != remote.URL || meta.Created.IsZero() || meta.LastAccessed.IsZero() ||
		meta.Lockfile != "package-lock.json" || !strings.HasPrefix(meta.LockfileHash, "sha256:") {
		t.Errorf("metadata = %+v", meta)
	}
	// No stray clone or repair directories beside project/.
	entries, err := os.ReadDir(u.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".project-") {
			t.Errorf("leftover %s", e.Name())
		}
	}

	// Second init of the same thread: resume, no clone, no install.
	gitDirBefore := inode(t, filepath.Join(u.ProjectDir, ".git"))
	res = mustInit(t, u, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "t1"})
	if want := (workspace.InitResult{Branch: "thread-t1", Resumed: true}); res != want {
		t.Fatalf("second init = %+v, want %+v", res, want)
	}
	if inode(t, filepath.Join(u.ProjectDir, ".git")) != gitDirBefore {
		t.Error("second init replaced the repository")
	}
	meta2, err := u.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	if !meta2.Created.Equal(meta.Created) || !meta2.LastAccessed.After(meta.LastAccessed) {
		t.Errorf("metadata after resume: created %v (was %v), lastAccessed %v (was %v)",
			meta2.Created, meta.Created, meta2.LastAccessed, meta.LastAccessed)
	}

	// An init without repoUrl uses the recorded one; another URL is refused.
	res = mustInit(t, u, workspace.InitOptions{ThreadID: "t2"})
	if want := (workspace.InitResult{Branch: "thread-t2"}); res != want {
		t.Fatalf("init of a new thread = %+v, want %+v", res, want)
	}
	other := workspacetest.NewRemote(t, g, plainSite())
	if _, err := u.Init(ctx(t), workspace.InitOptions{RepoURL: other.URL, ThreadID: "t2"}); !errors.Is(err, workspace.ErrRepoMismatch) {
		t.Errorf("init with another repo: err = %v, want ErrRepoMismatch", err)
	} else if !strings.Contains(err.Error(), remote.URL) {
		t.Errorf("the refusal does not name the recorded repository %s: %v", remote.URL, err)
	}

	// A changed lockfile is installed again.
	files := workspacetest.SiteFiles()
	workspacetest.WriteFiles(t, u.ProjectDir, map[string]string{
		"package.json":      strings.Replace(files["package.json"], `"1.0.0"`, `"1.0.1"`, 1),
		"package-lock.json": strings.Replace(files["package-lock.json"], `"version": "1.0.0"`, `"version": "1.0.1"`, 2),
	})
	res = mustInit(t, u, workspace.InitOptions{ThreadID: "t2"})
	if !res.Installed || !res.Resumed || res.Cloned {
		t.Errorf("init after lockfile change = %+v, want installed and resumed", res)
	}
	meta3, err := u.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	if meta3.LockfileHash == meta.LockfileHash || meta3.LockfileHash == "" {
		t.Errorf("lockfile hash not updated: %q", meta3.LockfileHash)
	}
	// Removing node_modules also triggers an install.
	if err := os.RemoveAll(filepath.Join(u.ProjectDir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	installed, err := u.InstallDependencies(ctx(t))
	if err != nil || !installed {
		t.Errorf("InstallDependencies without node_modules = %v, %v; want installed", installed, err)
	}
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return statIno(fi)
}

func TestInitNewThreadBase(t *testing.T) {
	g := workspacetest.NewGit(t)
	remote := workspacetest.NewRemote(t, g, plainSite())
	develop := remote.Commit(t, "develop", map[string]string{"develop.txt": "dev\n"}, "develop work")
	ws := newWorkspaces(t)
	u := mustUser(t, ws, "c", "u")

	tests := []struct {
		name, thread, base, want string
	}{
		{"default branch", "a", "", remote.Rev("main")},
		{"explicit base", "b", "develop", develop},
		{"explicit main", "c", "main", remote.Rev("main")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustInit(t, u, workspace.InitOptions{RepoURL: remote.URL, ThreadID: tt.thread, BaseBranch: tt.base})
			if res.Resumed {
				t.Error("new thread reported resumed")
			}
			if branch, sha := head(t, g, u); branch != "thread-"+tt.thread || sha != tt.want {
				t.Errorf("head = %s %s, want thread-%s at %s", branch, sha, tt.thread, tt.want)
			}
		})
	}
	for _, base := range []string{"nope", "feature/missing"} {
		if _, err := u.Init(ctx(t), workspace.InitOptions{ThreadID: "d", BaseBranch: base}); !errors.Is(err, workspace.ErrBaseBranchNotFound) {
			t.Errorf("base %q: err = %v, want ErrBaseBranchNotFound", base, err)
		}
	}
	for _, base := range []string{"-x", "a..b", "a b", "../x", "x.lock"} {
		if _, err := u.Init(ctx(t), workspace.InitOptions{ThreadID: "d", BaseBranch: base}); !errors.Is(err, workspace.ErrInvalidID) {
			t.Errorf("base %q: err = %v, want ErrInvalidID", base, err)
		}
	}
}

func TestInitResumesThreadFromRemote(t *testing.T) {
	g := workspacetest.NewGit(t)
	remote := workspacetest.NewRemote(t, g, plainSite())
	ws := newWorkspaces(t)

	// One user works on a thread and pushes it.
	a := mustUser(t, ws, "c", "alice")
	mustInit(t, a, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "shared"})
	writeFile(t, filepath.Join(a.ProjectDir, "index.html"), "<h1>Changed</h1>\n")
	c, err := a.Commit(ctx(t), "shared", "job-1", "change the title")
	if err != nil {
		t.Fatal(err)
	}
	if pushed, reason, err := a.Push(ctx(t), "shared"); err != nil || !pushed {
		t.Fatalf("push = %v %q %v", pushed, reason, err)
	}

	// A fresh workspace finds the thread on the remote.
	b := mustUser(t, ws, "c", "bob")
	res := mustInit(t, b, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "shared"})
	if !res.Resumed || !res.Cloned {
		t.Errorf("init = %+v, want cloned and resumed", res)
	}
	if branch, sha := head(t, g, b); branch != "thread-shared" || sha != c.SHA {
		t.Errorf("head = %s %s, want thread-shared at %s", branch, sha, c.SHA)
	}

	// A commit pushed from elsewhere is fast-forwarded on the next init.
	newer := remote.Commit(t, "thread-shared", map[string]string{"news.html": "new\n"}, "from elsewhere")
	res = mustInit(t, b, workspace.InitOptions{ThreadID: "shared"})
	if !res.Resumed || res.Cloned {
		t.Errorf("init = %+v, want resumed", res)
	}
	if _, sha := head(t, g, b); sha != newer {
		t.Errorf("head = %s, want fast-forwarded to %s", sha, newer)
	}
}

func TestInitEmptyRemote(t *testing.T) {
	g := workspacetest.NewGit(t)
	bare := filepath.Join(workspacetest.Reachable(t), "empty.git")
	g.Run("", "init", "--quiet", "--bare", "--shared=0777", "--initial-branch=main", bare)
	ws := newWorkspaces(t)
	u := mustUser(t, ws, "c", "u")
	res := mustInit(t, u, workspace.InitOptions{RepoURL: bare, ThreadID: "first"})
	if res.Branch != "thread-first" || res.Resumed {
		t.Errorf("init = %+v", res)
	}
	writeFile(t, filepath.Join(u.ProjectDir, "index.html"), "hi\n")
	c, err := u.Commit(ctx(t), "first", "job-1", "start the site")
	if err != nil || c.SHA == "" {
		t.Fatalf("commit = %+v, %v", c, err)
	}
	if pushed, reason, err := u.Push(ctx(t), "first"); err != nil || !pushed {
		t.Fatalf("push = %v %q %v", pushed, reason, err)
	}
	if got := g.Run("", "--git-dir="+bare, "rev-parse", "thread-first"); got != c.SHA {
		t.Errorf("remote thread-first = %s, want %s", got, c.SHA)
	}
}

func TestInitRepairsDamagedWorkspace(t *testing.T) {
	g := workspacetest.NewGit(t)
	remote := workspacetest.NewRemote(t, g, plainSite())

	tests := []struct {
		name   string
		damage func(t *testing.T, u *workspace.User)
	}{
		{"project without .git", func(t *testing.T, u *workspace.User) {
			if err := os.RemoveAll(filepath.Join(u.ProjectDir, ".git")); err != nil {
				t.Fatal(err)
			}
		}},
		{"corrupt HEAD", func(t *testing.T, u *workspace.User) {
			writeFile(t, filepath.Join(u.ProjectDir, ".git", "HEAD"), "garbage\x00\n")
		}},
		{"missing objects", func(t *testing.T, u *workspace.User) {
			if err := os.RemoveAll(filepath.Join(u.ProjectDir, ".git", "objects")); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(filepath.Join(u.ProjectDir, ".git", "objects"), 0o755); err != nil {
				t.Fatal(err)
			}
		}},
		{"clone killed before rename", func(t *testing.T, u *workspace.User) {
			if err := os.RemoveAll(u.ProjectDir); err != nil {
				t.Fatal(err)
			}
			// A clone directory is the tenant's, as cloneProject makes it.
			if err := u.Tenant.MkdirOwned(filepath.Join(u.Dir, ".project-clone-123"), 0o700); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(u.Dir, ".project-clone-123", ".git", "HEAD"), "ref: refs/heads/main\n")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws := newWorkspaces(t)
			u := mustUser(t, ws, "c", "u")
			mustInit(t, u, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "t1"})
			if _, err := u.RecordJob("t1", workspace.JobRecord{JobID: "job-1", Status: "succeeded", SessionID: "sess-1"}); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(u.ProjectDir, "unsaved-work.txt"), "an edit nobody committed\n")
			tt.damage(t, u)
			_, err := os.Stat(u.ProjectDir)
			hadProject := err == nil // a damage that removed project/ took the work with it

			if _, err := u.SwitchThread(ctx(t), "t1"); !errors.Is(err, workspace.ErrNotInitialized) {
				t.Errorf("switch on damaged workspace: err = %v, want ErrNotInitialized", err)
			}
			res := mustInit(t, u, workspace.InitOptions{ThreadID: "t1"})
			if !res.Cloned {
				t.Errorf("init = %+v, want cloned", res)
			}
			if branch, sha := head(t, g, u); branch != "thread-t1" || sha != remote.Rev("main") {
				t.Errorf("head = %s %s after repair", branch, sha)
			}
			if out := g.Run(u.ProjectDir, "status", "--porcelain"); out != "" {
				t.Errorf("repaired project not clean: %s", out)
			}
			th, err := u.LoadThread("t1")
			if err != nil {
				t.Fatal(err)
			}
			if th.SessionID != "sess-1" || len(th.Jobs) != 1 {
				t.Errorf("thread record lost in repair: %+v", th)
			}
			entries, err := os.ReadDir(u.Dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), ".project-") {
					t.Errorf("leftover %s", e.Name())
				}
			}
			// The damaged project is kept, with the work in it.
			if kept, _ := filepath.Glob(filepath.Join(u.Dir, ".damaged", "*", "unsaved-work.txt")); hadProject && len(kept) != 1 {
				t.Errorf("the damaged project's uncommitted work was not kept: %v", kept)
			}
		})
	}
}

// TestUnbornThreadIsHealthy: a thread of an empty remote (no commit yet)
// with other branches fetched since is not taken for a damaged repository,
// so nothing is re-cloned and no edit is lost.
func TestUnbornThreadIsHealthy(t *testing.T) {
	g := workspacetest.NewGit(t)
	empty := filepath.Join(t.TempDir(), "empty.git")
	g.Run("", "init", "-q", "--bare", empty)
	u := mustUser(t, newWorkspaces(t), "c", "u")
	mustInit(t, u, workspace.InitOptions{RepoURL: "file://" + empty, ThreadID: "t1"})
	writeFile(t, filepath.Join(u.ProjectDir, "draft.txt"), "work in progress\n")
	// Someone pushes main meanwhile; the next init fetches it.
	work := t.TempDir()
	g.Run(work, "clone", "-q", empty, "w")
	writeFile(t, filepath.Join(work, "w", "README.md"), "hello\n")
	g.Run(filepath.Join(work, "w"), "add", "-A")
	g.Run(filepath.Join(work, "w"), "commit", "-q", "-m", "first")
	g.Run(filepath.Join(work, "w"), "push", "-q", "origin", "HEAD:main")
	res := mustInit(t, u, workspace.InitOptions{ThreadID: "t1"})
	if res.Cloned {
		t.Error("a healthy workspace with an unborn thread branch was cloned again")
	}
	if b, err := os.ReadFile(filepath.Join(u.ProjectDir, "draft.txt")); err != nil || string(b) != "work in progress\n" {
		t.Errorf("the draft is gone: %q, %v", b, err)
	}
}

func TestInitRemovesStaleIndexLock(t *testing.T) {
	g := workspacetest.NewGit(t)
	remote := workspacetest.NewRemote(t, g, plainSite())
	u := mustUser(t, newWorkspaces(t), "c", "u")
	mustInit(t, u, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "a"})
	writeFile(t, filepath.Join(u.ProjectDir, ".git", "index.lock"), "")
	writeFile(t, filepath.Join(u.ProjectDir, "index.html"), "edited\n")
	res := mustInit(t, u, workspace.InitOptions{ThreadID: "b"})
	if res.Cloned {
		t.Error("a stale lock caused a clone")
	}
	if branch, _ := head(t, g, u); branch != "thread-b" {
		t.Errorf("branch = %s", branch)
	}
}

func TestInitConcurrentUsers(t *testing.T) {
	requireNpm(t)
	g := workspacetest.NewGit(t)
	remote := workspacetest.NewRemote(t, g, workspacetest.SiteFiles())
	ws := newWorkspaces(t)
	users := []string{"u1", "u2", "u3"}
	var wg sync.WaitGroup
	errs := make([]error, len(users))
	shas := make([]string, len(users))
	for i, id := range users {
		wg.Go(func() {
			u, err := ws.User("c", id)
			if err != nil {
				errs[i] = err
				return
			}
			if _, err := u.Init(ctx(t), workspace.InitOptions{RepoURL: remote.URL, ThreadID: "th-" + id}); err != nil {
				errs[i] = err
				return
			}
			if err := os.WriteFile(filepath.Join(u.ProjectDir, id+".txt"), []byte(id), 0o644); err != nil {
				errs[i] = err
				return
			}
			c, err := u.Commit(ctx(t), "th-"+id, "job-"+id, "add "+id)
			if err != nil {
				errs[i] = err
				return
			}
			shas[i] = c.SHA
			if pushed, reason, err := u.Push(ctx(t), "th-"+id); err != nil || !pushed {
				errs[i] = errors.Join(err, errors.New(reason))
			}
		})
	}
	wg.Wait()
	for i, id := range users {
		if errs[i] != nil {
			t.Fatalf("user %s: %v", id, errs[i])
		}
		u := mustUser(t, ws, "c", id)
		if branch, sha := head(t, g, u); branch != "thread-th-"+id || sha != shas[i] {
			t.Errorf("user %s head = %s %s", id, branch, sha)
		}
		if got := remote.Rev("refs/heads/thread-th-" + id); got != shas[i] {
			t.Errorf("remote thread-th-%s = %s, want %s", id, got, shas[i])
		}
		files := g.Run(u.ProjectDir, "ls-files")
		for _, other := range users {
			if other != id && strings.Contains(files, other+".txt") {
				t.Errorf("user %s sees %s.txt", id, other)
			}
		}
		if !exists(filepath.Join(u.ProjectDir, "node_modules", ".package-lock.json")) {
			t.Errorf("user %s: dependencies not installed", id)
		}
	}
}

func TestInstall(t *testing.T) {
	requireNpm(t)
	g := workspacetest.NewGit(t)

	t.Run("failing installer", func(t *testing.T) {
		remote := workspacetest.NewRemote(t, g, map[string]string{
			"package.json": `{"name":"site","version":"1.0.0","private":true,"scripts":{"preinstall":"echo boom-` + testToken + `; exit 3"}}`,
		})
		u := mustUser(t, newWorkspaces(t), "c", "u")
		_, err := u.Init(ctx(t), workspace.InitOptions{RepoURL: remote.URL, ThreadID: "t"})
		var ie *workspace.InstallError
		if !errors.As(err, &ie) {
			t.Fatalf("err = %v, want *InstallError", err)
		}
		if ie.Command != "npm install --no-package-lock" || !strings.Contains(ie.Output, "boom-[REDACTED]") {
			t.Errorf("install error = command %q output %q", ie.Command, ie.Output)
		}
		if strings.Contains(err.Error(), testToken) {
			t.Error("install error holds the token")
		}
		meta, err := u.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		if meta.LockfileHash != "" {
			t.Errorf("failed install recorded hash %q", meta.LockfileHash)
		}
		// The branch is ready even though the install failed; init retries it.
		if branch, _ := head(t, g, u); branch != "thread-t" {
			t.Errorf("branch = %s", branch)
		}
		if _, err := u.Init(ctx(t), workspace.InitOptions{ThreadID: "t"}); !errors.As(err, &ie) {
			t.Errorf("second init err = %v, want the install retried and failing", err)
		}
	})

	t.Run("installer past its deadline", func(t *testing.T) {
		// A timed-out install says both that the time ran out and how the
		// process ended: the context's error and the *exec.ExitError are
		// both in the chain, not flattened into text.
		remote := workspacetest.NewRemote(t, g, map[string]string{
			"package.json": `{"name":"site","version":"1.0.0","private":true,"scripts":{"preinstall":"sleep 60"}}`,
		})
		u := mustUser(t, newWorkspaces(t), "c", "u")
		short, cancel := context.WithTimeout(ctx(t), 5*time.Second)
		defer cancel()
		_, err := u.Init(short, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "t"})
		var ie *workspace.InstallError
		var exit *exec.ExitError
		if !errors.As(err, &ie) || !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &exit) {
			t.Fatalf("err = %v, want an *InstallError wrapping context.DeadlineExceeded and an *exec.ExitError", err)
		}
		if exit.ExitCode() != -1 || !strings.Contains(err.Error(), "signal: killed") {
			t.Errorf("exit = %v (code %d), want the process killed by its deadline", exit, exit.ExitCode())
		}
	})

	t.Run("no lockfile", func(t *testing.T) {
		// npm install writes no package-lock.json: the tree stays clean, so
		// the first job's commit holds only the agent's edits.
		files := plainSite()
		files["package.json"] = `{"name":"site","version":"1.0.0","private":true}`
		remote := workspacetest.NewRemote(t, g, files)
		u := mustUser(t, newWorkspaces(t), "c", "u")
		if res := mustInit(t, u, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "t"}); !res.Installed {
			t.Fatalf("init did not install: %+v", res)
		}
		if status := g.Run(u.ProjectDir, "status", "--porcelain"); status != "" {
			t.Errorf("the install left changes in the tree: %q", status)
		}
		if res := mustInit(t, u, workspace.InitOptions{ThreadID: "t"}); res.Installed {
			t.Errorf("the next init installed again: %+v", res)
		}
	})

	t.Run("no package.json", func(t *testing.T) {
		remote := workspacetest.NewRemote(t, g, plainSite())
		u := mustUser(t, newWorkspaces(t), "c", "u")
		res := mustInit(t, u, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "t"})
		if res.Installed || exists(filepath.Join(u.ProjectDir, "node_modules")) {
			t.Errorf("installed without package.json: %+v", res)
		}
	})

	t.Run("package manager missing", func(t *testing.T) {
		files := plainSite()
		files["package.json"] = `{"name":"site","version":"1.0.0"}`
		files["pnpm-lock.yaml"] = "lockfileVersion: '9.0'\n"
		remote := workspacetest.NewRemote(t, g, files)
		gitDir := filepath.Dir(mustLook(t, "git"))
		u := mustUser(t, newWorkspaces(t, func(c *workspace.Config) { c.PATH = gitDir }), "c", "u")
		_, err := u.Init(ctx(t), workspace.InitOptions{RepoURL: remote.URL, ThreadID: "t"})
		var ie *workspace.InstallError
		if !errors.As(err, &ie) || ie.Command != "pnpm install --frozen-lockfile" {
			t.Errorf("err = %v, want InstallError for pnpm", err)
		}
	})
}

// TestInitAfterAWrongFirstURL: a first init whose repoUrl cannot be cloned
// (a typo) records nothing that holds the user back: the next init with the
// right URL clones it.
func TestInitAfterAWrongFirstURL(t *testing.T) {
	requireNpm(t)
	g := workspacetest.NewGit(t)
	remote := workspacetest.NewRemote(t, g, workspacetest.SiteFiles())
	u := mustUser(t, newWorkspaces(t), "client1", "user1")
	typo := filepath.Join(t.TempDir(), "nonexistent", "repo.git")
	if _, err := u.Init(ctx(t), workspace.InitOptions{RepoURL: typo, ThreadID: "t1"}); err == nil {
		t.Fatal("an init of a repository that does not exist succeeded")
	}
	res, err := u.Init(ctx(t), workspace.InitOptions{RepoURL: remote.URL, ThreadID: "t1"})
	if err != nil || !res.Cloned {
		t.Fatalf("init with the right URL after a typo: %+v, %v; want it cloned", res, err)
	}
	if meta, err := u.Metadata(); err != nil || meta.RepoURL != remote.URL {
		t.Errorf("recorded repository %q (%v), want %s", meta.RepoURL, err, remote.URL)
	}
}
