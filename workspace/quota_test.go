package workspace_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/webordinary/claude-code-astro/workspace"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// TestCheckQuota: a workspace within its quota passes; one past it, or one
// with a directory its tenant made unreadable (its size cannot be known),
// is over quota.
func TestCheckQuota(t *testing.T) {
	g := workspacetest.NewGit(t)
	remote := workspacetest.NewRemote(t, g, plainSite())
	ws := newWorkspaces(t)
	u := mustUser(t, ws, "c", "u")
	mustInit(t, u, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "t1"})

	use, err := u.CheckQuota(ctx(t), workspace.Quota{Bytes: 1 << 30, Inodes: 1 << 20})
	if err != nil || use.Bytes <= 0 || use.Inodes <= 0 {
		t.Fatalf("within the quota: %+v, %v", use, err)
	}
	if _, err := u.CheckQuota(ctx(t), workspace.Quota{Inodes: 2}); !errors.Is(err, workspace.ErrQuotaExceeded) {
		t.Errorf("past the inode quota: %v, want ErrQuotaExceeded", err)
	}
	hidden := filepath.Join(u.ProjectDir, "hidden")
	workspacetest.WriteOwned(t, filepath.Join(hidden, "big.bin"), "data")
	if err := os.Chmod(hidden, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(hidden, 0o755) })
	if _, err := u.CheckQuota(ctx(t), workspace.Quota{Bytes: 1 << 30, Inodes: 1 << 20}); !errors.Is(err, workspace.ErrQuotaExceeded) {
		t.Errorf("with an unreadable directory: %v, want ErrQuotaExceeded", err)
	}
}
