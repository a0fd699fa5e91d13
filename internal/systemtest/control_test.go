package systemtest

import (
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/fakeanthropic"
	"github.com/webordinary/claude-code-astro/internal/testkit/sqstest"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/jobs"
)

// plainHeadings edits the small test site's <h1>.
var plainHeadings = headingDeciderOf(func(text string) string { return "<h1>" + text + "</h1>" })

func cancelJob(id, user, target string) jobs.Job {
	return jobs.Job{Type: jobs.TypeCancel, JobID: id, ClientID: "acme", UserID: user, TargetJobID: target}
}

// logTime returns the time of the first log line of p whose msg is msg
// and whose fields hold want.
func logTime(t *testing.T, p *proc, msg string, want map[string]any) (time.Time, bool) {
	t.Helper()
	for _, l := range logLines(t, p.logs.String()) {
		if l["msg"] != msg {
			continue
		}
		ok := true
		for k, v := range want {
			if l[k] != v {
				ok = false
			}
		}
		if !ok {
			continue
		}
		ts, err := time.Parse(time.RFC3339Nano, l["time"].(string))
		if err != nil {
			t.Fatalf("log time %v: %v", l["time"], err)
		}
		return ts, true
	}
	return time.Time{}, false
}

// TestCancelRunningAcrossWorkers: two workers on one queue and one root.
// Worker A runs an execute whose agent has edited the page and then waits
// on the API; the cancel goes to worker B (A takes no message meanwhile).
// A stops the agent within 2 s of B's receipt, commits the edit as
// "(cancelled)" and pushes it, answers cancelled; B answers "running". The
// thread's next execute resumes the conversation, and no process of the
// tenant is left.
func TestCancelRunningAcrossWorkers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	front := sqstest.NewPausableFront(t, h.emu.URL)
	a := h.start(map[string]string{"AWS_ENDPOINT_URL": front.URL})
	h.send(initJob("i1", "cy", "t1"))
	if r := h.final("i1", 3*time.Minute); r.Status != jobs.StatusSucceeded {
		t.Fatalf("init: %+v", r.Error)
	}

	page := h.projectDir("cy") + "/src/pages/index.astro"
	h.api.SetDecider(func(req *fakeanthropic.Request) fakeanthropic.Step {
		switch req.Turn {
		case 0:
			return fakeanthropic.Read(page)
		case 1:
			return fakeanthropic.Edit(page, "<h1>Hello</h1>", "<h1>Half done</h1>")
		}
		return fakeanthropic.Hang() // the agent thinks, and thinks
	})
	const instruction = "Rework the whole home page"
	h.send(execJob("e1", "cy", "t1", instruction))
	wait.For(t, 2*time.Minute, "the agent to edit the page and wait on the API", func() bool {
		for _, r := range h.api.MessageRequests() {
			if r.Turn == 2 {
				return true
			}
		}
		return false
	})
	front.Pause()
	b := h.start(nil)

	h.send(cancelJob("c1", "cy", "e1"))
	c := h.final("c1", time.Minute)
	e := h.final("e1", time.Minute)
	if c.Status != jobs.StatusSucceeded || c.Cancelled != jobs.CancelRunning {
		t.Errorf("cancel answered %+v %+v, want succeeded, cancelled running", c, c.Error)
	}
	if e.Status != jobs.StatusFailed || e.Error == nil || e.Error.Code != jobs.CodeCancelled || e.Commit == "" || e.Pushed == nil || !*e.Pushed {
		t.Fatalf("the cancelled execute answered %+v %+v: want cancelled, its edit committed and pushed", e, e.Error)
	}
	if !strings.Contains(e.Error.Message, "c1") {
		t.Errorf("the cancelled job's message does not name the cancel: %q", e.Error.Message)
	}

	if _, ok := logTime(t, b, "cancel delivered", map[string]any{"job_id": "c1"}); !ok {
		t.Fatal("worker B did not deliver the cancel")
	}
	if _, ok := logTime(t, a, "cancel delivered", map[string]any{"job_id": "c1"}); ok {
		t.Fatal("worker A received the cancel: the test did not cross workers")
	}
	received, err := time.Parse(time.RFC3339Nano, c.ReceivedAt)
	if err != nil {
		t.Fatalf("the cancel's receivedAt %q: %v", c.ReceivedAt, err)
	}
	stopped, ok := logTime(t, a, "agent finished", nil)
	if !ok {
		t.Fatal("worker A did not log the agent's end")
	}
	took := stopped.Sub(received)
	t.Logf("agent stopped on worker A %s after worker B received the cancel", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("the agent stopped %s after the cancel's receipt, want within 2 s", took)
	}

	subject := h.git.Run(h.remote.Dir, "log", "-1", "--format=%s", "thread-t1")
	if want := "Thread t1: " + instruction + " (cancelled)"; subject != want {
		t.Errorf("remote thread-t1 head %q, want %q", subject, want)
	}
	if page := h.git.Run(h.remote.Dir, "show", "thread-t1:src/pages/index.astro"); !strings.Contains(page, "Half done") {
		t.Errorf("the edit made before the stop is not on the remote:\n%s", page)
	}
	uid := owner(t, h.projectDir("cy"))
	wait.For(t, 10*time.Second, "no process of the tenant", func() bool { return len(processesOf(uid)) == 0 })

	// The conversation goes on where it stopped.
	front.Resume()
	h.api.SetDecider(nil)
	h.api.SetScript(fakeanthropic.Text("Picking up where I stopped."))
	h.send(execJob("e2", "cy", "t1", "Go on"))
	if r := h.final("e2", 2*time.Minute); r.Status != jobs.StatusSucceeded || r.Claude == nil || r.Claude.SessionID != e.Claude.SessionID {
		t.Fatalf("next execute: %+v %+v", r, r.Error)
	}
	last, _ := h.api.LastMessageRequest()
	if !last.Contains(instruction) || !last.Contains("Half done") {
		t.Error("the next execute's request does not hold the cancelled job's turns: the session was not resumed")
	}
}

// TestCancelQueuedFinishedUnknown, on one worker: a job waiting behind its
// user's running job is answered cancelled without running ("queued"); a
// job that answered is left alone ("finished"); a job nobody has seen is
// "unknown" and, when it comes later, after a restart of the worker, is
// answered cancelled without running.
func TestCancelQueuedFinishedUnknown(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	p := h.start(nil)
	h.send(initJob("i1", "dee", "t1"))
	if r := h.final("i1", 3*time.Minute); r.Status != jobs.StatusSucceeded {
		t.Fatalf("init: %+v", r.Error)
	}
	p.stop(syscall.SIGTERM, 30*time.Second)

	// Both sent before the worker starts: it receives them together, and
	// the second waits in the user's lane behind the first.
	h.api.SetDecider(func(req *fakeanthropic.Request) fakeanthropic.Step {
		if req.Contains("Wait forever") {
			return fakeanthropic.Hang()
		}
		return fakeanthropic.Text("done")
	})
	h.send(execJob("slow", "dee", "t1", "Wait forever"))
	h.send(execJob("waiting", "dee", "t1", "Never run this"))
	p = h.start(nil)
	wait.For(t, 2*time.Minute, "the slow job to reach the API", func() bool { return len(h.api.MessageRequests()) > 0 })
	h.send(cancelJob("c-waiting", "dee", "waiting"))
	if c := h.final("c-waiting", time.Minute); c.Cancelled != jobs.CancelQueued {
		t.Errorf("cancel of the waiting job: %+v %+v, want queued", c, c.Error)
	}
	h.send(cancelJob("c-slow", "dee", "slow"))
	if c := h.final("c-slow", time.Minute); c.Cancelled != jobs.CancelRunning {
		t.Errorf("cancel of the running job: %+v, want running", c)
	}
	for _, id := range []string{"slow", "waiting"} {
		if r := h.final(id, time.Minute); r.Error == nil || r.Error.Code != jobs.CodeCancelled {
			t.Errorf("%s: %+v %+v, want cancelled", id, r, r.Error)
		}
	}
	for _, r := range h.api.MessageRequests() {
		if r.Contains("Never run this") {
			t.Error("the cancelled waiting job reached the agent")
		}
	}

	refs := h.git.Run(h.remote.Dir, "for-each-ref")
	h.send(cancelJob("c-init", "dee", "i1"))
	if c := h.final("c-init", time.Minute); c.Cancelled != jobs.CancelFinished {
		t.Errorf("cancel of a finished job: %+v, want finished", c)
	}
	if now := h.git.Run(h.remote.Dir, "for-each-ref"); now != refs {
		t.Errorf("the cancel of a finished job changed the remote:\n%s\nnow:\n%s", refs, now)
	}
	h.send(cancelJob("c-later", "dee", "later"))
	if c := h.final("c-later", time.Minute); c.Cancelled != jobs.CancelUnknown {
		t.Errorf("cancel of a job nobody has seen: %+v, want unknown", c)
	}

	// A restart later the job comes, and is not run.
	p.stop(syscall.SIGTERM, 30*time.Second)
	h.start(nil)
	before := len(h.api.MessageRequests())
	h.send(execJob("later", "dee", "t1", "Arrives after its cancel"))
	if r := h.final("later", time.Minute); r.Error == nil || r.Error.Code != jobs.CodeCancelled || !strings.Contains(r.Error.Message, "before it started") {
		t.Errorf("the job cancelled before it came: %+v %+v", r, r.Error)
	}
	if n := len(h.api.MessageRequests()); n != before {
		t.Error("the job cancelled before it came reached the agent")
	}
}

// TestRevertJobs: three edits on a thread, a revert of the last one and one
// back to the first edit, each by a freshly started worker; the remote's
// branch holds the revert commits over the history; bad targets change
// nothing.
func TestRevertJobs(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	h.api.SetDecider(plainHeadings)
	p := h.start(nil)
	h.send(initJob("i1", "eve", "t1"))
	if r := h.final("i1", 3*time.Minute); r.Status != jobs.StatusSucceeded {
		t.Fatalf("init: %+v", r.Error)
	}
	page := h.projectDir("eve") + "/src/pages/index.astro"
	headings := []string{"Hello", "One", "Two", "Three"}
	var commits []string
	for i := 1; i < len(headings); i++ {
		id := "e" + headings[i]
		h.send(headingJob(id, "eve", "t1", page, headings[i-1], headings[i]))
		r := h.final(id, 2*time.Minute)
		if r.Status != jobs.StatusSucceeded || r.Commit == "" {
			t.Fatalf("execute %s: %+v %+v", id, r, r.Error)
		}
		commits = append(commits, r.Commit)
	}
	remotePage := func() string {
		return h.git.Run(h.remote.Dir, "show", "thread-t1:src/pages/index.astro")
	}
	restart := func() {
		p.stop(syscall.SIGTERM, 30*time.Second)
		p = h.start(nil)
	}
	revert := func(id string, steps int, to string) jobs.Response {
		h.send(jobs.Job{Type: jobs.TypeRevert, JobID: id, ClientID: "acme", UserID: "eve", ThreadID: "t1", Steps: steps, ToCommit: to})
		return h.final(id, time.Minute)
	}

	restart()
	r := revert("r1", 1, "")
	if r.Status != jobs.StatusSucceeded || r.Commit == "" || !slices.Equal(r.RevertedCommits, commits[2:]) ||
		!slices.Equal(r.FilesChanged, []string{"src/pages/index.astro"}) || r.Pushed == nil || !*r.Pushed {
		t.Fatalf("revert 1 step: %+v %+v", r, r.Error)
	}
	if !strings.Contains(remotePage(), "<h1>Two</h1>") {
		t.Errorf("the remote's page after undoing Three:\n%s", remotePage())
	}
	if head := h.git.Run(h.remote.Dir, "rev-parse", "thread-t1"); head != r.Commit {
		t.Errorf("remote head %s, want the revert commit %s", head, r.Commit)
	}

	restart()
	r = revert("r2", 0, commits[0])
	if r.Status != jobs.StatusSucceeded || !slices.Equal(r.RevertedCommits, commits[1:2]) {
		t.Fatalf("revert to the first edit: %+v %+v", r, r.Error)
	}
	if !strings.Contains(remotePage(), "<h1>One</h1>") {
		t.Errorf("the remote's page after reverting to One:\n%s", remotePage())
	}
	log := h.git.Run(h.remote.Dir, "log", "--format=%s", "thread-t1")
	if !strings.HasPrefix(log, "Thread t1: revert 1 job commit\nThread t1: revert 1 job commit\nThread t1: Change the heading") {
		t.Errorf("remote history:\n%s", log)
	}
	for _, c := range commits {
		if _, err := h.git.Try(h.remote.Dir, "merge-base", "--is-ancestor", c, "thread-t1"); err != nil {
			t.Errorf("commit %s left the branch: history rewritten", c)
		}
	}

	head := h.git.Run(h.remote.Dir, "rev-parse", "thread-t1")
	h.send(initJob("i2", "eve", "other"))
	h.final("i2", time.Minute)
	h.send(headingJob("o1", "eve", "other", page, "Hello", "Other"))
	other := h.final("o1", 2*time.Minute).Commit
	for _, bad := range []struct {
		id, to string
		steps  int
	}{{"bad-commit", other, 0}, {"missing-commit", strings.Repeat("f", 40), 0}, {"too-many", "", 5}} {
		r := revert(bad.id, bad.steps, bad.to)
		if r.Status != jobs.StatusFailed || r.Error == nil || r.Error.Code != jobs.CodeInvalidJob {
			t.Errorf("revert %s: %+v %+v, want invalid_job", bad.id, r, r.Error)
		}
	}
	if now := h.git.Run(h.remote.Dir, "rev-parse", "thread-t1"); now != head {
		t.Errorf("invalid reverts moved the remote branch")
	}
}

// TestForkThread: a thread forked from another starts at its commits and
// remembers its conversation; after that the two go on separately. Each
// job runs on a freshly started worker.
func TestForkThread(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	h.api.SetDecider(plainHeadings)
	p := h.start(nil)
	restart := func() {
		p.stop(syscall.SIGTERM, 30*time.Second)
		p = h.start(nil)
	}
	page := h.projectDir("fay") + "/src/pages/index.astro"
	h.send(initJob("i1", "fay", "main-line"))
	h.final("i1", 3*time.Minute)
	h.send(headingJob("p1", "fay", "main-line", page, "Hello", "Parent heading"))
	parent := h.final("p1", 2*time.Minute)
	if parent.Status != jobs.StatusSucceeded {
		t.Fatalf("parent execute: %+v", parent.Error)
	}

	restart()
	h.send(jobs.Job{Type: jobs.TypeInit, JobID: "fork", ClientID: "acme", UserID: "fay", ThreadID: "side-line", FromThreadID: "main-line"})
	f := h.final("fork", time.Minute)
	if f.Status != jobs.StatusSucceeded || f.ForkedFrom != "main-line" || f.Branch != "thread-side-line" || f.Resumed == nil || *f.Resumed {
		t.Fatalf("fork: %+v %+v", f, f.Error)
	}

	restart()
	h.send(headingJob("s1", "fay", "side-line", page, "Parent heading", "Side heading"))
	side := h.final("s1", 2*time.Minute)
	if side.Status != jobs.StatusSucceeded || side.Claude == nil || side.Claude.SessionID == parent.Claude.SessionID {
		t.Fatalf("the fork's execute: %+v %+v", side, side.Error)
	}
	forkedTurns := false
	for _, r := range h.api.MessageRequests() {
		if r.Turn == 0 && r.Contains(`to \"Side heading\"`) {
			forkedTurns = r.Contains(`from \"Hello\" to \"Parent heading\"`) && r.Contains("The heading now says Parent heading.")
		}
	}
	if !forkedTurns {
		t.Error("the fork's first call does not hold the parent's conversation")
	}
	if _, err := h.git.Try(h.remote.Dir, "merge-base", "--is-ancestor", parent.Commit, "thread-side-line"); err != nil {
		t.Error("the fork's branch does not hold the parent's commit")
	}

	restart()
	h.send(headingJob("p2", "fay", "main-line", page, "Parent heading", "Parent again"))
	if r := h.final("p2", 2*time.Minute); r.Status != jobs.StatusSucceeded || r.Claude.SessionID != parent.Claude.SessionID {
		t.Fatalf("the parent's next execute: %+v %+v", r, r.Error)
	}
	last, _ := h.api.LastMessageRequest()
	if last.Contains("Side heading") {
		t.Error("the parent's conversation holds the fork's turns")
	}
	if !strings.Contains(h.git.Run(h.remote.Dir, "show", "thread-main-line:src/pages/index.astro"), "Parent again") ||
		!strings.Contains(h.git.Run(h.remote.Dir, "show", "thread-side-line:src/pages/index.astro"), "Side heading") {
		t.Error("the two threads' pages did not go their own ways")
	}

	h.send(jobs.Job{Type: jobs.TypeInit, JobID: "bad-fork", ClientID: "acme", UserID: "fay", ThreadID: "t3", FromThreadID: "no-such"})
	if r := h.final("bad-fork", time.Minute); r.Error == nil || r.Error.Code != jobs.CodeInvalidJob {
		t.Errorf("fork of a thread that does not exist: %+v %+v", r, r.Error)
	}
}
