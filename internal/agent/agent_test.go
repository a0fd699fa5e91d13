package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/webordinary/claude-code-astro/internal/procfs"
	"github.com/webordinary/claude-code-astro/internal/testkit/fakeanthropic"
	"github.com/webordinary/claude-code-astro/internal/testkit/repo"
)

func TestRunEditsFile(t *testing.T) {
	eachCLI(t, func(t *testing.T, cli repo.CLI) {
		e := newTestEnv(t, cli)
		e.srv.SetScript(fakeanthropic.EditFile(e.path("index.md"), "world", "there", "I changed the greeting.")...)
		var progress progressLog

		res, err := e.runner(nil).Run(context.Background(), e.request("Change world to there"), progress.add)
		if err != nil {
			t.Fatalf("Run: %v\nlogs:\n%s", err, e.logs)
		}

		if got := e.readFile("index.md"); got != "hello there\n" {
			t.Errorf("index.md = %q, want %q", got, "hello there\n")
		}
		if _, err := uuid.Parse(res.SessionID); err != nil {
			t.Errorf("SessionID %q is not a UUID: %v", res.SessionID, err)
		}
		if res.Result != "I changed the greeting." || res.NumTurns != 3 || res.IsError || res.FreshSession {
			t.Errorf("Result = %+v, want the final text, 3 turns, no error, not fresh", res)
		}
		if res.CostUSD <= 0 || res.DurationMs <= 0 {
			t.Errorf("Result = %+v, want a cost and a duration", res)
		}
		if _, err := os.Stat(SessionPath(e.config, e.project, res.SessionID)); err != nil {
			t.Errorf("session file: %v", err)
		}

		// Progress arrives in order: Read, Edit, then the final text.
		want := []Progress{
			{Kind: KindToolUse, Tool: "Read", Summary: "index.md"},
			{Kind: KindToolUse, Tool: "Edit", Summary: "index.md"},
			{Kind: KindText, Summary: "I changed the greeting."},
		}
		if got := progress.all(); !slices.Equal(got, want) {
			t.Errorf("progress = %+v, want %+v", got, want)
		}

		reqs := e.srv.MessageRequests()
		if len(reqs) != 3 {
			t.Fatalf("got %d scripted requests, want 3", len(reqs))
		}
		for _, r := range reqs {
			if got := r.Header.Get("X-Api-Key"); got != testAPIKey {
				t.Errorf("x-api-key = %q, want the configured key", got)
			}
		}
		if !reqs[0].Contains("Change world to there") {
			t.Errorf("first request does not hold the instruction")
		}
	})
}

func TestRunResumesSession(t *testing.T) {
	eachCLI(t, func(t *testing.T, cli repo.CLI) {
		e := newTestEnv(t, cli)
		e.srv.SetScript(fakeanthropic.EditFile(e.path("index.md"), "world", "there", "First answer.")...)
		r := e.runner(nil)
		first, err := r.Run(context.Background(), e.request("First instruction"), nil)
		if err != nil {
			t.Fatalf("first Run: %v\nlogs:\n%s", err, e.logs)
		}

		e.srv.SetScript(fakeanthropic.Text("Second answer."))
		req := e.request("Second instruction")
		req.SessionID = first.SessionID
		second, err := r.Run(context.Background(), req, nil)
		if err != nil {
			t.Fatalf("second Run: %v\nlogs:\n%s", err, e.logs)
		}
		if second.SessionID != first.SessionID || second.FreshSession || second.Result != "Second answer." {
			t.Errorf("second Result = %+v, want session %s resumed with the second answer", second, first.SessionID)
		}

		last, ok := e.srv.LastMessageRequest()
		if !ok {
			t.Fatal("no request recorded")
		}
		for _, want := range []string{"First instruction", "First answer.", "Second instruction"} {
			if !last.Contains(want) {
				t.Errorf("resumed request does not hold %q from the conversation", want)
			}
		}
		if n := len(last.ToolResults()); n != 2 {
			t.Errorf("resumed request holds %d tool results, want the first run's 2", n)
		}
	})
}

// TestRunForksSession: a run with ForkSession sees the conversation it
// forks and gets a session of its own; the original session goes on
// without what the fork added.
func TestRunForksSession(t *testing.T) {
	eachCLI(t, func(t *testing.T, cli repo.CLI) {
		e := newTestEnv(t, cli)
		e.srv.SetScript(fakeanthropic.Text("Parent answer."))
		r := e.runner(nil)
		parent, err := r.Run(context.Background(), e.request("Parent instruction"), nil)
		if err != nil {
			t.Fatalf("parent Run: %v\nlogs:\n%s", err, e.logs)
		}

		e.srv.SetScript(fakeanthropic.Text("Fork answer."))
		req := e.request("Fork instruction")
		req.SessionID, req.ForkSession = parent.SessionID, true
		fork, err := r.Run(context.Background(), req, nil)
		if err != nil {
			t.Fatalf("fork Run: %v\nlogs:\n%s", err, e.logs)
		}
		if fork.SessionID == "" || fork.SessionID == parent.SessionID || fork.FreshSession {
			t.Fatalf("fork Result = %+v: want a new session forked from %s", fork, parent.SessionID)
		}
		last, _ := e.srv.LastMessageRequest()
		for _, want := range []string{"Parent instruction", "Parent answer.", "Fork instruction"} {
			if !last.Contains(want) {
				t.Errorf("the fork's request does not hold %q", want)
			}
		}

		e.srv.SetScript(fakeanthropic.Text("Parent again."))
		req = e.request("Parent second instruction")
		req.SessionID = parent.SessionID
		again, err := r.Run(context.Background(), req, nil)
		if err != nil || again.SessionID != parent.SessionID {
			t.Fatalf("parent resumed: %+v %v", again, err)
		}
		last, _ = e.srv.LastMessageRequest()
		if !last.Contains("Parent instruction") || last.Contains("Fork instruction") || last.Contains("Fork answer.") {
			t.Errorf("the parent's next request holds the fork's turns or lost its own")
		}

		e.srv.SetScript(fakeanthropic.Text("Fork again."))
		req = e.request("Fork second instruction")
		req.SessionID = fork.SessionID
		if _, err := r.Run(context.Background(), req, nil); err != nil {
			t.Fatal(err)
		}
		last, _ = e.srv.LastMessageRequest()
		if !last.Contains("Fork instruction") || last.Contains("Parent second instruction") {
			t.Errorf("the fork's session does not go on by itself")
		}
	})
}

func TestRunPlanModeChangesNothing(t *testing.T) {
	eachCLI(t, func(t *testing.T, cli repo.CLI) {
		e := newTestEnv(t, cli)
		e.srv.SetScript(
			fakeanthropic.Read(e.path("index.md")),
			fakeanthropic.Edit(e.path("index.md"), "world", "there"),
			fakeanthropic.Write(e.path("new.md"), "new file"),
			fakeanthropic.Text("Here is my plan."),
		)
		req := e.request("Plan a change")
		req.Mode = ModePlan
		var progress progressLog
		// The default interval (1s) coalesces progress; the last one is flushed.
		r := e.runner(func(c *Config) { c.ProgressInterval = 0 })

		res, err := r.Run(context.Background(), req, progress.add)
		if err != nil {
			t.Fatalf("Run: %v\nlogs:\n%s", err, e.logs)
		}
		if res.Result != "Here is my plan." {
			t.Errorf("Result = %q", res.Result)
		}
		if got := e.readFile("index.md"); got != "hello world\n" {
			t.Errorf("plan mode changed index.md to %q", got)
		}
		if _, err := os.Stat(e.path("new.md")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("plan mode created new.md (stat: %v)", err)
		}
		got := progress.all()
		if len(got) == 0 || got[len(got)-1] != (Progress{Kind: KindText, Summary: "Here is my plan."}) {
			t.Errorf("progress = %+v, want the final text delivered last", got)
		}
		last, _ := e.srv.LastMessageRequest()
		results := last.ToolResults()
		if len(results) != 3 || results[0].IsError || !results[1].IsError || !results[2].IsError {
			t.Errorf("tool results = %+v, want Read ok, Edit and Write refused", results)
		}
	})
}

func TestRunFailures(t *testing.T) {
	eachCLI(t, func(t *testing.T, cli repo.CLI) {
		tests := []struct {
			name      string
			script    func(e *testEnv) []fakeanthropic.Step
			mod       func(*Config)
			wantInMsg []string
			// apiReqs bounds the scripted requests: at least, at most
			// (zero: not checked).
			apiReqs [2]int
		}{
			{
				name: "bad request",
				script: func(*testEnv) []fakeanthropic.Step {
					return []fakeanthropic.Step{fakeanthropic.BadRequest("messages: invalid field, key " + testAPIKey)}
				},
				wantInMsg: []string{"400", "invalid field"},
				// 2.1.218 sends it once; 2.1.332 sends a refused request
				// up to six times, with fewer beta headers and tools.
				apiReqs: [2]int{1, 6},
			},
			{
				name:      "overloaded with bounded retries",
				script:    func(*testEnv) []fakeanthropic.Step { return []fakeanthropic.Step{fakeanthropic.Overloaded()} },
				mod:       func(c *Config) { c.MaxRetries = 1 },
				wantInMsg: []string{"529", "Overloaded"},
				apiReqs:   [2]int{2, 2},
			},
			{
				name: "stream dropped",
				script: func(*testEnv) []fakeanthropic.Step {
					return []fakeanthropic.Step{fakeanthropic.Drop("a partial answer")}
				},
				wantInMsg: []string{"Connection"},
			},
			{
				name: "turn limit",
				script: func(e *testEnv) []fakeanthropic.Step {
					return fakeanthropic.EditFile(e.path("index.md"), "world", "there", "done")
				},
				mod:       func(c *Config) { c.MaxTurns = 1 },
				wantInMsg: []string{"turn limit"},
			},
			{
				name:      "missing binary",
				mod:       func(c *Config) { c.Bin = "/nonexistent/claude" },
				wantInMsg: []string{"start claude"},
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e := newTestEnv(t, cli)
				if tt.script != nil {
					e.srv.SetScript(tt.script(e)...)
				}
				res, err := e.runner(tt.mod).Run(context.Background(), e.request("Do something"), nil)
				var ae *Error
				if !errors.As(err, &ae) || ae.Code != CodeAgentFailed {
					t.Fatalf("Run error = %v (%T), want *Error agent_failed", err, err)
				}
				t.Logf("message: %s", ae.Message)
				for _, want := range tt.wantInMsg {
					if !strings.Contains(ae.Message, want) {
						t.Errorf("message %q does not say %q", ae.Message, want)
					}
				}
				if strings.Contains(err.Error(), testAPIKey) || strings.Contains(e.logs.String(), testAPIKey) {
					t.Errorf("the API key leaked into the error or the logs: %q", err)
				}
				if tt.apiReqs[1] > 0 {
					if n := len(e.srv.MessageRequests()); n < tt.apiReqs[0] || n > tt.apiReqs[1] {
						t.Errorf("got %d API requests, want %d to %d", n, tt.apiReqs[0], tt.apiReqs[1])
					}
				}
				if tt.name != "missing binary" {
					if _, perr := uuid.Parse(res.SessionID); perr != nil {
						t.Errorf("failed Result has no session id: %+v", res)
					}
					e.assertNoProcessLeft()
				} else if res.SessionID != "" {
					t.Errorf("a CLI that never started returned session %q, which nothing wrote", res.SessionID)
				}
			})
		}
	})
}

// TestRunThatNeverStartedKeepsTheThreadsSession: a failed start returns no
// session of its own (the next run must not try to resume one that was never
// written, which costs a failed CLI start and says freshSession), and keeps
// the session it was asked to resume.
func TestRunThatNeverStartedKeepsTheThreadsSession(t *testing.T) {
	e := newTestEnv(t, repo.CLIs(t)[0])
	missing := func(c *Config) { c.Bin = "/nonexistent/claude" }
	res, err := e.runner(missing).Run(context.Background(), e.request("Do something"), nil)
	if err == nil || res.SessionID != "" {
		t.Fatalf("a run without its CLI: %+v, %v; want an error and no session", res, err)
	}
	e.srv.SetScript(fakeanthropic.Text("done"))
	req := e.request("Do something")
	req.SessionID = res.SessionID
	first, err := e.runner(nil).Run(context.Background(), req, nil)
	if err != nil || first.FreshSession || first.SessionID == "" {
		t.Fatalf("the next run: %+v, %v; want a new session, not a failed resume", first, err)
	}
	req.SessionID = first.SessionID
	again, err := e.runner(missing).Run(context.Background(), req, nil)
	if err == nil || again.SessionID != first.SessionID {
		t.Errorf("a failed start of a resumed session returned %q, want the thread's %q", again.SessionID, first.SessionID)
	}
}

func TestRunTimeout(t *testing.T) {
	eachCLI(t, func(t *testing.T, cli repo.CLI) {
		e := newTestEnv(t, cli, fakeanthropic.Hang())
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()

		_, err := e.runner(nil).Run(ctx, e.request("Take forever"), nil)
		if code := ErrorCode(err); code != CodeTimeout {
			t.Fatalf("Run error = %v, want code %q", err, CodeTimeout)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
		}
		e.assertNoProcessLeft()
	})
}

func TestRunCancelKillsProcessTree(t *testing.T) {
	eachCLI(t, func(t *testing.T, cli repo.CLI) {
		// A command that runs until it is killed. (Not `sleep`: since
		// 2.1.332 the CLI refuses a command that starts with a long sleep.)
		e := newTestEnv(t, cli, fakeanthropic.Bash("tail -f index.md"), fakeanthropic.Text("waited"))
		r := e.runner(func(c *Config) { c.Tools = append(DefaultTools(), "Bash"); c.Allow = []string{"Bash(tail:*)"} })
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()

		// Cancel once the agent's `tail` runs: the CLI's Bash tool starts
		// it in a session of its own, outside the CLI's process group.
		found := make(chan procfs.Process, 1)
		done := make(chan struct{})
		go func() {
			defer close(found)
			for ctx.Err() == nil {
				for _, pid := range e.startedPIDs() {
					if p, ok := findDescendant(pid, "tail"); ok {
						found <- p
						cancel()
						return
					}
				}
				select {
				case <-done:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()

		_, err := r.Run(ctx, e.request("Wait"), nil)
		close(done)
		tail, ok := <-found
		if !ok {
			var results []string
			if last, ok := e.srv.LastMessageRequest(); ok {
				for _, b := range last.ToolResults() {
					results = append(results, b.ResultText())
				}
			}
			t.Fatalf("the agent's command never ran; Run returned %v; tool results %q", err, results)
		}
		if code := ErrorCode(err); code != CodeCancelled {
			t.Fatalf("Run error = %v, want code %q\nlogs:\n%s", err, CodeCancelled, e.logs)
		}
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v does not wrap context.Canceled", err)
		}
		if running(tail) {
			t.Errorf("the agent's command (pid %d) survived the cancel", tail.PID)
		}
		e.assertNoProcessLeft()
	})
}

func TestRunStartsFreshSession(t *testing.T) {
	eachCLI(t, func(t *testing.T, cli repo.CLI) {
		tests := []struct {
			name  string
			spoil func(t *testing.T, e *testEnv, id string) string // returns the id to resume
		}{
			{
				name: "session file deleted",
				spoil: func(t *testing.T, e *testEnv, id string) string {
					if err := os.Remove(SessionPath(e.config, e.project, id)); err != nil {
						t.Fatal(err)
					}
					return id
				},
			},
			{
				name: "session of another directory",
				spoil: func(t *testing.T, e *testEnv, id string) string {
					other := SessionPath(e.config, "/elsewhere/project", id)
					if err := os.MkdirAll(filepath.Dir(other), 0o700); err != nil {
						t.Fatal(err)
					}
					if err := os.Rename(SessionPath(e.config, e.project, id), other); err != nil {
						t.Fatal(err)
					}
					return id
				},
			},
			{
				name:  "not a session id",
				spoil: func(*testing.T, *testEnv, string) string { return "--dangerously-skip-permissions" },
			},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e := newTestEnv(t, cli, fakeanthropic.Text("first"))
				r := e.runner(nil)
				first, err := r.Run(context.Background(), e.request("Alpha instruction one"), nil)
				if err != nil {
					t.Fatalf("first Run: %v", err)
				}
				req := e.request("Second")
				req.SessionID = tt.spoil(t, e, first.SessionID)
				e.srv.SetScript(fakeanthropic.Text("second"))

				res, err := r.Run(context.Background(), req, nil)
				if err != nil {
					t.Fatalf("second Run: %v\nlogs:\n%s", err, e.logs)
				}
				if !res.FreshSession || res.SessionID == first.SessionID || res.Result != "second" {
					t.Errorf("Result = %+v, want a fresh session answering %q", res, "second")
				}
				if _, err := uuid.Parse(res.SessionID); err != nil {
					t.Errorf("new SessionID %q: %v", res.SessionID, err)
				}
				last, _ := e.srv.LastMessageRequest()
				if last.Contains("Alpha instruction one") {
					t.Errorf("the fresh session sent the old conversation")
				}
			})
		}
	})
}

func TestRunChildEnvironment(t *testing.T) {
	eachCLI(t, func(t *testing.T, cli repo.CLI) {
		t.Setenv("GITHUB_TOKEN", "ghp_parenttoken123456")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "aws-parent-secret-123456")
		t.Setenv("AWS_REGION", "eu-west-1")
		t.Setenv("ANTHROPIC_AUTH_TOKEN", "parent-auth-token-123456")

		e := newTestEnv(t, cli)
		e.srv.SetScript(fakeanthropic.Bash("env > env.txt"), fakeanthropic.Text("done"))
		r := e.runner(func(c *Config) { c.Tools = append(DefaultTools(), "Bash"); c.Allow = []string{"Bash"} })
		if _, err := r.Run(context.Background(), e.request("Dump the environment"), nil); err != nil {
			t.Fatalf("Run: %v\nlogs:\n%s", err, e.logs)
		}

		env := e.readFile("env.txt")
		for _, want := range []string{
			"ANTHROPIC_API_KEY=" + testAPIKey,
			"ANTHROPIC_BASE_URL=" + e.srv.URL,
			"HOME=" + e.home,
			"CLAUDE_CONFIG_DIR=" + e.config,
			"CLAUDE_CODE_TMPDIR=" + e.tmp,
			"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
		} {
			if !strings.Contains(env, want+"\n") {
				t.Errorf("child env lacks %q", want)
			}
		}
		for _, line := range strings.Split(env, "\n") {
			name, _, _ := strings.Cut(line, "=")
			if name == "GITHUB_TOKEN" || name == "ANTHROPIC_AUTH_TOKEN" || strings.HasPrefix(name, "AWS_") {
				t.Errorf("child env holds %s", name)
			}
		}
		for _, secret := range []string{"ghp_parenttoken123456", "aws-parent-secret-123456", "parent-auth-token-123456"} {
			if strings.Contains(env, secret) {
				t.Errorf("child env holds the parent's secret %q", secret)
			}
		}
	})
}

func TestRunInvalidRequest(t *testing.T) {
	dir := t.TempDir()
	valid := Request{Instruction: "x", ProjectDir: dir, ConfigDir: filepath.Join(dir, ".claude")}
	tests := []struct {
		name string
		mod  func(*Request)
	}{
		{"empty instruction", func(r *Request) { r.Instruction = " \n" }},
		{"NUL in instruction", func(r *Request) { r.Instruction = "a\x00b" }},
		{"unknown mode", func(r *Request) { r.Mode = "yolo" }},
		{"no project dir", func(r *Request) { r.ProjectDir = "" }},
		{"project dir missing", func(r *Request) { r.ProjectDir = filepath.Join(dir, "nope") }},
		{"no config dir", func(r *Request) { r.ConfigDir = "" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := valid
			tt.mod(&req)
			_, err := NewRunner(Config{Bin: "/nonexistent"}).Run(context.Background(), req, nil)
			if !errors.Is(err, ErrInvalidRequest) {
				t.Errorf("Run error = %v, want ErrInvalidRequest", err)
			}
		})
	}
}
