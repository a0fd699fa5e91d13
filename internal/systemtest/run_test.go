package systemtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/fakeanthropic"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/worker"
)

func TestInvalidConfigurationStopsWithOneLine(t *testing.T) {
	t.Parallel()
	base := map[string]string{
		"PATH": os.Getenv("PATH"), "HOME": t.TempDir(),
		"JOB_QUEUE_URL":      "http://127.0.0.1:1/000000000000/jobs.fifo",
		"RESPONSE_QUEUE_URL": "http://127.0.0.1:1/000000000000/responses.fifo",
		"WORKSPACE_PATH":     t.TempDir(),
	}
	tests := []struct {
		name, key, value, wantVar string
	}{
		{"no job queue", "JOB_QUEUE_URL", "", "JOB_QUEUE_URL"},
		{"no response queue", "RESPONSE_QUEUE_URL", "", "RESPONSE_QUEUE_URL"},
		{"bad timeout", "JOB_TIMEOUT", "soon", "JOB_TIMEOUT"},
		{"bad minutes", "AUTO_SHUTDOWN_MINUTES", "-3", "AUTO_SHUTDOWN_MINUTES"},
		{"bad users", "MAX_CONCURRENT_USERS", "many", "MAX_CONCURRENT_USERS"},
		{"bad log level", "LOG_LEVEL", "chatty", "LOG_LEVEL"},
		{"relative workspace", "WORKSPACE_PATH", "workspace", "WORKSPACE_PATH"},
		{"repo with token", "REPO_URL", "https://x:" + testToken + "@github.com/a/b.git", "REPO_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(workerBin, "run")
			for k, v := range base {
				if k != tt.key {
					cmd.Env = append(cmd.Env, k+"="+v)
				}
			}
			if tt.value != "" {
				cmd.Env = append(cmd.Env, tt.key+"="+tt.value)
			}
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("worker started with %s=%q", tt.key, tt.value)
			}
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
				t.Fatalf("exit: %v", err)
			}
			text := strings.TrimSpace(string(out))
			if strings.Count(text, "\n") != 0 || !strings.Contains(text, tt.wantVar) {
				t.Errorf("want one line naming %s, got:\n%s", tt.wantVar, text)
			}
			if strings.Contains(text, testToken) {
				t.Errorf("the error shows the token: %s", text)
			}
		})
	}
}

func TestExecuteEditsCommitsAndPushes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	p := h.start(nil)
	h.send(initJob("i1", "alice", "t1"))
	init := h.final("i1", 60*time.Second)
	if init.Status != jobs.StatusSucceeded || init.Branch != "thread-t1" || init.Resumed == nil || *init.Resumed {
		t.Fatalf("init response %+v %+v", init, init.Error)
	}

	page := h.projectDir("alice") + "/src/pages/index.astro"
	h.api.SetScript(fakeanthropic.EditFile(page, "<h1>Hello</h1>", "<h1>Hello from the agent</h1>", "I changed the heading.")...)
	h.send(execJob("e1", "alice", "t1", "Change the heading to say Hello from the agent, in bold please"))
	r := h.final("e1", 60*time.Second)
	if r.Status != jobs.StatusSucceeded {
		t.Fatalf("execute failed: %+v", r.Error)
	}
	if r.Commit == "" || len(r.FilesChanged) != 1 || r.FilesChanged[0] != "src/pages/index.astro" {
		t.Errorf("commit %q files %v", r.Commit, r.FilesChanged)
	}
	if r.Pushed == nil || !*r.Pushed {
		t.Errorf("pushed = %v (%s)", r.Pushed, r.PushError)
	}
	if r.Claude == nil || r.Claude.SessionID == "" || r.Claude.Result != "I changed the heading." || r.Claude.NumTurns == 0 || r.Claude.IsError {
		t.Errorf("claude = %+v", r.Claude)
	}
	if got := h.remote.Rev("thread-t1"); got != r.Commit {
		t.Errorf("remote thread-t1 = %s, want the job's commit %s", got, r.Commit)
	}
	subject := h.git.Run(h.remote.Dir, "log", "-1", "--format=%s", "thread-t1")
	instruction := "Change the heading to say Hello from the agent, in bold please"
	if want := "Thread t1: " + instruction[:50]; strings.TrimSpace(subject) != strings.TrimSpace(want) {
		t.Errorf("commit subject %q, want %q", subject, want)
	}
	content := h.git.Run(h.remote.Dir, "show", "thread-t1:src/pages/index.astro")
	if !strings.Contains(content, "Hello from the agent") {
		t.Errorf("the pushed page is %q", content)
	}
	// Progress came before the final response, in order.
	sawProgress, sawFinal := false, false
	for _, resp := range h.responses.All {
		if resp.JobID != "e1" {
			continue
		}
		switch resp.Status {
		case jobs.StatusProgress:
			if sawFinal {
				t.Error("a progress response after the final one")
			}
			sawProgress = true
		default:
			sawFinal = true
		}
	}
	if !sawProgress {
		t.Error("no progress response for the execute job")
	}
	// Every line about a job names it, whichever package logged it.
	named := map[string]bool{}
	for _, line := range logLines(t, p.logs.String()) {
		switch line["msg"] {
		case "cloning repository", "installing dependencies", "committed", "agent started", "agent finished", "job started", "job succeeded":
			for _, key := range []string{"job_id", "client_id", "user_id", "thread_id", "message_id"} {
				if line[key] == nil || line[key] == "" {
					t.Errorf("log line %q has no %s: %v", line["msg"], key, line)
				}
			}
			named[line["msg"].(string)] = true
		}
	}
	if len(named) < 6 {
		t.Errorf("expected job log lines missing; saw %v", named)
	}
	// Tenant details: never on /health over TCP, loopback included (every
	// tenant's processes share loopback); `worker status`, as root, has them.
	code, body := p.health()
	if code != 200 || body["status"] != "ok" {
		t.Errorf("/health %d %v", code, body)
	}
	for _, key := range []string{"clientId", "userId", "threadId", "branch", "workspace", "previews", "astro"} {
		if _, ok := body[key]; ok {
			t.Errorf("/health over loopback TCP shows %q: %v", key, body)
		}
	}
	if st := p.workerStatus(); st["clientId"] != "acme" || st["userId"] != "alice" || st["branch"] != "thread-t1" {
		t.Errorf("worker status: %v", st)
	}
	if c, _ := p.stop(syscall.SIGTERM, 25*time.Second); c != 0 {
		t.Errorf("exit code %d after SIGTERM", c)
	}
}

func TestSIGTERMMidRunCancelsAndReleases(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	p := h.start(nil)
	h.send(initJob("i1", "bob", "t1"))
	h.final("i1", 60*time.Second)

	h.api.SetScript(fakeanthropic.Hang())
	h.send(execJob("e1", "bob", "t1", "Do something slow"))
	wait.For(t, 30*time.Second, "the agent to call the API", func() bool { return len(h.api.MessageRequests()) > 0 })
	clis := descendants(p.cmd.Process.Pid)
	if len(clis) == 0 {
		t.Fatal("no child process while the agent runs")
	}
	code, took := p.stop(syscall.SIGTERM, 25*time.Second)
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
	t.Logf("stopped %s after SIGTERM (the drain lets the job run %s first)", took, worker.DefaultDrainTimeout)
	waitNoProcesses(t, h.root)
	if v, f := h.jobsQ.Count(t); v+f != 1 {
		t.Errorf("the cancelled job's message: %d visible, %d in flight; want it kept", v, f)
	}
	for _, r := range h.responses.Final() {
		if r.JobID == "e1" {
			t.Errorf("the cancelled job was answered: %+v", r)
		}
	}
	if !strings.Contains(p.logs.String(), "job stopped by the worker's stop") {
		t.Error("the log does not say the job was cancelled")
	}

	// The next worker runs it to the end.
	page := h.projectDir("bob") + "/src/pages/index.astro"
	h.api.SetScript(fakeanthropic.EditFile(page, "<h1>Hello</h1>", "<h1>Done</h1>", "Done.")...)
	h.start(nil)
	r := h.final("e1", 60*time.Second)
	if r.Status != jobs.StatusSucceeded || r.Commit == "" {
		t.Errorf("after restart: %+v %+v", r, r.Error)
	}
}

// TestCommittedJobIsNotRunAgain: a job whose commit landed but whose answer
// was never recorded (its worker died in between) is answered from its
// commit when it comes again, without running the agent a second time.
func TestCommittedJobIsNotRunAgain(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	h.start(nil)
	h.send(initJob("i1", "lee", "t1"))
	h.final("i1", 60*time.Second)
	h.api.SetScript(editHeading(h.projectDir("lee") + "/src/pages/index.astro")...)
	h.send(execJob("e1", "lee", "t1", "Change the heading"))
	first := h.final("e1", 60*time.Second)
	if first.Status != jobs.StatusSucceeded || first.Commit == "" {
		t.Fatalf("execute: %+v %+v", first, first.Error)
	}
	// The worker "died" before its record said finished.
	if err := os.Remove(filepath.Join(h.root, "acme", "lee", ".jobs", "job-e1.json")); err != nil {
		t.Fatal(err)
	}
	calls := len(h.api.MessageRequests())
	h.responses.All = nil
	h.send(execJob("e1", "lee", "t1", "Change the heading"))
	again := h.final("e1", 60*time.Second)
	if again.Status != jobs.StatusSucceeded || again.Commit != first.Commit ||
		strings.Join(again.FilesChanged, ",") != strings.Join(first.FilesChanged, ",") {
		t.Errorf("again: %+v %+v; first: %+v", again, again.Error, first)
	}
	if n := len(h.api.MessageRequests()); n != calls {
		t.Errorf("the agent ran again: %d more API calls", n-calls)
	}
	if n := strings.Count(h.git.Run(h.remote.Dir, "log", "--format=%B", "main..thread-t1"), "Job-Id: e1"); n != 1 {
		t.Errorf("job e1 has %d commits on the remote, want 1", n)
	}
}
