package systemtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/agent"
	"github.com/webordinary/claude-code-astro/internal/testkit/fakeanthropic"
	"github.com/webordinary/claude-code-astro/internal/testkit/repo"
	"github.com/webordinary/claude-code-astro/jobs"
)

// promptTexts returns the user prompts a request carried.
func promptTexts(r fakeanthropic.Request) []string {
	var out []string
	for _, m := range r.Messages {
		if m.IsPrompt() {
			out = append(out, m.Text())
		}
	}
	return out
}

func TestSessionsResumePerThread(t *testing.T) {
	t.Parallel()
	for _, cli := range repo.CLIs(t) {
		t.Run(cli.Version, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{cli: cli})
			h.start(nil)
			h.send(initJob("i1", "carol", "a"))
			h.send(initJob("i2", "carol", "b"))
			h.final("i2", 60*time.Second)
			page := h.projectDir("carol") + "/src/pages/index.astro"

			run := func(id, thread, instruction, old, new string) jobs.Response {
				t.Helper()
				h.api.SetScript(fakeanthropic.EditFile(page, old, new, "done: "+instruction)...)
				h.send(execJob(id, "carol", thread, instruction))
				r := h.final(id, 60*time.Second)
				if r.Status != jobs.StatusSucceeded || r.Claude == nil {
					t.Fatalf("%s: %+v %+v", id, r, r.Error)
				}
				return r
			}
			a1 := run("a1", "a", "first instruction on thread a", "<h1>Hello</h1>", "<h1>A one</h1>")
			b1 := run("b1", "b", "first instruction on thread b", "<h1>Hello</h1>", "<h1>B one</h1>")
			a2 := run("a2", "a", "second instruction on thread a", "<h1>A one</h1>", "<h1>A two</h1>")

			if a1.Claude.SessionID == b1.Claude.SessionID {
				t.Errorf("threads a and b share session %s", a1.Claude.SessionID)
			}
			if a2.Claude.SessionID != a1.Claude.SessionID || a2.Claude.FreshSession {
				t.Errorf("thread a's second job used session %s (fresh %v), want %s", a2.Claude.SessionID, a2.Claude.FreshSession, a1.Claude.SessionID)
			}
			last, ok := h.api.LastMessageRequest()
			if !ok {
				t.Fatal("no request recorded")
			}
			prompts := strings.Join(promptTexts(last), "\n")
			if !strings.Contains(prompts, "first instruction on thread a") || !strings.Contains(prompts, "second instruction on thread a") {
				t.Errorf("the resumed session did not send the earlier turn; prompts:\n%s", prompts)
			}
			if strings.Contains(prompts, "thread b") {
				t.Errorf("thread a's session carries thread b's prompt:\n%s", prompts)
			}
			// The record of thread a names its session and both jobs.
			rec, err := os.ReadFile(filepath.Join(h.root, "acme", "carol", ".claude", "threads", "a.json"))
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{a1.Claude.SessionID, `"a1"`, `"a2"`, a2.Commit} {
				if !strings.Contains(string(rec), want) {
					t.Errorf("thread record lacks %s:\n%s", want, rec)
				}
			}

			// A deleted session file: the next job starts a fresh session and says so.
			sessionFile := agent.SessionPath(filepath.Join(h.root, "acme", "carol", ".claude", "agent"), h.projectDir("carol"), a1.Claude.SessionID)
			if err := os.Remove(sessionFile); err != nil {
				t.Fatalf("remove the session file: %v", err)
			}
			a3 := run("a3", "a", "third instruction on thread a", "<h1>A two</h1>", "<h1>A three</h1>")
			if !a3.Claude.FreshSession || a3.Claude.SessionID == a1.Claude.SessionID {
				t.Errorf("after the session file was deleted: session %s fresh %v", a3.Claude.SessionID, a3.Claude.FreshSession)
			}

			// A session found only under another project directory is not
			// resumed (CLIs since 2.1.223 would take it): a fresh session,
			// without that conversation.
			agentDir := filepath.Join(h.root, "acme", "carol", ".claude", "agent")
			elsewhere := agent.SessionPath(agentDir, "/elsewhere/project", a3.Claude.SessionID)
			if err := os.MkdirAll(filepath.Dir(elsewhere), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(agent.SessionPath(agentDir, h.projectDir("carol"), a3.Claude.SessionID), elsewhere); err != nil {
				t.Fatalf("move the session file: %v", err)
			}
			a4 := run("a4", "a", "fourth instruction on thread a", "<h1>A three</h1>", "<h1>A four</h1>")
			if !a4.Claude.FreshSession || a4.Claude.SessionID == a3.Claude.SessionID {
				t.Errorf("a session of another directory was resumed: session %s fresh %v", a4.Claude.SessionID, a4.Claude.FreshSession)
			}
			last, _ = h.api.LastMessageRequest()
			if n := len(promptTexts(last)); n != 1 || last.Contains("done: third instruction") {
				t.Errorf("the fresh session carries the other directory's conversation: %d prompts", n)
			}
		})
	}
}

func TestPlanModeChangesNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	h.start(nil)
	h.send(initJob("i1", "dan", "t1"))
	h.final("i1", 60*time.Second)
	page := h.projectDir("dan") + "/src/pages/index.astro"
	before := h.remote.Rev("thread-t1")
	h.api.SetScript(fakeanthropic.Read(page), fakeanthropic.Text("I would change the heading."))
	j := execJob("p1", "dan", "t1", "How would you change the heading?")
	j.Mode = jobs.ModePlan
	h.send(j)
	r := h.final("p1", 60*time.Second)
	if r.Status != jobs.StatusSucceeded || r.Commit != "" || len(r.FilesChanged) != 0 {
		t.Errorf("plan job: %+v %+v", r, r.Error)
	}
	if r.Claude == nil || r.Claude.Result != "I would change the heading." {
		t.Errorf("claude %+v", r.Claude)
	}
	if got := h.remote.Rev("thread-t1"); got != before {
		t.Errorf("the plan job moved the remote branch: %s -> %s", before, got)
	}
	if status := h.git.Run(h.projectDir("dan"), "status", "--porcelain"); strings.TrimSpace(status) != "" {
		t.Errorf("the plan job left changes: %s", status)
	}
	last, _ := h.api.LastMessageRequest()
	if !strings.Contains(strings.ToLower(last.SystemText()+strings.Join(promptTexts(last), " ")), "plan") {
		t.Logf("note: the CLI's request does not mention plan mode")
	}
}

func TestAgentFailuresAreAnswered(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	h.start(map[string]string{"JOB_TIMEOUT": "8s"})
	h.send(initJob("i1", "erin", "t1"))
	h.final("i1", 60*time.Second)

	h.api.SetScript(fakeanthropic.BadRequest("prompt is too long for this model"))
	h.send(execJob("bad", "erin", "t1", "Something"))
	r := h.final("bad", 60*time.Second)
	if r.Status != jobs.StatusFailed || r.Error.Code != jobs.CodeAgentFailed || !strings.Contains(strings.ToLower(r.Error.Message), "prompt is too long") {
		t.Errorf("API error: %+v", r.Error)
	}

	h.api.SetScript(fakeanthropic.Hang())
	h.send(execJob("hang", "erin", "t1", "Something slow"))
	r = h.final("hang", 60*time.Second)
	if r.Status != jobs.StatusFailed || r.Error.Code != jobs.CodeTimeout {
		t.Errorf("hang: %+v", r.Error)
	}
	waitNoProcesses(t, filepath.Join(h.root, "acme", "erin", ".claude"))

	for _, resp := range h.responses.All {
		b := resp.Error
		if b != nil && strings.Contains(b.Message, testAPIKey) {
			t.Errorf("a response carries the API key: %+v", b)
		}
	}
}

func TestExecuteBeforeInitIsAnswered(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	h.start(nil)
	h.send(execJob("early", "fay", "t1", "Change something"))
	r := h.final("early", 60*time.Second)
	if r.Status != jobs.StatusFailed || r.Error.Code != jobs.CodeNotInitialized {
		t.Errorf("execute before init: %+v", r.Error)
	}

	// A failed clone, as upstream reads it: each step said once.
	bad := initJob("bad-repo", "fay", "t1")
	bad.RepoURL = "/nonexistent/site.git"
	h.send(bad)
	r = h.final("bad-repo", 60*time.Second)
	want := "init workspace: clone repository: git clone: exit status 128: fatal: repository '/nonexistent/site.git' does not exist"
	if r.Status != jobs.StatusFailed || r.Error == nil || r.Error.Code != jobs.CodeGitFailed || r.Error.Message != want {
		t.Errorf("init of a missing repository answered %+v\nwant git_failed %q", r.Error, want)
	}
}

// TestBudgetStopsTheAgentAndKeepsItsWork: the gateway prices the fake
// API's tokens at $200 a million, about $1 a call; the job may spend $2.50.
// An agent that keeps calling tools is refused its fourth call: the job is
// answered budget_exceeded, the edit it made first is committed and pushed,
// and the next execute resumes the same session.
func TestBudgetStopsTheAgentAndKeepsItsWork(t *testing.T) {
	t.Parallel()
	for _, cli := range repo.CLIs(t) {
		t.Run(cli.Version, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{cli: cli})
			h.start(map[string]string{"CLAUDE_MAX_BUDGET_USD": "2.50", "CLAUDE_MODEL": "claude-budget-test",
				"CLAUDE_PRICING": `{"claude-budget-test": {"input": 200, "output": 200, "cacheRead": 0, "cacheWrite": 0}}`})
			h.send(initJob("i1", "gus", "t1"))
			if r := h.final("i1", 60*time.Second); r.Status != jobs.StatusSucceeded {
				t.Fatalf("init: %+v", r.Error)
			}
			page := h.projectDir("gus") + "/src/pages/index.astro"
			script := []fakeStep{fakeanthropic.Read(page), fakeanthropic.Edit(page, "<h1>Hello</h1>", "<h1>Hello, frugal</h1>")}
			for range 20 {
				script = append(script, fakeanthropic.Read(page))
			}
			h.api.SetScript(script...)
			h.send(execJob("e1", "gus", "t1", "Keep editing"))
			r := h.final("e1", 2*time.Minute)
			if r.Status != jobs.StatusFailed || r.Error == nil || r.Error.Code != jobs.CodeBudgetExceeded {
				t.Fatalf("execute past its budget: %+v %+v", r, r.Error)
			}
			if r.Commit == "" || r.Pushed == nil || !*r.Pushed || len(r.FilesChanged) != 1 {
				t.Errorf("the edit before the stop was not committed and pushed: commit %q pushed %v files %v", r.Commit, r.Pushed, r.FilesChanged)
			}
			if got := h.git.Run(h.remote.Dir, "log", "-1", "--format=%s", "thread-t1"); got != "Thread t1: Keep editing (budget exceeded)" {
				t.Errorf("the remote's last commit says %q", got)
			}
			if page := h.git.Run(h.remote.Dir, "show", "thread-t1:src/pages/index.astro"); !strings.Contains(page, "Hello, frugal") {
				t.Errorf("the remote's page lacks the edit:\n%s", page)
			}
			if r.Claude == nil || r.Claude.Usage == nil || r.Claude.SessionID == "" {
				t.Fatalf("claude %+v: want its session and usage", r.Claude)
			}
			calls := 0
			for _, req := range h.api.MessageRequests() {
				if req.Turn >= 0 {
					calls++
				}
			}
			if calls > 4 {
				t.Errorf("the agent made %d calls, want at most 4: the budget did not stop it", calls)
			}

			// The thread goes on in the same session: the next job's prompt comes
			// after the earlier one.
			h.api.SetScript(fakeanthropic.Text("Carrying on."))
			h.send(execJob("e2", "gus", "t1", "Carry on"))
			r2 := h.final("e2", 2*time.Minute)
			if r2.Status != jobs.StatusSucceeded || r2.Claude == nil || r2.Claude.SessionID != r.Claude.SessionID || r2.Claude.FreshSession {
				t.Fatalf("next execute: %+v %+v", r2.Error, r2.Claude)
			}
			last, _ := h.api.LastMessageRequest()
			if !last.Contains("Keep editing") {
				t.Error("the resumed session did not carry the stopped job's turns")
			}
		})
	}
}
