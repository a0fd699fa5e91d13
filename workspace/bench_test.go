package workspace_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/webordinary/claude-code-astro/workspace"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// BenchmarkInitResume measures an init of an existing thread on a prepared
// workspace (fetch, checkout, lockfile check, metadata). Goal: < 500 ms.
func BenchmarkInitResume(b *testing.B) {
	requireNpm(b)
	g := workspacetest.NewGit(b)
	remote := workspacetest.NewRemote(b, g, workspacetest.SiteFiles())
	u := mustUser(b, newWorkspaces(b), "c", "u")
	mustInit(b, u, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "t"})
	b.ResetTimer()
	for b.Loop() {
		res := mustInit(b, u, workspace.InitOptions{ThreadID: "t"})
		if !res.Resumed || res.Cloned || res.Installed {
			b.Fatalf("init = %+v", res)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/init")
}

// BenchmarkSwitchAndCommit measures switching to another thread plus a
// one-file commit. Goal: < 100 ms.
func BenchmarkSwitchAndCommit(b *testing.B) {
	requireNpm(b)
	g := workspacetest.NewGit(b)
	remote := workspacetest.NewRemote(b, g, workspacetest.SiteFiles())
	u := mustUser(b, newWorkspaces(b), "c", "u")
	for _, th := range []string{"a", "b"} {
		mustInit(b, u, workspace.InitOptions{RepoURL: remote.URL, ThreadID: th})
	}
	threads := []string{"a", "b"}
	i := 0
	b.ResetTimer()
	for b.Loop() {
		th := threads[i%2]
		if _, err := u.SwitchThread(ctx(b), th); err != nil {
			b.Fatal(err)
		}
		writeFile(b, filepath.Join(u.ProjectDir, "page.html"), fmt.Sprintf("edit %d\n", i))
		c, err := u.Commit(ctx(b), th, fmt.Sprintf("job-%d", i), "edit the page")
		if err != nil || c.SHA == "" {
			b.Fatalf("commit = %+v %v", c, err)
		}
		i++
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/switch+commit")
}
