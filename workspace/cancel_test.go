package workspace_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/workspace"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

func TestCancellation(t *testing.T) {
	g := workspacetest.NewGit(t)

	t.Run("cancelled before clone", func(t *testing.T) {
		remote := workspacetest.NewRemote(t, g, plainSite())
		u := mustUser(t, newWorkspaces(t), "c", "u")
		c, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := u.Init(c, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "t"}); !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
		if exists(u.ProjectDir) {
			t.Error("cancelled init left a project")
		}
	})

	t.Run("installer killed at deadline", func(t *testing.T) {
		requireNpm(t)
		remote := workspacetest.NewRemote(t, g, map[string]string{
			// The script's child (sleep) must die with it: the whole
			// process group is killed.
			"package.json": `{"name":"site","version":"1.0.0","private":true,"scripts":{"preinstall":"sleep 600"}}`,
		})
		u := mustUser(t, newWorkspaces(t), "c", "u")
		c, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := u.Init(c, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "t"})
		var ie *workspace.InstallError
		if !errors.As(err, &ie) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want InstallError wrapping DeadlineExceeded", err)
		}
	})
}
