package agent

import (
	"context"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/procfs"
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
	deadline := time.Now().Add(10 * time.Second)
	for orphan.PID == 0 {
		for _, p := range tree.members() {
			if p.SID == p.PID && p.PID != cmd.Process.Pid {
				orphan = p
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the setsid child never showed in the tree")
		}
		time.Sleep(10 * time.Millisecond)
	}

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
