package site_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/webordinary/claude-code-astro/internal/agent"
	"github.com/webordinary/claude-code-astro/internal/testkit/sandboxtest"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/jobs/site"
	"github.com/webordinary/claude-code-astro/workspace"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// TestQuotaStopsAJobWhileItWrites: the agent's tool, a real process of the
// tenant's uid, writes without end; the watcher measures the workspace
// while the job runs and stops it past its quota. The job fails with
// quota_exceeded, nothing is committed, the file is gone, and the next job
// commits.
func TestQuotaStopsAJobWhileItWrites(t *testing.T) {
	sandboxtest.RequireRoot(t)
	e := newEnv(t, workspacetest.NewGit(t), "quota")
	e.h = site.New(site.Config{Workspaces: e.ws, Agent: e.agent, Preview: e.preview, PreviewURL: previewURL,
		Quota: workspace.Quota{Bytes: 16 << 20, Inodes: 10000}, QuotaEvery: 100e6})
	writeForever := func(t *testing.T, ctx context.Context, req agent.Request, _ func(agent.Progress)) (agent.Result, error) {
		cmd := exec.CommandContext(ctx, "/bin/sh", "-c", "while :; do head -c 1048576 /dev/zero >> big.bin; done")
		cmd.Dir, cmd.Env = req.ProjectDir, []string{"PATH=/usr/bin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: req.Credential, Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		workspacetest.WriteOwned(t, filepath.Join(req.ProjectDir, page), "<h1>Half done</h1>\n")
		err := cmd.Run() // until the job's context ends
		return agent.Result{SessionID: "s1"}, &agent.Error{Code: agent.CodeCancelled, Message: "the agent was stopped", Err: err}
	}
	runStep(t, e, 0, step{job: initJob("i1", "t1")})
	runStep(t, e, 1, step{job: execJob("e1", "t1", "write without end"), agent: writeForever, wantCode: jobs.CodeQuotaExceeded,
		check: func(t *testing.T, e *env, resp jobs.Response) {
			if resp.Commit != "" || e.head() != e.heads[1] {
				t.Errorf("committed %q; head %s, was %s", resp.Commit, e.head(), e.heads[1])
			}
			if _, err := os.Stat(filepath.Join(e.u.ProjectDir, "big.bin")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("big.bin is still there: %v", err)
			}
			if got := e.read(t, page); got == "<h1>Half done</h1>\n" {
				t.Error("the stopped job's edit is still in the working tree")
			}
		}})
	runStep(t, e, 2, step{job: execJob("e2", "t1", "a small edit"), agent: edit("s1", map[string]string{page: "<h1>Small</h1>\n"}), wantSession: "s1",
		check: func(t *testing.T, e *env, resp jobs.Response) {
			committed(t, e, resp, page)
		}})
}
