package workspace_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/webordinary/claude-code-astro/workspace"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

func TestValidateID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"a", true},
		{"Client_01-x", true},
		{strings.Repeat("a", 64), true},
		{"", false},
		{"..", false},
		{".", false},
		{"a/b", false},
		{`a\b`, false},
		{"-rf", false},
		{"_x", false},
		{"a b", false},
		{"a\x00b", false},
		{"a\n", false},
		{"é", false},
		{strings.Repeat("a", 65), false},
	}
	for _, tt := range tests {
		if err := workspace.ValidateID(tt.id); (err == nil) != tt.ok || (err != nil && !errors.Is(err, workspace.ErrInvalidID)) {
			t.Errorf("ValidateID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
		}
	}
}

// TestValidateRepoURL checks the wrapping: ident.CheckRepoURL's own test
// has the full table of URLs.
func TestValidateRepoURL(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://github.com/acme/site.git", true},
		{"/srv/git/site.git", true},
		{"https://user:secret-pass@github.com/acme/site.git", false},
		{"file:relative", false},
		{"--upload-pack=touch /tmp/x", false},
	}
	for _, tt := range tests {
		err := workspace.ValidateRepoURL(tt.url)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, workspace.ErrInvalidRepoURL)) {
			t.Errorf("ValidateRepoURL(%q) = %v, want ok=%v", tt.url, err, tt.ok)
		}
		if err != nil && strings.Contains(err.Error(), "secret-pass") {
			t.Errorf("error echoes the credentials: %v", err)
		}
	}
}

func TestPathsRefusedBeforeDisk(t *testing.T) {
	g := workspacetest.NewGit(t)
	remote := workspacetest.NewRemote(t, g, plainSite())
	ws := newWorkspaces(t)
	bad := []string{"..", ".", "a/b", "../etc", "-rf", "", strings.Repeat("x", 65), "_a", "a b"}
	for _, id := range bad {
		if _, err := ws.User(id, "u"); !errors.Is(err, workspace.ErrInvalidID) {
			t.Errorf("User(%q, u) = %v, want ErrInvalidID", id, err)
		}
		if _, err := ws.User("c", id); !errors.Is(err, workspace.ErrInvalidID) {
			t.Errorf("User(c, %q) = %v, want ErrInvalidID", id, err)
		}
	}
	u := mustUser(t, ws, "c", "u")
	for _, id := range bad {
		if _, err := u.Init(ctx(t), workspace.InitOptions{RepoURL: remote.URL, ThreadID: id}); !errors.Is(err, workspace.ErrInvalidID) {
			t.Errorf("Init(thread %q) = %v, want ErrInvalidID", id, err)
		}
		if _, err := u.SwitchThread(ctx(t), id); !errors.Is(err, workspace.ErrInvalidID) {
			t.Errorf("SwitchThread(%q) = %v, want ErrInvalidID", id, err)
		}
		if _, err := u.LoadThread(id); !errors.Is(err, workspace.ErrInvalidID) {
			t.Errorf("LoadThread(%q) = %v, want ErrInvalidID", id, err)
		}
	}
	if _, err := u.Init(ctx(t), workspace.InitOptions{RepoURL: "https://u:secret-pass@example.com/r.git", ThreadID: "t"}); !errors.Is(err, workspace.ErrInvalidRepoURL) ||
		strings.Contains(err.Error(), "secret-pass") {
		t.Errorf("Init with credentials in url = %v", err)
	}
	entries, err := os.ReadDir(ws.Root())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if name := e.Name(); name != ".git-excludes" && name != ".gitconfig-tenants" && name != ".uids" {
			t.Errorf("refused ids touched the disk: root holds %s", name)
		}
	}
}

func TestSymlinksOutsideRootRefused(t *testing.T) {
	outside := t.TempDir()
	tests := []struct {
		name  string
		setup func(t *testing.T, root string)
	}{
		{"user dir symlink", func(t *testing.T, root string) {
			if err := os.MkdirAll(filepath.Join(root, "c"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, filepath.Join(root, "c", "u")); err != nil {
				t.Fatal(err)
			}
		}},
		{"client dir symlink", func(t *testing.T, root string) {
			if err := os.Symlink(outside, filepath.Join(root, "c")); err != nil {
				t.Fatal(err)
			}
		}},
		{"project dir symlink", func(t *testing.T, root string) {
			if err := os.MkdirAll(filepath.Join(root, "c", "u"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, filepath.Join(root, "c", "u", "project")); err != nil {
				t.Fatal(err)
			}
		}},
		{"dangling symlink", func(t *testing.T, root string) {
			if err := os.MkdirAll(filepath.Join(root, "c"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join(outside, "missing"), filepath.Join(root, "c", "u")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws := newWorkspaces(t)
			tt.setup(t, ws.Root())
			if _, err := ws.User("c", "u"); !errors.Is(err, workspace.ErrOutsideRoot) {
				t.Errorf("User = %v, want ErrOutsideRoot", err)
			}
			entries, err := os.ReadDir(outside)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 0 {
				t.Errorf("outside dir written: %v", entries)
			}
		})
	}

	// A symlink inside the root is followed.
	ws := newWorkspaces(t)
	if err := os.MkdirAll(filepath.Join(ws.Root(), "real"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(ws.Root(), "real"), filepath.Join(ws.Root(), "alias")); err != nil {
		t.Fatal(err)
	}
	if _, err := ws.User("alias", "u"); err != nil {
		t.Errorf("symlink inside root refused: %v", err)
	}

	// A user whose directory is swapped for a symlink after User() is
	// refused by the next operation.
	u := mustUser(t, ws, "c2", "u")
	if err := os.MkdirAll(filepath.Join(ws.Root(), "c2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, u.Dir); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Init(ctx(t), workspace.InitOptions{RepoURL: "/nonexistent", ThreadID: "t"}); !errors.Is(err, workspace.ErrOutsideRoot) {
		t.Errorf("Init through a swapped symlink = %v, want ErrOutsideRoot", err)
	}
}

// TestLocalRepositoryInsideTheRootIsRefused: a job cannot clone another
// user's workspace by naming its path.
func TestLocalRepositoryInsideTheRootIsRefused(t *testing.T) {
	g := workspacetest.NewGit(t)
	remote := workspacetest.NewRemote(t, g, plainSite())
	ws := newWorkspaces(t)
	victim := mustUser(t, ws, "c", "victim")
	mustInit(t, victim, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "t1"})
	thief := mustUser(t, ws, "c", "thief")
	for _, repo := range []string{victim.ProjectDir, "file://" + victim.ProjectDir, ws.Root() + "/c/../c/victim/project"} {
		if _, err := thief.Init(ctx(t), workspace.InitOptions{RepoURL: repo, ThreadID: "t1"}); !errors.Is(err, workspace.ErrInvalidRepoURL) {
			t.Errorf("Init from %s = %v, want ErrInvalidRepoURL", repo, err)
		}
	}
}

// TestNodeModulesLinkIsRefused: a repository holding node_modules as a link
// is not installed (npm ci would empty the link's target).
func TestNodeModulesLinkIsRefused(t *testing.T) {
	g := workspacetest.NewGit(t)
	victim := t.TempDir()
	if err := os.WriteFile(filepath.Join(victim, "precious.txt"), []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	remote := workspacetest.NewRemote(t, g, workspacetest.SiteFiles())
	work := t.TempDir()
	g.Run(work, "clone", "-q", remote.Dir, "w")
	w := filepath.Join(work, "w")
	if err := os.Symlink(victim, filepath.Join(w, "node_modules")); err != nil {
		t.Fatal(err)
	}
	g.Run(w, "add", "-f", "node_modules")
	g.Run(w, "commit", "-q", "-m", "link node_modules")
	g.Run(w, "push", "-q", "origin", "HEAD")

	u := mustUser(t, newWorkspaces(t), "c", "u")
	_, err := u.Init(ctx(t), workspace.InitOptions{RepoURL: remote.URL, ThreadID: "t1"})
	var ie *workspace.InstallError
	if !errors.As(err, &ie) || !strings.Contains(ie.Output, "node_modules is not a directory") {
		t.Fatalf("Init with a node_modules link = %v, want an InstallError about node_modules", err)
	}
	if b, err := os.ReadFile(filepath.Join(victim, "precious.txt")); err != nil || string(b) != "keep me" {
		t.Errorf("the link's target was touched: %q, %v", b, err)
	}
}
