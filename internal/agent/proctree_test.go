package agent

import (
	"context"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/procfs"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
)

func TestProcTreeKillsOrphanedSessions(t *testing.T) {
	// Like the CLI's Bash tool: a child in a session of its own.
	cmd := exec.Command("/bin/sh", "-c", "setsid sleep 300 & exec sleep 301")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sh: %v", err)
	}
	tree := newProcTree(cmd.Process.Pid)

	var orphan procfs.Process
	wait.For(t, 10*time.Second, "the setsid child to show in the tree", func() bool {
		for _, p := range tree.members() {
			if p.SID == p.PID && p.PID != cmd.Process.Pid {
				orphan = p
			}
		}
		return orphan.PID != 0
	})

	// The parent dies first: its child is orphaned, outside the group.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if !running(orphan) {
		t.Fatal("the orphan died with its parent; the test proves nothing")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tree.kill(ctx); err != nil {
		t.Fatalf("kill: %v", err)
	}
	if running(orphan) {
		t.Errorf("orphan %d still runs", orphan.PID)
	}
	if tree.alive() {
		t.Errorf("tree still alive: %+v", tree.members())
	}
}
