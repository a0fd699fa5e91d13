package workspace

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"time"
)

// InitOptions are the inputs of an init job.
type InitOptions struct {
	// RepoURL is the repository to clone. Required the first time; later
	// it may be empty or must equal the recorded one.
	RepoURL string
	// BaseBranch is where a new thread branch starts. Empty means the
	// remote's default branch.
	BaseBranch string
	// ThreadID is the thread to create or resume.
	ThreadID string
	// FromThreadID forks: a new thread starts at the head of
	// thread-{FromThreadID} (local, else the remote's), which must exist,
	// and its record notes the parent and the parent's session. A thread
	// that exists already must have been forked from the same parent.
	FromThreadID string
}

// InitResult says what Init did.
type InitResult struct {
	// Branch is thread-{threadId}, now checked out.
	Branch string
	// Resumed reports that the thread branch already existed, locally or
	// on the remote.
	Resumed bool
	// Cloned reports that the repository was cloned (first use or repair).
	Cloned bool
	// Installed reports that dependencies were installed.
	Installed bool
	// ForkedFrom is the parent thread of a fork, new or resumed.
	ForkedFrom string
}

// Init prepares the user's workspace for a thread: creates the folders,
// clones the repository the first time (or when project/ is damaged),
// otherwise fetches; checks out or creates the thread branch; installs
// dependencies when the lockfile changed; writes metadata.json.
func (u *User) Init(ctx context.Context, opt InitOptions) (InitResult, error) {
	var res InitResult
	if err := ValidateID(opt.ThreadID); err != nil {
		return res, fmt.Errorf("init workspace: thread id: %w", err)
	}
	if opt.RepoURL != "" {
		if err := ValidateRepoURL(opt.RepoURL); err != nil {
			return res, fmt.Errorf("init workspace: %w", err)
		}
		if err := u.ws.notInRoot(opt.RepoURL); err != nil {
			return res, fmt.Errorf("init workspace: %w", err)
		}
	}
	if opt.BaseBranch != "" {
		if err := validateBranchName(opt.BaseBranch); err != nil {
			return res, fmt.Errorf("init workspace: %w", err)
		}
	}
	if opt.FromThreadID != "" {
		if err := ValidateID(opt.FromThreadID); err != nil {
			return res, fmt.Errorf("init workspace: parent thread id: %w", err)
		}
		if opt.FromThreadID == opt.ThreadID || opt.BaseBranch != "" {
			return res, fmt.Errorf("init workspace: a fork needs another thread and no base branch: %w", ErrInvalidID)
		}
	}
	if err := u.Prepare(); err != nil {
		return res, fmt.Errorf("init workspace: %w", err)
	}
	if err := u.removeTemps(ctx); err != nil {
		return res, fmt.Errorf("init workspace: %w", err)
	}

	meta, err := u.Metadata()
	if err != nil && !errors.Is(err, ErrNotInitialized) {
		u.log.WarnContext(ctx, "unreadable metadata, rewriting it", "error", err)
		meta = Metadata{}
	}
	repoURL := opt.RepoURL
	if meta.RepoURL != "" && repoURL != "" && repoURL != meta.RepoURL && !u.projectExists() {
		// Nothing was ever cloned (the first init's URL was wrong, or
		// unreachable): the recorded URL holds nothing back.
		u.log.InfoContext(ctx, "no project was cloned from the recorded repository: recording the new one", "recorded", meta.RepoURL)
		meta.RepoURL = ""
	}
	switch {
	case meta.RepoURL != "" && repoURL != "" && repoURL != meta.RepoURL:
		return res, fmt.Errorf("init workspace: %w: it holds %s, cloned by the user's first init (a user's workspace keeps one repository)",
			ErrRepoMismatch, u.ws.redactor.String(stripUserinfo(meta.RepoURL)))
	case meta.RepoURL != "":
		repoURL = meta.RepoURL
	case repoURL == "":
		return res, fmt.Errorf("init workspace: %w: no repository url", ErrInvalidRepoURL)
	}
	now := time.Now().UTC()
	if meta.Created.IsZero() {
		meta.Created = now
	}
	meta.ClientID, meta.UserID, meta.RepoURL, meta.LastAccessed = u.ClientID, u.UserID, repoURL, now

	if err := u.writeMetadata(meta); err != nil {
		// The repository URL is recorded before anything is fetched from it.
		return res, fmt.Errorf("init workspace: %w", err)
	}
	if u.repoHealthy(ctx) {
		if err := u.removeStaleLock(ctx); err != nil {
			return res, fmt.Errorf("init workspace: %w", err)
		}
		u.fetch(ctx, repoURL)
	} else {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("init workspace: %w", err)
		}
		u.log.InfoContext(ctx, "cloning repository")
		if err := u.cloneProject(ctx, repoURL); err != nil {
			return res, fmt.Errorf("init workspace: %w", err)
		}
		res.Cloned = true
		meta.LockfileHash, meta.Lockfile = "", ""
	}
	if err := u.writeMetadata(meta); err != nil {
		return res, fmt.Errorf("init workspace: %w", err)
	}

	res.Branch = Branch(opt.ThreadID)
	var fork *Fork
	if opt.FromThreadID != "" {
		if fork, err = u.prepareFork(ctx, opt.ThreadID, opt.FromThreadID); err != nil {
			return res, fmt.Errorf("init workspace: fork thread %s: %w", opt.FromThreadID, err)
		}
		res.ForkedFrom = opt.FromThreadID
	}
	startAt := ""
	if fork != nil {
		startAt = fork.Commit
	}
	if res.Resumed, err = u.checkoutThread(ctx, opt.ThreadID, true, opt.BaseBranch, startAt); err != nil {
		return res, fmt.Errorf("init workspace: check out %s: %w", res.Branch, err)
	}
	if res.Resumed && !res.Cloned {
		u.fastForward(ctx, opt.ThreadID)
	}
	if fork != nil && fork.Commit != "" {
		// A new fork: its record names the parent and the session to fork.
		if err := u.SaveThread(Thread{ThreadID: opt.ThreadID, ForkedFrom: fork}); err != nil {
			return res, fmt.Errorf("init workspace: %w", err)
		}
	}
	if err := u.ensureThreadRecord(opt.ThreadID); err != nil {
		return res, fmt.Errorf("init workspace: %w", err)
	}

	res.Installed, err = u.install(ctx, &meta)
	if werr := u.writeMetadata(meta); werr != nil {
		err = errors.Join(err, werr)
	}
	if err != nil {
		return res, fmt.Errorf("init workspace: %w", err)
	}
	u.log.InfoContext(ctx, "workspace ready", "branch", res.Branch, "resumed", res.Resumed, "cloned", res.Cloned, "installed", res.Installed)
	return res, nil
}

// fetch updates the remote-tracking branches (refs/remotes/origin/*) from
// the recorded repository, named on the command line: the repository's own
// config cannot point git elsewhere. A failure is logged, not returned: the
// workspace works from what it has.
func (u *User) fetch(ctx context.Context, repoURL string) {
	access, err := u.remote(repoURL)
	if err == nil {
		_, err = u.git(ctx, gitCall{env: access.Env,
			args: []string{"fetch", "--prune", "--quiet", "--", access.URL, "+refs/heads/*:refs/remotes/origin/*"}})
	}
	if err != nil {
		u.log.WarnContext(ctx, "fetch failed; continuing with local state", "error", err)
	}
}

// prepareFork checks a fork of thread from into thread threadID. For a new
// thread it returns the fork to record: the parent's head commit and
// session. A thread that exists already must have been forked from the
// same parent (a redelivered init): nil, nothing to do; else ErrThreadExists.
func (u *User) prepareFork(ctx context.Context, threadID, from string) (*Fork, error) {
	b := Branch(threadID)
	if u.refExists(ctx, "refs/heads/"+b) || u.refExists(ctx, "refs/remotes/origin/"+b) {
		t, err := u.LoadThread(threadID)
		if err != nil {
			return nil, err
		}
		if t.ForkedFrom == nil || t.ForkedFrom.ThreadID != from {
			return nil, fmt.Errorf("thread %s: %w; a fork needs a new thread id", threadID, ErrThreadExists)
		}
		return &Fork{ThreadID: from}, nil // resumed: checkoutThread finds it
	}
	var head string
	for _, ref := range []string{"refs/heads/" + Branch(from), "refs/remotes/origin/" + Branch(from)} {
		if u.refExists(ctx, ref) {
			out, err := u.git(ctx, gitCall{args: []string{"rev-parse", "--verify", "--quiet", ref + "^{commit}"}})
			if err != nil {
				return nil, err
			}
			head = strings.TrimSpace(out)
			break
		}
	}
	if head == "" {
		return nil, fmt.Errorf("thread %s has no branch in the workspace: %w", from, ErrThreadNotFound)
	}
	parent, err := u.LoadThread(from)
	if err != nil {
		return nil, err
	}
	return &Fork{ThreadID: from, SessionID: parent.SessionID, Commit: head}, nil
}

func (u *User) ensureThreadRecord(threadID string) error {
	p, err := u.threadPath(threadID)
	if err != nil {
		return err
	}
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	return u.SaveThread(Thread{ThreadID: threadID})
}

// SwitchThread checks out an initialised thread's branch, first committing
// the current branch's uncommitted changes to that branch as a
// work-in-progress commit. It fails with ErrNotInitialized when the user
// has no workspace, its repository is damaged, or the thread has no branch
// locally or on the remote.
func (u *User) SwitchThread(ctx context.Context, threadID string) (string, error) {
	if err := ValidateID(threadID); err != nil {
		return "", fmt.Errorf("switch thread: thread id: %w", err)
	}
	if err := u.ready(ctx); err != nil {
		return "", fmt.Errorf("switch thread: %w", err)
	}
	if err := u.removeStaleLock(ctx); err != nil {
		return "", fmt.Errorf("switch thread: %w", err)
	}
	if _, err := u.checkoutThread(ctx, threadID, false, "", ""); err != nil {
		return "", fmt.Errorf("switch thread: %w", err)
	}
	return Branch(threadID), nil
}

// ready checks that the workspace was initialised and its repository is
// usable.
func (u *User) ready(ctx context.Context) error {
	if err := u.checkPaths(); err != nil {
		return err
	}
	if _, err := u.Metadata(); err != nil {
		return err
	}
	if !u.repoHealthy(ctx) {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fmt.Errorf("repository missing or damaged: %w", ErrNotInitialized)
	}
	return nil
}

// projectExists reports whether the project directory exists, damaged or
// not: a repository was cloned there once.
func (u *User) projectExists() bool {
	_, err := os.Lstat(u.ProjectDir)
	return !errors.Is(err, fs.ErrNotExist)
}

// stripUserinfo drops the user part of an http(s) URL, where it can only
// be a credential, for a message (a recorded URL never has one:
// ValidateRepoURL refuses it; this is a second line of defence).
func stripUserinfo(raw string) string {
	p, err := url.Parse(raw)
	if err != nil || p.User == nil || (p.Scheme != "http" && p.Scheme != "https") {
		return raw
	}
	p.User = nil
	return p.String()
}
