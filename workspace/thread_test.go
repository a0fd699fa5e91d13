package workspace_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/webordinary/claude-code-astro/workspace"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

func TestSwitchThreadKeepsWork(t *testing.T) {
	g := workspacetest.NewGit(t)
	remote := workspacetest.NewRemote(t, g, plainSite())
	u := mustUser(t, newWorkspaces(t), "c", "u")
	mustInit(t, u, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "A"})
	mustInit(t, u, workspace.InitOptions{ThreadID: "B"})
	if _, err := u.SwitchThread(ctx(t), "A"); err != nil {
		t.Fatal(err)
	}

	// Uncommitted work in A: an edit, a new file, a deletion.
	index := filepath.Join(u.ProjectDir, "index.html")
	draft := filepath.Join(u.ProjectDir, "drafts", "new.html")
	about := filepath.Join(u.ProjectDir, "about.html")
	writeFile(t, index, "<h1>A's edit</h1>\n")
	writeFile(t, draft, "draft\n")
	if err := os.Remove(about); err != nil {
		t.Fatal(err)
	}

	if branch, err := u.SwitchThread(ctx(t), "B"); err != nil || branch != "thread-B" {
		t.Fatalf("switch to B = %q, %v", branch, err)
	}
	if got := readFile(t, index); got != "<h1>Hello</h1>\n" {
		t.Errorf("B sees A's edit: %q", got)
	}
	if exists(draft) || !exists(about) {
		t.Error("B sees A's added or deleted file")
	}
	if out := g.Run(u.ProjectDir, "status", "--porcelain"); out != "" {
		t.Errorf("B not clean: %s", out)
	}
	msg := g.Run(u.ProjectDir, "log", "-1", "--format=%s", "thread-A")
	if want := "WIP: thread A (saved before switching to thread B)"; msg != want {
		t.Errorf("A's last commit = %q, want %q", msg, want)
	}
	if stashes := g.Run(u.ProjectDir, "stash", "list"); stashes != "" {
		t.Errorf("stash used: %s", stashes)
	}

	if _, err := u.SwitchThread(ctx(t), "A"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, index); got != "<h1>A's edit</h1>\n" {
		t.Errorf("A's edit lost: %q", got)
	}
	if !exists(draft) || exists(about) {
		t.Error("A's added or deleted file lost")
	}
	// Switching to the thread already checked out changes nothing.
	writeFile(t, index, "<h1>still editing</h1>\n")
	if _, err := u.SwitchThread(ctx(t), "A"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, index); got != "<h1>still editing</h1>\n" {
		t.Errorf("switch to the same thread touched the work: %q", got)
	}
}

func TestNotInitialized(t *testing.T) {
	g := workspacetest.NewGit(t)
	remote := workspacetest.NewRemote(t, g, plainSite())
	ws := newWorkspaces(t)
	fresh := mustUser(t, ws, "c", "fresh")
	if _, err := fresh.SwitchThread(ctx(t), "t"); !errors.Is(err, workspace.ErrNotInitialized) {
		t.Errorf("switch on fresh user: %v", err)
	}
	if _, err := fresh.Commit(ctx(t), "t", "j", "x"); !errors.Is(err, workspace.ErrNotInitialized) {
		t.Errorf("commit on fresh user: %v", err)
	}
	if _, _, err := fresh.Push(ctx(t), "t"); !errors.Is(err, workspace.ErrNotInitialized) {
		t.Errorf("push on fresh user: %v", err)
	}
	if err := fresh.Touch(); !errors.Is(err, workspace.ErrNotInitialized) {
		t.Errorf("touch on fresh user: %v", err)
	}
	if exists(fresh.Dir) {
		t.Error("operations on a fresh user created its directory")
	}

	u := mustUser(t, ws, "c", "u")
	mustInit(t, u, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "known"})
	if _, err := u.SwitchThread(ctx(t), "unknown"); !errors.Is(err, workspace.ErrNotInitialized) {
		t.Errorf("switch to unknown thread: %v", err)
	}
	if _, _, err := u.Push(ctx(t), "unknown"); !errors.Is(err, workspace.ErrNotInitialized) {
		t.Errorf("push of unknown thread: %v", err)
	}
	if _, found, err := u.FindJobCommit(ctx(t), "unknown", "j"); err != nil || found {
		t.Errorf("FindJobCommit on unknown thread = %v, %v", found, err)
	}
	if _, err := u.Commit(ctx(t), "other", "j", "x"); !errors.Is(err, workspace.ErrWrongBranch) {
		t.Errorf("commit to a thread not checked out: %v", err)
	}
}

func TestCommitMessage(t *testing.T) {
	long := strings.Repeat("abcdefghij", 6) // 60 runes
	accents := strings.Repeat("é", 60)
	tests := []struct {
		name, instruction, subject string
	}{
		{"short", "Make the header blue", "Thread t1: Make the header blue"},
		{"exactly 50", long[:50], "Thread t1: " + long[:50]},
		{"truncated at 50 runes", long, "Thread t1: " + long[:50]},
		{"multibyte runes", accents, "Thread t1: " + strings.Repeat("é", 50)},
		{"newlines become spaces", "line one\nline two\r\nline three", "Thread t1: line one line two line three"},
		{"trailing space kept", strings.Repeat("x", 49) + " and more", "Thread t1: " + strings.Repeat("x", 49) + " "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := workspace.CommitMessage("t1", "job-7", tt.instruction)
			want := tt.subject + "\n\nThread-Id: t1\nJob-Id: job-7\n"
			if msg != want {
				t.Errorf("CommitMessage = %q, want %q", msg, want)
			}
		})
	}
}

func TestCommit(t *testing.T) {
	g := workspacetest.NewGit(t)
	remote := workspacetest.NewRemote(t, g, plainSite())
	u := mustUser(t, newWorkspaces(t), "c", "u")
	mustInit(t, u, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "t1"})
	before := g.Run(u.ProjectDir, "rev-parse", "HEAD")

	// Nothing changed: no commit.
	c, err := u.Commit(ctx(t), "t1", "job-0", "do nothing")
	if err != nil || c.SHA != "" || len(c.Files) != 0 {
		t.Fatalf("commit without changes = %+v, %v", c, err)
	}
	if got := g.Run(u.ProjectDir, "rev-parse", "HEAD"); got != before {
		t.Fatal("a commit was made without changes")
	}

	writeFile(t, filepath.Join(u.ProjectDir, "index.html"), "<h1>Blue</h1>\n")
	writeFile(t, filepath.Join(u.ProjectDir, "src", "new file.css"), "h1{color:blue}\n")
	if err := os.Remove(filepath.Join(u.ProjectDir, "about.html")); err != nil {
		t.Fatal(err)
	}
	instruction := "Make the header blue and add a stylesheet for the whole site, please\nthanks"
	c, err = u.Commit(ctx(t), "t1", "job-1", instruction)
	if err != nil {
		t.Fatal(err)
	}
	if c.SHA == "" || c.SHA != g.Run(u.ProjectDir, "rev-parse", "HEAD") {
		t.Errorf("commit SHA = %q", c.SHA)
	}
	if got, want := strings.Join(c.Files, ","), "about.html,index.html,src/new file.css"; got != want {
		t.Errorf("files = %q, want %q", got, want)
	}
	// The commit lists the same files when asked again later.
	if files, err := u.CommitFiles(ctx(t), c.SHA); err != nil || strings.Join(files, ",") != strings.Join(c.Files, ",") {
		t.Errorf("CommitFiles = %q, %v; want %q", files, err, c.Files)
	}
	if _, err := u.CommitFiles(ctx(t), "--output=/tmp/x"); err == nil {
		t.Error("CommitFiles accepted an option as a commit id")
	}
	// The raw commit object holds the message verbatim (trailing space
	// of the 50-rune subject included).
	raw := g.Run(u.ProjectDir, "cat-file", "commit", "HEAD")
	_, gotMsg, _ := strings.Cut(raw, "\n\n")
	wantMsg := "Thread t1: Make the header blue and add a stylesheet for the \n\nThread-Id: t1\nJob-Id: job-1"
	if gotMsg != wantMsg {
		t.Errorf("message = %q, want %q", gotMsg, wantMsg)
	}
	if got := g.Run(u.ProjectDir, "log", "-1", "--format=%an <%ae>|%cn <%ce>"); got != "Claude Code <claude@webordinary.com>|Claude Code <claude@webordinary.com>" {
		t.Errorf("author|committer = %q", got)
	}

	// The job's commit is found by its trailer, and only by its own id.
	for _, tt := range []struct {
		job   string
		found bool
	}{{"job-1", true}, {"job-", false}, {"job-10", false}, {"job-0", false}, {"ob-1", false}} {
		sha, found, err := u.FindJobCommit(ctx(t), "t1", tt.job)
		if err != nil || found != tt.found || (found && sha != c.SHA) {
			t.Errorf("FindJobCommit(%q) = %q %v %v, want found=%v", tt.job, sha, found, err, tt.found)
		}
	}

	// A later commit; job-1 is still found behind it.
	writeFile(t, filepath.Join(u.ProjectDir, "index.html"), "<h1>Green</h1>\n")
	c2, err := u.Commit(ctx(t), "t1", "job-10", "green")
	if err != nil || c2.SHA == "" {
		t.Fatalf("second commit = %+v %v", c2, err)
	}
	if sha, found, err := u.FindJobCommit(ctx(t), "t1", "job-1"); err != nil || !found || sha != c.SHA {
		t.Errorf("FindJobCommit(job-1) after another commit = %q %v %v", sha, found, err)
	}

	// The configured identity is used; ids are validated.
	u2 := mustUser(t, newWorkspaces(t, func(c *workspace.Config) {
		c.AuthorName, c.AuthorEmail = "Site Bot", "bot@example.test"
	}), "c", "u")
	mustInit(t, u2, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "t1"})
	writeFile(t, filepath.Join(u2.ProjectDir, "x.txt"), "x\n")
	if _, err := u2.Commit(ctx(t), "t1", "job-1", "x"); err != nil {
		t.Fatal(err)
	}
	if got := g.Run(u2.ProjectDir, "log", "-1", "--format=%an <%ae>"); got != "Site Bot <bot@example.test>" {
		t.Errorf("author = %q", got)
	}
	for _, job := range []string{"", "a\nJob-Id: b", "a b", strings.Repeat("j", 129)} {
		if _, err := u2.Commit(ctx(t), "t1", job, "x"); !errors.Is(err, workspace.ErrInvalidID) {
			t.Errorf("commit with job id %q: %v", job, err)
		}
	}
}

func TestPush(t *testing.T) {
	g := workspacetest.NewGit(t)
	remote := workspacetest.NewRemote(t, g, plainSite())
	u := mustUser(t, newWorkspaces(t), "c", "u")
	mustInit(t, u, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "t1"})

	commit := func(content, job string) string {
		t.Helper()
		writeFile(t, filepath.Join(u.ProjectDir, "index.html"), content)
		c, err := u.Commit(ctx(t), "t1", job, "edit")
		if err != nil {
			t.Fatal(err)
		}
		return c.SHA
	}

	sha := commit("one\n", "job-1")
	pushed, reason, err := u.Push(ctx(t), "t1")
	if err != nil || !pushed || reason != "" {
		t.Fatalf("push = %v %q %v", pushed, reason, err)
	}
	if got := remote.Rev("refs/heads/thread-t1"); got != sha {
		t.Errorf("remote thread-t1 = %q, want %q", got, sha)
	}
	if got := g.Run(u.ProjectDir, "rev-parse", "refs/remotes/origin/thread-t1"); got != sha {
		t.Errorf("origin/thread-t1 = %q, want the pushed %q", got, sha)
	}

	// The remote rejects: not a failure, a reason.
	remote.SetHook(t, "pre-receive", "#!/bin/sh\necho 'hook says no' >&2\nexit 1\n")
	rejected := commit("two\n", "job-2")
	pushed, reason, err = u.Push(ctx(t), "t1")
	if err != nil || pushed {
		t.Fatalf("rejected push = %v %q %v", pushed, reason, err)
	}
	if !strings.Contains(reason, "hook says no") {
		t.Errorf("reason = %q, want the hook's message", reason)
	}
	if got := remote.Rev("refs/heads/thread-t1"); got != sha {
		t.Errorf("rejected push moved the remote to %s", got)
	}

	// The next push pushes everything.
	remote.SetHook(t, "pre-receive", "")
	later := commit("three\n", "job-3")
	if pushed, reason, err := u.Push(ctx(t), "t1"); err != nil || !pushed {
		t.Fatalf("push after hook removed = %v %q %v", pushed, reason, err)
	}
	if got := remote.Rev("refs/heads/thread-t1"); got != later {
		t.Errorf("remote thread-t1 = %s, want %s", got, later)
	}
	if g.Run("", "--git-dir="+remote.Dir, "merge-base", "--is-ancestor", rejected, later) != "" {
		t.Error("unexpected output")
	}

	// An unreachable remote: not a failure either.
	if err := os.Rename(remote.Dir, remote.Dir+".gone"); err != nil {
		t.Fatal(err)
	}
	commit("four\n", "job-4")
	if pushed, reason, err := u.Push(ctx(t), "t1"); err != nil || pushed || reason == "" {
		t.Errorf("push to a missing remote = %v %q %v", pushed, reason, err)
	}

	// No remote at all: nothing to push.
	g.Run(u.ProjectDir, "remote", "remove", "origin")
	if pushed, reason, err := u.Push(ctx(t), "t1"); err != nil || pushed || reason == "" {
		t.Errorf("push without remote = %v %q %v", pushed, reason, err)
	}
}
