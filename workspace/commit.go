package workspace

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// SubjectRunes is how many runes of the instruction a commit subject holds.
const SubjectRunes = 50

// maxPushReason bounds the push failure reason handed back.
const maxPushReason = 1024

// CommitResult is the outcome of Commit.
type CommitResult struct {
	// SHA is the new commit, "" when nothing changed.
	SHA string
	// Files are the changed paths relative to the project root (a rename
	// is its old and its new path).
	Files []string
}

// CommitMessage returns the commit message of a job: the subject
// "Thread {threadId}: {first 50 runes of the instruction}" with line breaks
// turned into spaces, a blank line, and Thread-Id and Job-Id trailers.
func CommitMessage(threadID, jobID, instruction string) string {
	head := truncateRunes(instruction, SubjectRunes)
	head = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ", "\x00", "").Replace(head)
	return fmt.Sprintf("Thread %s: %s\n\nThread-Id: %s\nJob-Id: %s\n", threadID, head, threadID, jobID)
}

// Commit stages every change of the project (git add -A) and commits it to
// the thread's branch, which must be checked out, with CommitMessage. When
// nothing changed it returns an empty result and makes no commit.
func (u *User) Commit(ctx context.Context, threadID, jobID, instruction string) (CommitResult, error) {
	return u.commit(ctx, threadID, jobID, instruction, "")
}

// CommitPartial is Commit for a job the agent did not finish: the subject
// ends in " (why)", such as "(cancelled)" or "(budget exceeded)".
func (u *User) CommitPartial(ctx context.Context, threadID, jobID, instruction, why string) (CommitResult, error) {
	return u.commit(ctx, threadID, jobID, instruction, why)
}

func (u *User) commit(ctx context.Context, threadID, jobID, instruction, why string) (CommitResult, error) {
	var res CommitResult
	if err := ValidateID(threadID); err != nil {
		return res, fmt.Errorf("commit: thread id: %w", err)
	}
	if err := ValidateJobID(jobID); err != nil {
		return res, fmt.Errorf("commit: %w", err)
	}
	if err := u.ready(ctx); err != nil {
		return res, fmt.Errorf("commit: %w", err)
	}
	cur, err := u.currentBranch(ctx)
	if err != nil {
		return res, fmt.Errorf("commit: %w", err)
	}
	if cur != Branch(threadID) {
		return res, fmt.Errorf("commit thread %s: on %q: %w", threadID, cur, ErrWrongBranch)
	}
	if _, err := u.git(ctx, gitCall{args: []string{"add", "-A"}}); err != nil {
		return res, fmt.Errorf("commit: %w", err)
	}
	out, err := u.git(ctx, gitCall{args: []string{"diff", "--cached", "--name-only", "--no-renames", "-z"}})
	if err != nil {
		return res, fmt.Errorf("commit: %w", err)
	}
	for _, f := range strings.Split(out, "\x00") {
		if f != "" {
			res.Files = append(res.Files, f)
		}
	}
	if len(res.Files) == 0 {
		return CommitResult{}, nil
	}
	msg := CommitMessage(threadID, jobID, instruction)
	if why != "" {
		subject, rest, _ := strings.Cut(msg, "\n")
		msg = subject + " (" + why + ")\n" + rest
	}
	if _, err := u.git(ctx, gitCall{stdin: strings.NewReader(msg),
		args: []string{"commit", "--no-verify", "--quiet", "--cleanup=verbatim", "--file=-"}}); err != nil {
		return CommitResult{}, fmt.Errorf("commit: %w", err)
	}
	sha, err := u.git(ctx, gitCall{args: []string{"rev-parse", "HEAD"}})
	if err != nil {
		return CommitResult{}, fmt.Errorf("commit: %w", err)
	}
	res.SHA = strings.TrimSpace(sha)
	u.log.InfoContext(ctx, "committed", "thread", threadID, "job", jobID, "commit", res.SHA, "files", len(res.Files))
	return res, nil
}

// FindJobCommit looks on the thread's branch for the commit carrying the
// trailer "Job-Id: {jobID}", so that a redelivered job never commits
// twice. A thread without a branch has no commit.
func (u *User) FindJobCommit(ctx context.Context, threadID, jobID string) (sha string, found bool, err error) {
	if err := ValidateID(threadID); err != nil {
		return "", false, fmt.Errorf("find job commit: thread id: %w", err)
	}
	if err := ValidateJobID(jobID); err != nil {
		return "", false, fmt.Errorf("find job commit: %w", err)
	}
	if err := u.ready(ctx); err != nil {
		return "", false, fmt.Errorf("find job commit: %w", err)
	}
	ref := "refs/heads/" + Branch(threadID)
	if !u.refExists(ctx, ref) {
		return "", false, nil
	}
	out, err := u.git(ctx, gitCall{args: []string{"log", "--fixed-strings", "--grep=Job-Id: " + jobID,
		"--format=%H%x00%B%x1e", ref, "--"}})
	if err != nil {
		return "", false, fmt.Errorf("find job commit: %w", err)
	}
	want := "Job-Id: " + jobID
	for _, rec := range strings.Split(out, "\x1e") {
		hash, body, ok := strings.Cut(strings.TrimLeft(rec, "\n"), "\x00")
		if !ok {
			continue
		}
		for _, line := range strings.Split(body, "\n") {
			if strings.TrimSpace(line) == want {
				return hash, true, nil
			}
		}
	}
	return "", false, nil
}

// Push pushes the thread's branch to origin and sets it as upstream. A
// repository without a remote is not pushed. A push the remote rejects or
// cannot be reached is not an error: pushed is false and reason says why
// (secrets masked); the next Push tries again. err is reserved for a
// workspace that is not ready and for a cancelled context.
func (u *User) Push(ctx context.Context, threadID string) (pushed bool, reason string, err error) {
	if err := ValidateID(threadID); err != nil {
		return false, "", fmt.Errorf("push: thread id: %w", err)
	}
	if err := u.ready(ctx); err != nil {
		return false, "", fmt.Errorf("push: %w", err)
	}
	meta, err := u.Metadata()
	if err != nil {
		return false, "", fmt.Errorf("push: %w", err)
	}
	b := Branch(threadID)
	if !u.refExists(ctx, "refs/heads/"+b) {
		// A new thread of an empty repository has no commit yet.
		if cur, err := u.currentBranch(ctx); err == nil && cur == b {
			return false, "branch has no commits yet", nil
		}
		return false, "", fmt.Errorf("push: thread %s has no branch: %w", threadID, ErrNotInitialized)
	}
	if meta.RepoURL == "" {
		return false, "repository has no remote", nil
	}
	access, err := u.remote(meta.RepoURL)
	if err != nil {
		return false, err.Error(), nil
	}
	// The recorded repository, named on the command line: the repository's
	// own config (origin, insteadOf, a push URL) cannot send it elsewhere.
	_, err = u.git(ctx, gitCall{env: access.Env,
		args: []string{"push", "--quiet", "--no-thin", "--", access.URL, "refs/heads/" + b + ":refs/heads/" + b}})
	if err == nil {
		// What git push to origin would have recorded: the branch as the
		// remote now has it.
		_, err = u.git(ctx, gitCall{args: []string{"update-ref", "refs/remotes/origin/" + b, "refs/heads/" + b}})
		if err != nil {
			u.log.WarnContext(ctx, "record the pushed branch", "branch", b, "error", err)
			err = nil
		}
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return false, "", fmt.Errorf("push: %w", err)
		}
		var ge *GitError
		if !errors.As(err, &ge) {
			return false, "", fmt.Errorf("push: %w", err)
		}
		reason := ge.Stderr
		if reason == "" {
			reason = ge.Err.Error()
		}
		if len(reason) > maxPushReason {
			reason = "..." + strings.ToValidUTF8(reason[len(reason)-maxPushReason:], "")
		}
		u.log.WarnContext(ctx, "push failed", "branch", b, "reason", reason)
		return false, reason, nil
	}
	return true, "", nil
}

// CommitFiles returns the paths a commit changed, relative to the project
// root: what a job that committed before its worker died reports again.
func (u *User) CommitFiles(ctx context.Context, sha string) ([]string, error) {
	if !isHexSHA(sha) {
		return nil, fmt.Errorf("commit files: %q is not a commit id", sha)
	}
	if err := u.ready(ctx); err != nil {
		return nil, fmt.Errorf("commit files: %w", err)
	}
	out, err := u.git(ctx, gitCall{args: []string{"diff-tree", "-z", "--no-commit-id", "--name-only", "-r", "--no-renames", "--root", sha}})
	if err != nil {
		return nil, fmt.Errorf("commit files: %w", err)
	}
	var files []string
	for _, name := range strings.Split(out, "\x00") {
		if name = strings.TrimPrefix(name, "\n"); name != "" {
			files = append(files, name)
		}
	}
	return files, nil
}

// isHexSHA reports whether s looks like a full commit id.
func isHexSHA(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}
