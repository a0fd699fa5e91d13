package systemtest

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/fakeanthropic"
	"github.com/webordinary/claude-code-astro/jobs"
)

// TestDiskQuotaFailsTheJobAndKeepsTheWorkspaceUsable: alice's agent, as
// her uid, writes 8 MB into a workspace allowed 6 MB more than it holds
// (TENANT_DISK_MB) and edits a page. The job fails with quota_exceeded;
// nothing is committed or pushed, the big file and the edit are gone; her
// next job runs and commits.
func TestDiskQuotaFailsTheJobAndKeepsTheWorkspaceUsable(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	p := h.start(nil)
	h.send(initJob("i1", "alice", "t1"))
	if r := h.final("i1", 60*time.Second); r.Status != jobs.StatusSucceeded {
		t.Fatalf("init: %+v", r.Error)
	}
	if code, _ := p.stop(syscall.SIGTERM, 25*time.Second); code != 0 {
		t.Fatalf("worker exit %d", code)
	}
	// What the workspace holds now, as the worker measures it.
	user := filepath.Dir(h.projectDir("alice"))
	out, err := exec.Command("du", "-s", "-c", "-x", "-B1", "--", filepath.Join(user, "project"), filepath.Join(user, "home"), filepath.Join(user, ".claude", "agent")).Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	total, _, _ := strings.Cut(lines[len(lines)-1], "\t")
	held, err := strconv.ParseInt(total, 10, 64)
	if err != nil {
		t.Fatalf("du: %q", out)
	}
	quotaMB := held>>20 + 6
	h.start(map[string]string{"TENANT_DISK_MB": strconv.FormatInt(quotaMB, 10)})

	project := h.projectDir("alice")
	page := filepath.Join(project, "src/pages/index.astro")
	head := func() string { return strings.TrimSpace(h.git.Run(project, "rev-parse", "HEAD")) }
	before, remoteBefore := head(), h.remote.Rev("thread-t1")
	h.api.SetScript(append([]fakeanthropic.Step{
		fakeanthropic.Write(filepath.Join(project, "big.txt"), strings.Repeat("x", 8<<20)),
	}, fakeanthropic.EditFile(page, "<h1>Hello</h1>", "<h1>Over quota</h1>", "Done.")...)...)
	h.send(execJob("e1", "alice", "t1", "Write a big file"))
	r := h.final("e1", 2*time.Minute)
	if r.Status != jobs.StatusFailed || r.Error == nil || r.Error.Code != jobs.CodeQuotaExceeded {
		t.Fatalf("a job past its %d MB quota (%d MB held before): %s %+v, want quota_exceeded", quotaMB, held>>20, r.Status, r.Error)
	}
	if r.Commit != "" || head() != before || h.remote.Rev("thread-t1") != remoteBefore {
		t.Errorf("something was committed or pushed: commit %q, head %s (was %s)", r.Commit, head(), before)
	}
	if _, err := os.Stat(filepath.Join(project, "big.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("big.txt is still there: %v", err)
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
