package systemtest

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/fakeanthropic"
	"github.com/webordinary/claude-code-astro/jobs"
)

// TestDiskQuotaFailsTheJobAndKeepsTheWorkspaceUsable: alice's agent, as
// her uid, writes 40 MB into a workspace allowed 16 (TENANT_DISK_MB) and
// edits a page. The job fails with quota_exceeded; nothing is committed
// or pushed, the big file and the edit are gone; her next job runs and
// commits.
func TestDiskQuotaFailsTheJobAndKeepsTheWorkspaceUsable(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	h.start(map[string]string{"TENANT_DISK_MB": "16"})
	h.send(initJob("i1", "alice", "t1"))
	if r := h.final("i1", 60*time.Second); r.Status != jobs.StatusSucceeded {
		t.Fatalf("init: %+v", r.Error)
	}
	project := h.projectDir("alice")
	page := filepath.Join(project, "src/pages/index.astro")
	head := func() string { return strings.TrimSpace(h.git.Run(project, "rev-parse", "HEAD")) }
	before, remoteBefore := head(), h.remote.Rev("thread-t1")

	h.api.SetScript(append([]fakeanthropic.Step{
		fakeanthropic.Bash("head -c 40000000 /dev/zero > " + filepath.Join(project, "big.bin") + " && echo written"),
	}, fakeanthropic.EditFile(page, "<h1>Hello</h1>", "<h1>Over quota</h1>", "Done.")...)...)
	h.send(execJob("e1", "alice", "t1", "Write a big file"))
	r := h.final("e1", 2*time.Minute)
	if r.Status != jobs.StatusFailed || r.Error == nil || r.Error.Code != jobs.CodeQuotaExceeded {
		t.Fatalf("a job past its quota: %s %+v, want quota_exceeded", r.Status, r.Error)
	}
	if r.Commit != "" || head() != before || h.remote.Rev("thread-t1") != remoteBefore {
		t.Errorf("something was committed or pushed: commit %q, head %s (was %s)", r.Commit, head(), before)
	}
	if _, err := os.Stat(filepath.Join(project, "big.bin")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("big.bin is still there: %v", err)
	}
	if b, _ := os.ReadFile(page); strings.Contains(string(b), "Over quota") {
		t.Error("the failed job's edit is still in the working tree")
	}

	h.api.SetScript(fakeanthropic.EditFile(page, "<h1>Hello</h1>", "<h1>Within quota</h1>", "Done.")...)
	h.send(execJob("e2", "alice", "t1", "A small edit"))
	r = h.final("e2", 2*time.Minute)
	if r.Status != jobs.StatusSucceeded || r.Commit == "" {
		t.Fatalf("the next job: %s %+v commit %q", r.Status, r.Error, r.Commit)
	}
}
