package workspace

import (
	"errors"
	"fmt"

	"github.com/webordinary/claude-code-astro/internal/ident"
)

// Sentinel errors. The job layer maps them to response error codes with
// errors.Is: ErrInvalidID, ErrOutsideRoot, ErrInvalidRepoURL,
// ErrRepoMismatch and ErrBaseBranchNotFound to invalid_job,
// ErrNotInitialized to workspace_not_initialized, *GitError to git_failed,
// *InstallError to install_failed. A cancelled or timed-out operation's
// error wraps context.Canceled or context.DeadlineExceeded.
var (
	// ErrInvalidID reports a client, user, thread or job id that is not
	// 1-64 (jobs: 1-128) characters of the allowed set.
	ErrInvalidID = ident.ErrInvalidID

	// ErrOutsideRoot reports a workspace path that resolves, symlinks
	// included, outside the workspace root.
	ErrOutsideRoot = errors.New("path outside workspace root")

	// ErrInvalidRepoURL reports a repository URL of a refused form (a
	// scheme that is not allowed, credentials in it). The URL itself is
	// never part of the message.
	ErrInvalidRepoURL = ident.ErrInvalidRepoURL

	// ErrRepoMismatch reports an init naming a repository other than the
	// one the workspace was cloned from.
	ErrRepoMismatch = errors.New("workspace holds another repository")

	// ErrNotInitialized reports an operation on a user or thread that was
	// never initialised (no metadata, no repository, no thread branch), or
	// whose repository is damaged and needs an init to repair it.
	ErrNotInitialized = errors.New("workspace not initialized")

	// ErrBaseBranchNotFound reports a baseBranch that is neither on the
	// remote nor local.
	ErrBaseBranchNotFound = errors.New("base branch not found")

	// ErrWrongBranch reports a commit asked for a thread whose branch is
	// not the one checked out.
	ErrWrongBranch = errors.New("thread branch not checked out")

	// ErrThreadNotFound reports a fork of a thread that has no branch in
	// the workspace, locally or on the remote.
	ErrThreadNotFound = errors.New("thread not found")

	// ErrThreadExists reports a fork into a thread that exists already and
	// was not forked from the same parent.
	ErrThreadExists = errors.New("thread exists already")

	// ErrBadRevert reports a revert the thread cannot do: a commit that is
	// not on its branch, or more steps than it has job commits.
	ErrBadRevert = errors.New("nothing to revert there")

	// ErrRevertConflict reports job commits whose undoing conflicts with
	// later changes of the thread; nothing was changed.
	ErrRevertConflict = errors.New("revert conflicts with later changes")
)

// GitError is a failed git command. Stderr is the redacted tail of its
// standard error. It maps to the git_failed response code.
type GitError struct {
	// Op is the git subcommand, such as "clone" or "push".
	Op string
	// Stderr is the last few KB of git's standard error, secrets masked.
	Stderr string
	// Err is the underlying error: an *exec.ExitError, or the context's
	// error when the command was cancelled.
	Err error
}

// Error returns "git OP: ERR: STDERR".
func (e *GitError) Error() string {
	if e.Stderr == "" {
		return fmt.Sprintf("git %s: %v", e.Op, e.Err)
	}
	return fmt.Sprintf("git %s: %v: %s", e.Op, e.Err, e.Stderr)
}

// Unwrap returns the underlying error.
func (e *GitError) Unwrap() error { return e.Err }

// InstallError is a failed dependency install. It maps to the
// install_failed response code.
type InstallError struct {
	// Command is the install command, such as "npm ci".
	Command string
	// Output is the last few KB of the installer's combined output,
	// secrets masked.
	Output string
	// Err is the underlying error.
	Err error
}

// Error returns "install dependencies (COMMAND): ERR: OUTPUT".
func (e *InstallError) Error() string {
	if e.Output == "" {
		return fmt.Sprintf("install dependencies (%s): %v", e.Command, e.Err)
	}
	return fmt.Sprintf("install dependencies (%s): %v: %s", e.Command, e.Err, e.Output)
}

// Unwrap returns the underlying error.
func (e *InstallError) Unwrap() error { return e.Err }
