package systemtest

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/jobs"
)

// TestBusyWorkspaceIsRetriedNotRunTwice holds a user's workspace lock as
// another worker sharing the volume would: the worker does not touch the
// workspace meanwhile, and runs the job once the lock is free.
func TestBusyWorkspaceIsRetriedNotRunTwice(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	p := h.start(nil)
	h.send(initJob("i1", "kim", "t1"))
	h.final("i1", 60*time.Second)

	lock, err := os.OpenFile(filepath.Join(h.root, "acme", "kim", ".lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	h.api.SetScript(editHeading(h.projectDir("kim") + "/src/pages/index.astro")...)
	h.send(execJob("e1", "kim", "t1", "Change the heading"))
	wait.For(t, 30*time.Second, "the worker to find the workspace busy", func() bool {
		return strings.Contains(p.logs.String(), "job cannot start now")
	})
	if n := len(h.api.MessageRequests()); n != 0 {
		t.Errorf("the agent ran %d times while another process held the workspace", n)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	r := h.final("e1", 90*time.Second)
	if r.Status != jobs.StatusSucceeded || r.Commit == "" {
		t.Errorf("after the lock was let go: %+v %+v", r, r.Error)
	}
	h.responses.Poll(t, 2*time.Second)
	n := 0
	for _, resp := range h.responses.Final() {
		if resp.JobID == "e1" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d final responses for e1, want 1", n)
	}
}
