package site_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/agent"
	"github.com/webordinary/claude-code-astro/internal/testkit/sandboxtest"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/jobs/site"
	"github.com/webordinary/claude-code-astro/preview"
	"github.com/webordinary/claude-code-astro/workspace"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// The site every test clones: no package.json, so an init installs nothing
// and runs no npm.
const (
	page    = "src/pages/index.astro"
	about   = "src/pages/about.astro"
	hello   = "<h1>Hello</h1>\n"
	aboutV1 = "<p>About</p>\n"
)

func siteFiles() map[string]string {
	return map[string]string{page: hello, about: aboutV1}
}

// agentFunc is what the fake agent does for one job.
type agentFunc func(t *testing.T, ctx context.Context, req agent.Request, progress func(agent.Progress)) (agent.Result, error)

// fakeAgent is the handler's Agent: it records every request and runs the
// behaviour the current step gave it, once.
type fakeAgent struct {
	t       *testing.T
	mu      sync.Mutex
	next    agentFunc
	calls   []agent.Request
	entered chan struct{} // the current step's: gets a value when Run is called
}

// expect sets what the agent does in the next job, and returns the channel
// that says it was called.
func (f *fakeAgent) expect(run agentFunc) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next, f.entered = run, make(chan struct{}, 1)
	return f.entered
}

func (f *fakeAgent) Run(ctx context.Context, req agent.Request, onProgress func(agent.Progress)) (agent.Result, error) {
	f.mu.Lock()
	f.calls = append(f.calls, req)
	run, entered := f.next, f.entered
	f.next = nil
	f.mu.Unlock()
	select {
	case entered <- struct{}{}:
	default:
	}
	if run == nil {
		return agent.Result{}, &agent.Error{Code: agent.CodeAgentFailed, Message: "fake agent: this job was not expected to run the agent"}
	}
	return run(f.t, ctx, req, onProgress)
}

func (f *fakeAgent) requests() []agent.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// fakePreviewer is the handler's Previewer: it records every target.
type fakePreviewer struct {
	mu      sync.Mutex
	targets []preview.Target
}

func (p *fakePreviewer) Target(_ context.Context, t preview.Target) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.targets = append(p.targets, t)
	return nil
}

func (p *fakePreviewer) PIDFor(string) int { return 0 }

func (p *fakePreviewer) all() []preview.Target {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.targets)
}

// previewURL is the handler's Config.PreviewURL.
func previewURL(clientID, userID string) string {
	return "https://" + preview.ID(clientID, userID) + ".preview.test/?token=tok"
}

// env is one test case's world: a remote, a workspace root, the fakes and
// the handler, and what the steps so far answered.
type env struct {
	git     *workspacetest.Git
	remote  *workspacetest.Remote
	agent   *fakeAgent
	preview *fakePreviewer
	h       *site.Handler
	ws      *workspace.Workspaces
	client  string
	user    string
	u       *workspace.User // the user's paths, for the assertions
	resps   []jobs.Response // by step
	heads   []string        // the checked-out commit before each step
}

func newEnv(t *testing.T, g *workspacetest.Git, user string) *env {
	t.Helper()
	ws, err := workspace.Open(workspace.Config{
		Root:    sandboxtest.Root(t),
		Sandbox: sandboxtest.New(t),
		PATH:    os.Getenv("PATH"),
	})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{
		git:     g,
		remote:  workspacetest.NewRemote(t, g, siteFiles()),
		agent:   &fakeAgent{t: t},
		preview: &fakePreviewer{},
		// Tenant uids are a hash of clientId/userId: ids of this package's
		// own keep the handler's stop of leftover tenant processes away
		// from other packages' tests running at the same time.
		client: "sitetest",
		user:   fmt.Sprintf("%s-%d", user, os.Getpid()),
	}
	e.ws = ws
	e.h = site.New(site.Config{Workspaces: ws, Agent: e.agent, Preview: e.preview, PreviewURL: previewURL})
	if e.u, err = ws.User(e.client, e.user); err != nil {
		t.Fatal(err)
	}
	return e
}

// head returns the commit checked out in the project, "" before any init.
func (e *env) head() string {
	out, err := e.git.Try(e.u.ProjectDir, "rev-parse", "HEAD")
	if err != nil {
		return ""
	}
	return out
}

func (e *env) read(t *testing.T, rel string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(e.u.ProjectDir, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// subject returns a commit's subject line.
func (e *env) subject(t *testing.T, sha string) string {
	t.Helper()
	return e.git.Run(e.u.ProjectDir, "log", "-1", "--format=%s", sha)
}

// edit is an agent that writes files (path -> content) in the project, as
// the tenant, reports one step and answers with session.
func edit(session string, files map[string]string) agentFunc {
	return func(t *testing.T, _ context.Context, req agent.Request, progress func(agent.Progress)) (agent.Result, error) {
		for rel, content := range files {
			workspacetest.WriteOwned(t, filepath.Join(req.ProjectDir, rel), content)
			progress(agent.Progress{Kind: "tool_use", Tool: "Edit", Summary: rel})
		}
		return agent.Result{SessionID: session, Result: "done", NumTurns: 2, CostUSD: 0.01, DurationMs: 5}, nil
	}
}

// fail is an agent that edits the page, then fails with code.
func fail(code string) agentFunc {
	return func(t *testing.T, _ context.Context, req agent.Request, _ func(agent.Progress)) (agent.Result, error) {
		workspacetest.WriteOwned(t, filepath.Join(req.ProjectDir, page), "<h1>Half done</h1>\n")
		return agent.Result{}, &agent.Error{Code: code, Message: "fake agent says " + code}
	}
}

// editUntilStopped is an agent that edits the page, then works until its
// context ends, as the CLI does when it is stopped.
func editUntilStopped(session string) agentFunc {
	return func(t *testing.T, ctx context.Context, req agent.Request, _ func(agent.Progress)) (agent.Result, error) {
		workspacetest.WriteOwned(t, filepath.Join(req.ProjectDir, page), "<h1>Half done</h1>\n")
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
			t.Error("the fake agent was never stopped")
		}
		return agent.Result{SessionID: session}, &agent.Error{Code: agent.CodeCancelled, Message: "the agent was stopped", Err: ctx.Err()}
	}
}

// step is one job of a test case and what its answer must be.
type step struct {
	job jobs.Job // ClientID, UserID and an init's RepoURL are filled in
	// agent is what the fake agent does; nil means the job must not run it.
	agent agentFunc
	// wantSession is the session the agent must be asked to resume.
	wantSession string
	// cancel cancels the job's context with jobs.ErrCancelled once the
	// agent runs.
	cancel bool
	// wantCode is the answer's error code, "" for succeeded.
	wantCode jobs.Code
	// check asserts the rest; e.resps and e.heads hold this step's too.
	check func(t *testing.T, e *env, resp jobs.Response)
}

func initJob(id, thread string) jobs.Job {
	return jobs.Job{Type: jobs.TypeInit, JobID: id, ThreadID: thread}
}

func previewJob(id, thread string) jobs.Job {
	return jobs.Job{Type: jobs.TypePreview, JobID: id, ThreadID: thread}
}

func execJob(id, thread, instruction string) jobs.Job {
	return jobs.Job{Type: jobs.TypeExecute, JobID: id, ThreadID: thread, Instruction: instruction, Mode: jobs.ModeExecute}
}

func planJob(id, thread, instruction string) jobs.Job {
	j := execJob(id, thread, instruction)
	j.Mode = jobs.ModePlan
	return j
}

// committed checks that the answer's commit is the thread branch's head,
// pushed, and changed files, and returns its subject.
func committed(t *testing.T, e *env, resp jobs.Response, files ...string) string {
	t.Helper()
	if resp.Commit == "" {
		t.Fatalf("no commit in the answer (files %q, pushed %s)", resp.FilesChanged, show(resp.Pushed))
	}
	if tip := e.git.Run(e.u.ProjectDir, "rev-parse", resp.Branch); tip != resp.Commit {
		t.Errorf("commit = %s, but %s is at %s", resp.Commit, resp.Branch, tip)
	}
	if !slices.Equal(resp.FilesChanged, files) {
		t.Errorf("filesChanged = %q, want %q", resp.FilesChanged, files)
	}
	if resp.Pushed == nil || !*resp.Pushed || e.remote.Rev(resp.Branch) != resp.Commit {
		t.Errorf("pushed = %s (%s), remote %s at %q, want the commit pushed", show(resp.Pushed), resp.PushError, resp.Branch, e.remote.Rev(resp.Branch))
	}
	return e.subject(t, resp.Commit)
}

// show prints an optional boolean of an answer.
func show(b *bool) string {
	if b == nil {
		return "absent"
	}
	return fmt.Sprint(*b)
}

// nothingCommitted checks that the step left the project's head alone.
func nothingCommitted(t *testing.T, e *env, resp jobs.Response) {
	t.Helper()
	step := len(e.heads) - 1
	if resp.Commit != "" || len(resp.FilesChanged) > 0 {
		t.Errorf("answer has commit %q, files %q: want none", resp.Commit, resp.FilesChanged)
	}
	if got := e.head(); got != e.heads[step] {
		t.Errorf("head moved from %s to %s: %s", e.heads[step], got, e.subject(t, got))
	}
}

func TestHandle(t *testing.T) {
	sandboxtest.RequireRoot(t)
	g := workspacetest.NewGit(t)

	tests := []struct {
		name  string
		steps []step
	}{
		{
			name: "init clones, checks out the thread and targets the preview; again, resumes",
			steps: []step{
				{job: initJob("i1", "t1"), check: func(t *testing.T, e *env, resp jobs.Response) {
					if resp.Resumed == nil || *resp.Resumed {
						t.Errorf("resumed = %s, want false", show(resp.Resumed))
					}
					if got := e.git.Run(e.u.ProjectDir, "symbolic-ref", "--short", "HEAD"); got != "thread-t1" {
						t.Errorf("checked out %q, want thread-t1", got)
					}
					if got := e.read(t, page); got != hello {
						t.Errorf("%s = %q, want the remote's %q", page, got, hello)
					}
				}},
				{job: initJob("i2", "t1"), check: func(t *testing.T, e *env, resp jobs.Response) {
					if resp.Resumed == nil || !*resp.Resumed {
						t.Errorf("resumed = %s, want true", show(resp.Resumed))
					}
				}},
			},
		},
		{
			name: "execute commits the agent's edit and the thread's next job resumes its session",
			steps: []step{
				{job: initJob("i1", "t1")},
				{job: execJob("j1", "t1", "Make the heading say Bye"), agent: edit("sess-1", map[string]string{page: "<h1>Bye</h1>\n"}),
					check: func(t *testing.T, e *env, resp jobs.Response) {
						if got, want := committed(t, e, resp, page), "Thread t1: Make the heading say Bye"; got != want {
							t.Errorf("subject = %q, want %q", got, want)
						}
						if resp.Claude == nil || resp.Claude.SessionID != "sess-1" || resp.Claude.Result != "done" || resp.Claude.NumTurns != 2 {
							t.Errorf("claude = %+v, want the agent's result with session sess-1", resp.Claude)
						}
					}},
				{job: execJob("j2", "t1", "Fill the about page"), agent: edit("sess-1", map[string]string{about: "<p>We make sites.</p>\n"}), wantSession: "sess-1",
					check: func(t *testing.T, e *env, resp jobs.Response) {
						committed(t, e, resp, about)
						if parent := e.git.Run(e.u.ProjectDir, "rev-parse", resp.Commit+"^"); parent != e.resps[1].Commit {
							t.Errorf("second commit's parent = %s, want the first job's %s", parent, e.resps[1].Commit)
						}
					}},
			},
		},
		{
			name: "plan mode commits nothing",
			steps: []step{
				{job: initJob("i1", "t1")},
				// The fake writes a file although plan mode is read-only:
				// the handler itself must not commit a plan job.
				{job: planJob("p1", "t1", "How would you restyle the page?"), agent: edit("sess-p", map[string]string{"PLAN.md": "1. restyle\n"}),
					check: func(t *testing.T, e *env, resp jobs.Response) {
						nothingCommitted(t, e, resp)
						if resp.Claude == nil || resp.Claude.SessionID != "sess-p" {
							t.Errorf("claude = %+v, want session sess-p", resp.Claude)
						}
					}},
			},
		},
		{
			name: "agent failure is answered with its code; the edit stays uncommitted",
			steps: []step{
				{job: initJob("i1", "t1")},
				{job: execJob("j1", "t1", "Restyle"), agent: fail(agent.CodeAgentFailed), wantCode: jobs.CodeAgentFailed,
					check: func(t *testing.T, e *env, resp jobs.Response) {
						nothingCommitted(t, e, resp)
						if got := e.read(t, page); got != "<h1>Half done</h1>\n" {
							t.Errorf("%s = %q, want the agent's edit kept in the working tree", page, got)
						}
					}},
			},
		},
		{
			name: "agent timeout is answered timeout",
			steps: []step{
				{job: initJob("i1", "t1")},
				{job: execJob("j1", "t1", "Restyle"), agent: fail(agent.CodeTimeout), wantCode: jobs.CodeTimeout,
					check: func(t *testing.T, e *env, resp jobs.Response) { nothingCommitted(t, e, resp) }},
			},
		},
		{
			name: "a job that already committed does not run the agent again",
			steps: []step{
				{job: initJob("i1", "t1")},
				{job: execJob("j1", "t1", "Make the heading say Bye"), agent: edit("sess-1", map[string]string{page: "<h1>Bye</h1>\n"})},
				{job: execJob("j1", "t1", "Make the heading say Bye"), // agent nil: must not run
					check: func(t *testing.T, e *env, resp jobs.Response) {
						first := e.resps[1]
						if resp.Commit != first.Commit || !slices.Equal(resp.FilesChanged, first.FilesChanged) {
							t.Errorf("again: commit %s files %q, want the first answer's %s %q", resp.Commit, resp.FilesChanged, first.Commit, first.FilesChanged)
						}
						if e.head() != first.Commit {
							t.Errorf("head = %s, want still %s", e.head(), first.Commit)
						}
						if resp.Claude == nil || resp.Claude.SessionID != "sess-1" {
							t.Errorf("claude = %+v, want the recorded session sess-1", resp.Claude)
						}
					}},
			},
		},
		{
			name: "cancel commits the edits so far as (cancelled); the next job resumes the session",
			steps: []step{
				{job: initJob("i1", "t1")},
				{job: execJob("j1", "t1", "Rewrite the page"), agent: editUntilStopped("sess-c"), cancel: true, wantCode: jobs.CodeCancelled,
					check: func(t *testing.T, e *env, resp jobs.Response) {
						if got, want := committed(t, e, resp, page), "Thread t1: Rewrite the page (cancelled)"; got != want {
							t.Errorf("subject = %q, want %q", got, want)
						}
						if log := e.git.Run(e.u.ProjectDir, "log", "--format=%s", "thread-t1"); !strings.HasPrefix(log, "Thread t1: Rewrite the page (cancelled)\n") {
							t.Errorf("git log of thread-t1:\n%s\nwant the cancelled commit on top", log)
						}
					}},
				{job: execJob("j2", "t1", "Go on"), agent: edit("sess-c", map[string]string{page: "<h1>Done</h1>\n"}), wantSession: "sess-c",
					check: func(t *testing.T, e *env, resp jobs.Response) { committed(t, e, resp, page) }},
			},
		},
		{
			name: "revert of one step undoes the last execute",
			steps: []step{
				{job: initJob("i1", "t1")},
				{job: execJob("j1", "t1", "Make the heading say Bye"), agent: edit("sess-1", map[string]string{page: "<h1>Bye</h1>\n"})},
				{job: jobs.Job{Type: jobs.TypeRevert, JobID: "r1", ThreadID: "t1", Steps: 1},
					check: func(t *testing.T, e *env, resp jobs.Response) {
						exec := e.resps[1].Commit
						if resp.Commit == exec {
							t.Errorf("revert answered the execute's commit %s, want a new one", exec)
						}
						if got, want := committed(t, e, resp, page), "Thread t1: revert 1 job commit"; got != want {
							t.Errorf("subject = %q, want %q", got, want)
						}
						if !slices.Equal(resp.RevertedCommits, []string{exec}) {
							t.Errorf("revertedCommits = %q, want [%s]", resp.RevertedCommits, exec)
						}
						if got := e.read(t, page); got != hello {
							t.Errorf("%s = %q, want %q back", page, got, hello)
						}
					}},
			},
		},
		{
			name: "execute on a thread never initialised",
			steps: []step{
				{job: initJob("i1", "t1")},
				{job: execJob("j1", "t2", "Restyle"), wantCode: jobs.CodeNotInitialized,
					check: func(t *testing.T, e *env, resp jobs.Response) { nothingCommitted(t, e, resp) }},
			},
		},
		{
			name: "execute for a user never initialised",
			steps: []step{
				{job: execJob("j1", "t1", "Restyle"), wantCode: jobs.CodeNotInitialized},
			},
		},
		{
			name: "preview for a user never initialised",
			steps: []step{
				{job: previewJob("p1", ""), wantCode: jobs.CodeNotInitialized},
				{job: previewJob("p2", "t1"), wantCode: jobs.CodeNotInitialized},
			},
		},
		{
			name: "preview starts the dev server on the current thread, or on the job's",
			steps: []step{
				{job: initJob("i1", "t1")},
				{job: initJob("i2", "t2")},
				{job: previewJob("p1", ""), check: func(t *testing.T, e *env, resp jobs.Response) {
					if got := e.git.Run(e.u.ProjectDir, "symbolic-ref", "--short", "HEAD"); got != "thread-t2" {
						t.Errorf("checked out %q, want thread-t2 (the current thread)", got)
					}
				}},
				{job: previewJob("p2", "t1"), check: func(t *testing.T, e *env, resp jobs.Response) {
					if got := e.git.Run(e.u.ProjectDir, "symbolic-ref", "--short", "HEAD"); got != "thread-t1" {
						t.Errorf("checked out %q, want thread-t1", got)
					}
				}},
			},
		},
	}

	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, g, fmt.Sprintf("case%d", i))
			for n, s := range tc.steps {
				if t.Failed() {
					return // later steps build on earlier ones
				}
				runStep(t, e, n, s)
			}
		})
	}
}

// runStep runs one job through the handler and checks what every answer
// must hold, then the step's own check.
func runStep(t *testing.T, e *env, n int, s step) {
	job := s.job
	job.ClientID, job.UserID = e.client, e.user
	if job.Type == jobs.TypeInit {
		job.RepoURL = e.remote.URL
	}
	what := fmt.Sprintf("step %d (%s %s)", n, job.Type, job.JobID)

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	ctx, stop := context.WithTimeout(ctx, time.Minute)
	defer stop()
	done := make(chan struct{})
	defer close(done)
	entered := e.agent.expect(s.agent)
	if s.cancel {
		go func() {
			select {
			case <-entered:
				cancel(jobs.ErrCancelled)
			case <-done:
			}
		}()
	}

	callsBefore, targetsBefore := len(e.agent.requests()), len(e.preview.all())
	var progress []jobs.Progress
	e.heads = append(e.heads, e.head())

	resp, err := e.h.Handle(ctx, job, func(_ context.Context, p jobs.Progress) { progress = append(progress, p) })
	e.resps = append(e.resps, resp)

	// The answer's code.
	if s.wantCode == "" {
		if err != nil {
			t.Fatalf("%s: %v, want success", what, err)
		}
	} else {
		var je *jobs.Error
		if !errors.As(err, &je) {
			t.Fatalf("%s: error %v (%T), want a *jobs.Error with code %s", what, err, err, s.wantCode)
		}
		if got := jobs.ErrorBodyOf(err); got.Code != s.wantCode {
			t.Fatalf("%s: error code %q (%s), want %q", what, got.Code, got.Message, s.wantCode)
		}
	}

	// The agent: run once, as asked, or not at all.
	calls := e.agent.requests()[callsBefore:]
	switch {
	case s.agent == nil && len(calls) > 0:
		t.Errorf("%s ran the agent %d times, want never", what, len(calls))
	case s.agent != nil && len(calls) != 1:
		t.Errorf("%s ran the agent %d times, want once", what, len(calls))
	case s.agent != nil:
		req := calls[0]
		mode := agent.ModeExecute
		if job.Mode == jobs.ModePlan {
			mode = agent.ModePlan
		}
		if req.Instruction != job.Instruction || req.ProjectDir != e.u.ProjectDir || req.Mode != mode || req.SessionID != s.wantSession {
			t.Errorf("%s: agent request {instruction %q, project %s, mode %s, session %q}, want {%q, %s, %s, %q}", what,
				req.Instruction, req.ProjectDir, req.Mode, req.SessionID, job.Instruction, e.u.ProjectDir, mode, s.wantSession)
		}
		if req.ConfigDir != e.u.AgentDir || req.HomeDir != e.u.HomeDir || req.Credential == nil || req.Credential.Uid != e.u.Tenant.UID {
			t.Errorf("%s: agent runs with config %s, home %s, credential %+v; want %s, %s, uid %d", what,
				req.ConfigDir, req.HomeDir, req.Credential, e.u.AgentDir, e.u.HomeDir, e.u.Tenant.UID)
		}
	}
	if s.wantCode == "" && s.agent != nil && len(progress) == 0 {
		t.Errorf("%s: the agent's progress never reached the ProgressFunc", what)
	}

	// A job that got to the workspace answers its branch and preview, and
	// points the preview at the user's project.
	if s.wantCode == jobs.CodeNotInitialized {
		if targets := e.preview.all()[targetsBefore:]; len(targets) > 0 {
			t.Errorf("%s: preview targeted %+v, want not for a job that found no workspace", what, targets)
		}
	} else {
		wantBranch := jobs.BranchName(job.ThreadID)
		if job.ThreadID == "" {
			wantBranch = "" // a preview of the current thread
		}
		if resp.Branch != wantBranch {
			t.Errorf("%s: branch = %q, want %q", what, resp.Branch, wantBranch)
		}
		if want := previewURL(e.client, e.user); resp.PreviewURL != want {
			t.Errorf("%s: previewUrl = %q, want %q", what, resp.PreviewURL, want)
		}
		targets := e.preview.all()[targetsBefore:]
		want := preview.Target{ID: preview.ID(e.client, e.user), Key: e.client + "/" + e.user, ThreadID: job.ThreadID, Dir: e.u.ProjectDir}
		if len(targets) == 0 {
			t.Errorf("%s: the preview was not targeted", what)
		} else if got := targets[len(targets)-1]; got.ID != want.ID || got.Key != want.Key || got.ThreadID != want.ThreadID || got.Dir != want.Dir ||
			got.As.Home != e.u.HomeDir || got.As.Credential == nil || got.As.Credential.Uid != e.u.Tenant.UID {
			t.Errorf("%s: preview target %+v, want %+v as the tenant (uid %d, home %s)", what, got, want, e.u.Tenant.UID, e.u.HomeDir)
		}
	}

	if s.check != nil {
		s.check(t, e, resp)
	}
}
