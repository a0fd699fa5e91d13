package main

import (
	"errors"
	"os"
	"testing"

	"github.com/webordinary/claude-code-astro/internal/testkit/sandboxtest"
	"github.com/webordinary/claude-code-astro/preview"
	"github.com/webordinary/claude-code-astro/workspace"
)

// TestLookupPreview: a cold preview is found through the workspaces' index
// and served as its user's tenant; an unknown one is preview.ErrNoWorkspace.
func TestLookupPreview(t *testing.T) {
	ws, err := workspace.Open(workspace.Config{Root: sandboxtest.Root(t), Sandbox: sandboxtest.New(t), PATH: os.Getenv("PATH"), PreviewID: preview.ID})
	if err != nil {
		t.Fatal(err)
	}
	u, err := ws.User("acme", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Prepare(); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(u.ProjectDir, 0o700); err != nil {
		t.Fatal(err)
	}

	got, err := lookupPreview(ws, preview.ID("acme", "alice"))
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != preview.ID("acme", "alice") || got.Key != u.Tenant.Key || got.Dir != u.ProjectDir || got.ThreadID != "" ||
		got.As.Home != u.HomeDir || got.As.Credential == nil || got.As.Credential.Uid != u.Tenant.UID {
		t.Errorf("lookupPreview = %+v, want alice's project as her tenant (uid %d)", got, u.Tenant.UID)
	}
	if _, err := lookupPreview(ws, preview.ID("acme", "bob")); !errors.Is(err, preview.ErrNoWorkspace) {
		t.Errorf("an unknown preview: %v, want preview.ErrNoWorkspace", err)
	}
}
