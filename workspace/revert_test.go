package workspace_test

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/webordinary/claude-code-astro/workspace"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// editAndCommit writes index.html and commits it as job id.
func editAndCommit(t *testing.T, u *workspace.User, thread, id, content string) string {
	t.Helper()
	writeFile(t, filepath.Join(u.ProjectDir, "index.html"), content)
	c, err := u.Commit(ctx(t), thread, id, "Set the page to "+content)
	if err != nil || c.SHA == "" {
		t.Fatalf("commit %s: %+v %v", id, c, err)
	}
	return c.SHA
}

func TestRevert(t *testing.T) {
	g := workspacetest.NewGit(t)
	remote := workspacetest.NewRemote(t, g, plainSite())
	u := mustUser(t, newWorkspaces(t), "c", "u")
	mustInit(t, u, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "t1"})
	base := g.Run(u.ProjectDir, "rev-parse", "HEAD")
	c1 := editAndCommit(t, u, "t1", "j1", "one\n")
	c2 := editAndCommit(t, u, "t1", "j2", "two\n")
	c3 := editAndCommit(t, u, "t1", "j3", "three\n")
	index := filepath.Join(u.ProjectDir, "index.html")

	// Invalid targets change nothing.
	mustInit(t, u, workspace.InitOptions{ThreadID: "other"})
	other := editAndCommit(t, u, "other", "o1", "other\n")
	for name, opt := range map[string]workspace.RevertOptions{
		"a commit of another thread": {ToCommit: other},
		"a commit nobody has":        {ToCommit: strings.Repeat("ab", 20)},
		"more steps than jobs":       {Steps: 4},
	} {
		opt.ThreadID, opt.JobID = "t1", "bad"
		if _, err := u.Revert(ctx(t), opt); !errors.Is(err, workspace.ErrBadRevert) {
			t.Errorf("%s: err = %v, want ErrBadRevert", name, err)
		}
		if _, sha := head(t, g, u); sha != c3 {
			t.Errorf("%s moved the branch to %s", name, sha)
		}
	}

	// Uncommitted work is saved first, then the last job commit undone.
	writeFile(t, filepath.Join(u.ProjectDir, "notes.txt"), "draft\n")
	res, err := u.Revert(ctx(t), workspace.RevertOptions{ThreadID: "t1", JobID: "r1", Steps: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Reverted, []string{c3}) || res.SHA == "" || !slices.Equal(res.Files, []string{"index.html"}) {
		t.Errorf("revert 1 step = %+v, want c3 undone in one commit touching index.html", res)
	}
	if got := readFile(t, index); got != "two\n" || !exists(filepath.Join(u.ProjectDir, "notes.txt")) {
		t.Errorf("after one step: index %q, notes kept %v", got, exists(filepath.Join(u.ProjectDir, "notes.txt")))
	}
	subjects := g.Run(u.ProjectDir, "log", "--format=%s", "-3")
	if want := "Thread t1: revert 1 job commit\nWIP: thread t1 (saved before a revert)\nThread t1: Set the page to three"; subjects != want {
		t.Errorf("history:\n%s\nwant:\n%s", subjects, want)
	}
	// History is only added to: c3 is still there.
	if _, err := g.Try(u.ProjectDir, "merge-base", "--is-ancestor", c3, "HEAD"); err != nil {
		t.Error("c3 left the branch: history rewritten")
	}

	// The same job again finds its commit.
	again, err := u.Revert(ctx(t), workspace.RevertOptions{ThreadID: "t1", JobID: "r1", Steps: 1})
	if err != nil || again.SHA != res.SHA {
		t.Errorf("redelivered revert = %+v %v, want %s", again, err, res.SHA)
	}

	// To c1: c2 goes (c3 is already undone).
	res, err = u.Revert(ctx(t), workspace.RevertOptions{ThreadID: "t1", JobID: "r2", ToCommit: c1[:12]})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Reverted, []string{c2}) || readFile(t, index) != "one\n" {
		t.Errorf("revert to c1 = %+v, index %q", res, readFile(t, index))
	}
	// Steps count what is left to undo: c1 only.
	if _, err := u.Revert(ctx(t), workspace.RevertOptions{ThreadID: "t1", JobID: "r3", Steps: 2}); !errors.Is(err, workspace.ErrBadRevert) {
		t.Errorf("2 steps with one job commit left: %v", err)
	}
	res, err = u.Revert(ctx(t), workspace.RevertOptions{ThreadID: "t1", JobID: "r4", ToCommit: base})
	if err != nil || !slices.Equal(res.Reverted, []string{c1}) || readFile(t, index) != "<h1>Hello</h1>\n" {
		t.Errorf("revert to the base = %+v %v, index %q", res, err, readFile(t, index))
	}
	if out := g.Run(u.ProjectDir, "status", "--porcelain"); out != "" {
		t.Errorf("workspace not clean after reverts: %s", out)
	}
}

func TestRevertConflictChangesNothing(t *testing.T) {
	g := workspacetest.NewGit(t)
	remote := workspacetest.NewRemote(t, g, plainSite())
	u := mustUser(t, newWorkspaces(t), "c", "u")
	mustInit(t, u, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "t1"})
	editAndCommit(t, u, "t1", "j1", "one\n")
	// A later change that is no job's (saved work in progress) touches the
	// same line: undoing j1 cannot apply.
	writeFile(t, filepath.Join(u.ProjectDir, "index.html"), "by hand\n")
	mustInit(t, u, workspace.InitOptions{ThreadID: "t2"})
	_, err := u.Revert(ctx(t), workspace.RevertOptions{ThreadID: "t1", JobID: "r1", Steps: 1})
	if !errors.Is(err, workspace.ErrRevertConflict) {
		t.Fatalf("err = %v, want ErrRevertConflict", err)
	}
	if out := g.Run(u.ProjectDir, "status", "--porcelain"); out != "" {
		t.Errorf("a failed revert left changes: %s", out)
	}
	if got := readFile(t, filepath.Join(u.ProjectDir, "index.html")); got != "by hand\n" {
		t.Errorf("index after a failed revert: %q", got)
	}
}

func TestFork(t *testing.T) {
	g := workspacetest.NewGit(t)
	remote := workspacetest.NewRemote(t, g, plainSite())
	u := mustUser(t, newWorkspaces(t), "c", "u")
	mustInit(t, u, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "parent"})
	parentHead := editAndCommit(t, u, "parent", "j1", "parent's\n")
	if _, err := u.RecordJob("parent", workspace.JobRecord{JobID: "j1", Status: "succeeded", SessionID: "11111111-2222-3333-4444-555555555555"}); err != nil {
		t.Fatal(err)
	}
	// Work in progress on the parent is saved on the parent, not taken along.
	writeFile(t, filepath.Join(u.ProjectDir, "wip.txt"), "wip\n")

	res := mustInit(t, u, workspace.InitOptions{ThreadID: "child", FromThreadID: "parent"})
	if res.Resumed || res.ForkedFrom != "parent" || res.Branch != "thread-child" {
		t.Errorf("fork = %+v", res)
	}
	if branch, sha := head(t, g, u); branch != "thread-child" || sha == "" {
		t.Errorf("checked out %s", branch)
	}
	if _, err := g.Try(u.ProjectDir, "merge-base", "--is-ancestor", parentHead, "HEAD"); err != nil {
		t.Error("the fork does not hold the parent's commits")
	}
	if readFile(t, filepath.Join(u.ProjectDir, "index.html")) != "parent's\n" || exists(filepath.Join(u.ProjectDir, "wip.txt")) {
		t.Error("the fork does not start at the parent's committed head")
	}
	th, err := u.LoadThread("child")
	if err != nil || th.ForkedFrom == nil || th.ForkedFrom.ThreadID != "parent" ||
		th.ForkedFrom.SessionID != "11111111-2222-3333-4444-555555555555" || th.SessionID != "" {
		t.Errorf("fork record = %+v %v", th.ForkedFrom, err)
	}

	// The same init again (redelivered) resumes the fork.
	res = mustInit(t, u, workspace.InitOptions{ThreadID: "child", FromThreadID: "parent"})
	if !res.Resumed || res.ForkedFrom != "parent" {
		t.Errorf("fork again = %+v", res)
	}
	for name, opt := range map[string]workspace.InitOptions{
		"a parent that does not exist":   {ThreadID: "child2", FromThreadID: "nope"},
		"into a thread that is no fork":  {ThreadID: "parent", FromThreadID: "child"},
		"into a fork of another parent ": {ThreadID: "child", FromThreadID: "third"},
	} {
		_, err := u.Init(ctx(t), opt)
		if !errors.Is(err, workspace.ErrThreadNotFound) && !errors.Is(err, workspace.ErrThreadExists) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
	if _, err := u.Init(ctx(t), workspace.InitOptions{ThreadID: "child3", FromThreadID: "nope"}); !errors.Is(err, workspace.ErrThreadNotFound) {
		t.Errorf("fork of a missing thread: %v", err)
	}
}
