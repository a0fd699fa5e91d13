package workspace

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// RevertOptions are the inputs of a revert job: exactly one of ToCommit
// and Steps.
type RevertOptions struct {
	ThreadID string
	// JobID is the revert job's id, its commit's Job-Id trailer.
	JobID string
	// ToCommit undoes the thread's job commits after this commit, which
	// must be on the thread's branch.
	ToCommit string
	// Steps undoes the thread's last Steps job commits.
	Steps int
}

// RevertResult says what Revert did.
type RevertResult struct {
	// CommitResult is the revert commit and the paths it changed; empty
	// when undoing changed nothing.
	CommitResult
	// Reverted are the job commits undone, newest first.
	Reverted []string
}

// jobCommit is a commit of the thread's history that a job made.
type jobCommit struct {
	sha     string
	jobID   string
	reverts []string // set on a revert commit: the commits it undid
}

// Revert undoes job commits of a thread by adding one commit that reverts
// them (history is never rewritten, so a pushed branch needs no force).
// Job commits are the commits a job made on the thread's history (Job-Id
// trailer, the forked parent's included), not WIP commits, not revert
// commits, and not ones already reverted. The thread's uncommitted changes
// are first saved in a WIP commit. A ToCommit that is not on the branch, or
// more Steps than there are job commits, fails with ErrBadRevert; undoing
// that conflicts with later changes fails with ErrRevertConflict. Neither
// changes anything. A revert job delivered again finds its commit.
func (u *User) Revert(ctx context.Context, opt RevertOptions) (RevertResult, error) {
	var res RevertResult
	if err := ValidateID(opt.ThreadID); err != nil {
		return res, fmt.Errorf("revert: thread id: %w", err)
	}
	if err := ValidateJobID(opt.JobID); err != nil {
		return res, fmt.Errorf("revert: %w", err)
	}
	if (opt.ToCommit == "") == (opt.Steps <= 0) {
		return res, fmt.Errorf("revert: give a commit or a number of steps: %w", ErrBadRevert)
	}
	if _, err := u.SwitchThread(ctx, opt.ThreadID); err != nil {
		return res, fmt.Errorf("revert: %w", err)
	}
	if err := u.saveWIP(ctx, "a revert"); err != nil {
		return res, fmt.Errorf("revert: save uncommitted work: %w", err)
	}

	history, err := u.jobCommits(ctx)
	if err != nil {
		return res, fmt.Errorf("revert: %w", err)
	}
	for _, c := range history {
		if c.jobID == opt.JobID && c.reverts != nil {
			// Delivered again after it committed: the same answer.
			res.SHA, res.Reverted = c.sha, c.reverts
			res.Files, err = u.CommitFiles(ctx, c.sha)
			return res, err
		}
	}
	undo, err := u.selectUndo(ctx, history, opt)
	if err != nil {
		return res, fmt.Errorf("revert: %w", err)
	}
	if len(undo) == 0 {
		return res, nil
	}

	args := append([]string{"revert", "--no-commit", "--no-edit"}, undo...)
	if _, err := u.git(ctx, gitCall{args: append(args, "--")}); err != nil {
		if _, aerr := u.git(context.WithoutCancel(ctx), gitCall{args: []string{"revert", "--abort"}}); aerr != nil {
			return res, fmt.Errorf("revert: %w; and abort the revert: %w", err, aerr)
		}
		var ge *GitError
		if errors.As(err, &ge) && strings.Contains(ge.Stderr, "conflict") {
			return res, fmt.Errorf("revert %d job commits of thread %s: %w", len(undo), opt.ThreadID, ErrRevertConflict)
		}
		return res, fmt.Errorf("revert: %w", err)
	}
	res.Reverted = undo
	out, err := u.git(ctx, gitCall{args: []string{"diff", "--cached", "--name-only", "--no-renames", "-z"}})
	if err != nil {
		return res, fmt.Errorf("revert: %w", err)
	}
	for _, f := range strings.Split(out, "\x00") {
		if f != "" {
			res.Files = append(res.Files, f)
		}
	}
	if len(res.Files) == 0 {
		return res, nil // the edits were already undone by hand: nothing to commit
	}
	if _, err := u.git(ctx, gitCall{stdin: strings.NewReader(RevertMessage(opt.ThreadID, opt.JobID, undo)),
		args: []string{"commit", "--no-verify", "--quiet", "--cleanup=verbatim", "--file=-"}}); err != nil {
		return res, fmt.Errorf("revert: commit: %w", err)
	}
	sha, err := u.git(ctx, gitCall{args: []string{"rev-parse", "HEAD"}})
	if err != nil {
		return res, fmt.Errorf("revert: %w", err)
	}
	res.SHA = strings.TrimSpace(sha)
	u.log.InfoContext(ctx, "reverted job commits", "thread", opt.ThreadID, "commit", res.SHA, "reverted", len(undo))
	return res, nil
}

// RevertMessage is the message of a revert commit: the subject "Thread
// {threadId}: revert N job commit(s)", then Thread-Id, Job-Id and one
// Reverts trailer per commit undone.
func RevertMessage(threadID, jobID string, undone []string) string {
	noun := "job commits"
	if len(undone) == 1 {
		noun = "job commit"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Thread %s: revert %d %s\n\nThread-Id: %s\nJob-Id: %s\n", threadID, len(undone), noun, threadID, jobID)
	for _, sha := range undone {
		fmt.Fprintf(&b, "Reverts: %s\n", sha)
	}
	return b.String()
}

// jobCommits returns the commits jobs made on the checked-out branch's
// history, newest first: the worker's commits carry a Job-Id trailer.
func (u *User) jobCommits(ctx context.Context) ([]jobCommit, error) {
	out, err := u.git(ctx, gitCall{args: []string{"log", "--no-merges", "--fixed-strings", "--grep=Job-Id: ",
		"--format=%H%x00%B%x1e", "HEAD", "--"}})
	if err != nil {
		return nil, err
	}
	var commits []jobCommit
	for _, rec := range strings.Split(out, "\x1e") {
		sha, body, ok := strings.Cut(strings.TrimLeft(rec, "\n"), "\x00")
		if !ok {
			continue
		}
		c := jobCommit{sha: sha}
		for _, line := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Job-Id: "); ok {
				c.jobID = v
			}
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Reverts: "); ok {
				c.reverts = append(c.reverts, v)
			}
		}
		if c.jobID != "" {
			commits = append(commits, c)
		}
	}
	return commits, nil
}

// selectUndo returns the job commits a revert undoes, newest first: those
// not already reverted, after ToCommit or the last Steps of them.
func (u *User) selectUndo(ctx context.Context, history []jobCommit, opt RevertOptions) ([]string, error) {
	reverted := map[string]bool{}
	var live []string
	for _, c := range history {
		if c.reverts != nil {
			for _, sha := range c.reverts {
				reverted[sha] = true
			}
			continue
		}
		if !reverted[c.sha] {
			live = append(live, c.sha)
		}
	}
	if opt.Steps > 0 {
		if opt.Steps > len(live) {
			return nil, fmt.Errorf("thread %s has %d job commits to undo, not %d: %w", opt.ThreadID, len(live), opt.Steps, ErrBadRevert)
		}
		return live[:opt.Steps], nil
	}
	out, err := u.git(ctx, gitCall{args: []string{"rev-parse", "--verify", "--quiet", "--end-of-options", opt.ToCommit + "^{commit}"}})
	if err != nil {
		return nil, fmt.Errorf("commit %s is not in the repository: %w", opt.ToCommit, ErrBadRevert)
	}
	to := strings.TrimSpace(out)
	if _, err := u.git(ctx, gitCall{args: []string{"merge-base", "--is-ancestor", to, "HEAD"}}); err != nil {
		return nil, fmt.Errorf("commit %s is not on thread %s's branch: %w", opt.ToCommit, opt.ThreadID, ErrBadRevert)
	}
	out, err = u.git(ctx, gitCall{args: []string{"rev-list", to + "..HEAD", "--"}})
	if err != nil {
		return nil, err
	}
	after := strings.Fields(out)
	return slices.DeleteFunc(live, func(sha string) bool { return !slices.Contains(after, sha) }), nil
}
