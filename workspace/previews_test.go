package workspace_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/webordinary/claude-code-astro/internal/testkit/sandboxtest"
	"github.com/webordinary/claude-code-astro/preview"
	"github.com/webordinary/claude-code-astro/workspace"
)

// withProject prepares client/user's workspace (as a job's lock does) and,
// when project, gives it a project directory.
func withProject(tb testing.TB, ws *workspace.Workspaces, client, user string, project bool) *workspace.User {
	tb.Helper()
	u := mustUser(tb, ws, client, user)
	if err := u.Prepare(); err != nil {
		tb.Fatal(err)
	}
	if project {
		if err := os.Mkdir(u.ProjectDir, 0o700); err != nil {
			tb.Fatal(err)
		}
	}
	return u
}

// TestUserOfPreview: a preview id leads to its user through the index the
// jobs keep, and to nobody else's.
func TestUserOfPreview(t *testing.T) {
	ws := newWorkspaces(t, func(c *workspace.Config) { c.PreviewID = preview.ID })
	withProject(t, ws, "acme", "alice", true)
	withProject(t, ws, "acme", "Alice", true) // a preview id of its own, despite the slug
	withProject(t, ws, "acme", "bob", false)  // prepared, never cloned
	// An index file that names a user whose preview is another id.
	forged := filepath.Join(ws.Root(), ".previews", "forged")
	if err := os.WriteFile(forged, []byte(`{"clientId":"acme","userId":"alice"}`), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, id   string
		wantClient string // "" wants ErrNoPreview
		wantUser   string
	}{
		{"a user with a project", preview.ID("acme", "alice"), "acme", "alice"},
		{"ids that differ in case only", preview.ID("acme", "Alice"), "acme", "Alice"},
		{"a user without a project", preview.ID("acme", "bob"), "", ""},
		{"no such user", preview.ID("acme", "carol"), "", ""},
		{"an entry that is not its id's", "forged", "", ""},
		{"empty", "", "", ""},
		{"dot-dot", "..", "", ""},
		{"a path", "../acme", "", ""},
		{"the index itself", ".previews", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := ws.UserOfPreview(tc.id)
			if tc.wantClient == "" {
				if !errors.Is(err, workspace.ErrNoPreview) {
					t.Fatalf("UserOfPreview(%q) = %v, %v; want ErrNoPreview", tc.id, u, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("UserOfPreview(%q): %v", tc.id, err)
			}
			want := mustUser(t, ws, tc.wantClient, tc.wantUser)
			if u.ClientID != tc.wantClient || u.UserID != tc.wantUser || u.ProjectDir != want.ProjectDir || u.Tenant.Key != want.Tenant.Key {
				t.Errorf("UserOfPreview(%q) = %s/%s at %s, want %s/%s at %s", tc.id, u.ClientID, u.UserID, u.ProjectDir, tc.wantClient, tc.wantUser, want.ProjectDir)
			}
		})
	}
}

// TestUserOfPreviewReadsOnlyTheIndex: the lookup is the index file, not a
// walk of the root: a user directory the index does not name is not found
// (a walk would find it).
func TestUserOfPreviewReadsOnlyTheIndex(t *testing.T) {
	ws := newWorkspaces(t, func(c *workspace.Config) { c.PreviewID = preview.ID })
	withProject(t, ws, "acme", "alice", true)
	// A workspace made behind the index's back, after Open.
	if err := os.MkdirAll(filepath.Join(ws.Root(), "acme", "dave", "project"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := ws.UserOfPreview(preview.ID("acme", "dave")); !errors.Is(err, workspace.ErrNoPreview) {
		t.Errorf("an unindexed user: %v, want ErrNoPreview", err)
	}
	if u, err := ws.UserOfPreview(preview.ID("acme", "alice")); err != nil || u.UserID != "alice" {
		t.Errorf("an indexed user: %v, %v", u, err)
	}
}

// TestOpenIndexesExistingWorkspaces: workspaces made before the index was
// kept are found once the root is opened with it.
func TestOpenIndexesExistingWorkspaces(t *testing.T) {
	sb, root := sandboxtest.New(t), sandboxtest.Root(t)
	open := func(id func(client, user string) string) *workspace.Workspaces {
		t.Helper()
		ws, err := workspace.Open(workspace.Config{Root: root, Sandbox: sb, PATH: os.Getenv("PATH"), PreviewID: id})
		if err != nil {
			t.Fatal(err)
		}
		return ws
	}
	old := open(nil)
	withProject(t, old, "acme", "alice", true)
	withProject(t, old, "acme", "bob", false)
	if _, err := os.Stat(filepath.Join(root, ".previews")); err == nil {
		t.Fatal("workspaces without PreviewID wrote a preview index")
	}
	if _, err := old.UserOfPreview(preview.ID("acme", "alice")); err == nil {
		t.Error("UserOfPreview without PreviewID found a user")
	}

	ws := open(preview.ID)
	if u, err := ws.UserOfPreview(preview.ID("acme", "alice")); err != nil || u.UserID != "alice" {
		t.Errorf("a workspace made before the index: %v, %v", u, err)
	}
	if _, err := ws.UserOfPreview(preview.ID("acme", "bob")); !errors.Is(err, workspace.ErrNoPreview) {
		t.Errorf("a user without a project: %v, want ErrNoPreview", err)
	}
	fi, err := os.Stat(filepath.Join(root, ".previews"))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the index directory: %v, %v; want mode 0700", fi, err)
	}
	// The walk is done once per root, not at every start: an entry
	// removed now is not made again by the next Open.
	if err := os.Remove(filepath.Join(root, ".previews", preview.ID("acme", "alice"))); err != nil {
		t.Fatal(err)
	}
	again := open(preview.ID)
	if _, err := again.UserOfPreview(preview.ID("acme", "alice")); !errors.Is(err, workspace.ErrNoPreview) {
		t.Errorf("a second Open walked the root again (alice indexed anew: %v)", err)
	}
}
