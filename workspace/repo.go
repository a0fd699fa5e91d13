package workspace

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/webordinary/claude-code-astro/internal/atomicfile"
)

// Name prefixes of the temporary directories beside project/.
const (
	cloneTempPrefix  = ".project-clone-"
	brokenTempPrefix = ".project-broken-"
	// damagedDir keeps every project a repair replaced, work and all: a
	// damaged repository may still hold edits or commits nobody pushed.
	damagedDir = ".damaged"
)

// repoHealthy reports whether project/ is a usable git repository of the
// tenant's own: a directory the tenant owns, git (run as the tenant) finds
// its .git as the top level, and HEAD resolves to a commit or names a branch
// not born yet (a thread of an empty remote).
func (u *User) repoHealthy(ctx context.Context) bool {
	fi, err := os.Lstat(u.ProjectDir)
	if err != nil || !fi.IsDir() || !u.ownedByTenant(fi) {
		return false
	}
	// One git for the common case: the top level, the git directory, and
	// HEAD's commit (a third line, missing when HEAD does not resolve).
	out, err := u.git(ctx, gitCall{args: []string{"rev-parse", "--show-toplevel", "--git-dir", "--verify", "--quiet", "HEAD^{commit}"}})
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 || len(lines) > 3 || filepath.Clean(lines[0]) != u.ProjectDir || lines[1] != ".git" {
		return false
	}
	if err == nil && len(lines) == 3 {
		return true
	}
	// HEAD names a branch that does not exist yet: unborn, not damaged.
	// (A branch that exists but whose commit cannot be read is damaged.)
	ref, err := u.git(ctx, gitCall{args: []string{"symbolic-ref", "--quiet", "HEAD"}})
	if ref = strings.TrimSpace(ref); err != nil || !strings.HasPrefix(ref, "refs/heads/") {
		return false
	}
	_, err = u.git(ctx, gitCall{args: []string{"rev-parse", "--verify", "--quiet", ref}}) // the ref alone, not its object
	return err != nil
}

// ownedByTenant reports whether fi is the tenant's (always true on an
// unprivileged sandbox, where everything is the worker's).
func (u *User) ownedByTenant(fi fs.FileInfo) bool {
	if !u.Tenant.Separate() {
		return true
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Uid == u.Tenant.UID
}

// removeTemps deletes the half clones of an earlier, killed init, and keeps
// a damaged project it had moved aside (see keepDamaged).
func (u *User) removeTemps(ctx context.Context) error {
	clones, err := filepath.Glob(filepath.Join(u.Dir, cloneTempPrefix+"*"))
	if err != nil {
		return fmt.Errorf("remove leftovers: %w", err)
	}
	for _, m := range clones {
		if err := u.removeTenantDir(ctx, m); err != nil {
			return fmt.Errorf("remove leftovers: %w", err)
		}
	}
	broken, err := filepath.Glob(filepath.Join(u.Dir, brokenTempPrefix+"*"))
	if err != nil {
		return fmt.Errorf("remove leftovers: %w", err)
	}
	for _, b := range broken {
		if err := u.keepDamaged(b); err != nil {
			return fmt.Errorf("remove leftovers: %w", err)
		}
	}
	return nil
}

// removeTenantDir deletes dir, a directory of the tenant's directly in the
// user's directory: the tenant empties it (the worker never walks a
// tenant's tree), the worker removes the entry.
func (u *User) removeTenantDir(ctx context.Context, dir string) error {
	if _, err := u.run(ctx, u.Dir, "find", dir, "-xdev", "-mindepth", "1", "-delete"); err != nil {
		return err
	}
	return os.Remove(dir)
}

// keepDamaged moves a replaced project into .damaged/, never deleting it.
func (u *User) keepDamaged(path string) error {
	dst := filepath.Join(u.Dir, damagedDir)
	if err := mkdirMode(dst, 0o700); err != nil {
		return err
	}
	kept := filepath.Join(dst, strings.TrimPrefix(filepath.Base(path), "."))
	if err := os.Rename(path, kept); err != nil {
		return err
	}
	u.log.Warn("kept the damaged project: its unpushed work can be recovered from there", "path", kept)
	return nil
}

// cloneProject clones repoURL, as the tenant, into a temporary directory of
// the tenant's beside project/ and renames it into place, so a killed clone
// never leaves a half project/. A damaged project/ is moved aside first and
// kept in .damaged/.
func (u *User) cloneProject(ctx context.Context, repoURL string) error {
	access, err := u.remote(repoURL)
	if err != nil {
		return fmt.Errorf("clone repository: %w", err)
	}
	tmp, err := os.MkdirTemp(u.Dir, cloneTempPrefix)
	if err != nil {
		return fmt.Errorf("clone repository: %w", err)
	}
	if err := u.Tenant.MkdirOwned(tmp, 0o700); err != nil {
		return errors.Join(fmt.Errorf("clone repository: %w", err), os.Remove(tmp))
	}
	if _, err := u.git(ctx, gitCall{dir: u.Dir, env: access.Env,
		args: []string{"clone", "--origin", "origin", "--", access.URL, tmp}}); err != nil {
		return errors.Join(fmt.Errorf("clone repository: %w", err), u.removeTenantDir(context.WithoutCancel(ctx), tmp))
	}
	if access.URL != repoURL {
		// origin names the repository itself, not this job's gateway.
		if _, err := u.git(ctx, gitCall{dir: tmp, args: []string{"remote", "set-url", "origin", "--", repoURL}}); err != nil {
			return errors.Join(fmt.Errorf("clone repository: %w", err), u.removeTenantDir(context.WithoutCancel(ctx), tmp))
		}
	}
	var broken string
	if _, err := os.Lstat(u.ProjectDir); err == nil {
		broken = filepath.Join(u.Dir, fmt.Sprintf("%s%d", brokenTempPrefix, time.Now().UnixNano()))
		u.log.WarnContext(ctx, "replacing damaged repository", "moved_to", filepath.Base(broken))
		if err := os.Rename(u.ProjectDir, broken); err != nil {
			return errors.Join(fmt.Errorf("clone repository: move damaged project: %w", err), u.removeTenantDir(context.WithoutCancel(ctx), tmp))
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return errors.Join(fmt.Errorf("clone repository: %w", err), u.removeTenantDir(context.WithoutCancel(ctx), tmp))
	}
	if err := os.Rename(tmp, u.ProjectDir); err != nil {
		return errors.Join(fmt.Errorf("clone repository: %w", err), u.removeTenantDir(context.WithoutCancel(ctx), tmp))
	}
	if err := atomicfile.SyncDir(u.Dir); err != nil {
		return fmt.Errorf("clone repository: %w", err)
	}
	if broken != "" {
		if err := u.keepDamaged(broken); err != nil {
			return fmt.Errorf("clone repository: keep the damaged project: %w", err)
		}
	}
	return nil
}

// removeStaleLock deletes .git/index.lock left by a killed git, as the
// tenant. The caller runs one operation per user at a time and every job
// ends with none of the tenant's processes left, so no live git holds it.
func (u *User) removeStaleLock(ctx context.Context) error {
	if _, err := os.Lstat(filepath.Join(u.ProjectDir, ".git", "index.lock")); errors.Is(err, fs.ErrNotExist) {
		return nil // the usual case, seen without starting a process
	}
	out, err := u.run(ctx, u.ProjectDir, "find", ".git", "-maxdepth", "1", "-name", "index.lock", "-print", "-delete")
	if err != nil {
		return fmt.Errorf("remove stale index lock: %w", err)
	}
	if strings.TrimSpace(out) != "" {
		u.log.WarnContext(ctx, "removed stale git index lock")
	}
	return nil
}

// refExists reports whether a full ref name resolves to a commit.
func (u *User) refExists(ctx context.Context, ref string) bool {
	_, err := u.git(ctx, gitCall{args: []string{"rev-parse", "--verify", "--quiet", ref + "^{commit}"}})
	return err == nil
}

// currentBranch returns the checked-out branch, "" when HEAD is detached.
func (u *User) currentBranch(ctx context.Context) (string, error) {
	out, err := u.git(ctx, gitCall{args: []string{"symbolic-ref", "--quiet", "--short", "HEAD"}})
	if err != nil {
		var ge *GitError
		if errors.As(err, &ge) && exitCode(ge.Err) == 1 {
			return "", nil
		}
		return "", err
	}
	return strings.TrimSpace(out), nil
}

func (u *User) dirty(ctx context.Context) (bool, error) {
	out, err := u.git(ctx, gitCall{args: []string{"status", "--porcelain", "-z"}})
	if err != nil {
		return false, err
	}
	return out != "", nil
}

// saveWIP commits every uncommitted change, untracked files included, to
// the current branch as a work-in-progress commit before what ("switching
// to thread t2", "a revert"), so that nothing is lost. Nothing is stashed.
func (u *User) saveWIP(ctx context.Context, what string) error {
	dirty, err := u.dirty(ctx)
	if err != nil || !dirty {
		return err
	}
	cur, err := u.currentBranch(ctx)
	if err != nil {
		return err
	}
	if cur == "" {
		// Detached: give the work a branch so it stays reachable.
		cur = fmt.Sprintf("wip-detached-%d", time.Now().UnixNano())
		if _, err := u.git(ctx, gitCall{args: []string{"checkout", "-b", cur}}); err != nil {
			return err
		}
	}
	from := "branch " + cur
	if id, ok := strings.CutPrefix(cur, "thread-"); ok {
		from = "thread " + id
	}
	msg := fmt.Sprintf("WIP: %s (saved before %s)", from, what)
	if _, err := u.git(ctx, gitCall{args: []string{"add", "-A"}}); err != nil {
		return err
	}
	if _, err := u.git(ctx, gitCall{args: []string{"commit", "--no-verify", "--quiet", "-m", msg}}); err != nil {
		return err
	}
	u.log.InfoContext(ctx, "saved uncommitted work", "branch", cur, "before", what)
	return nil
}

// checkoutThread makes thread-{threadID} the checked-out branch, saving
// the current branch's uncommitted work first. The branch is taken from
// the local repository, else from the remote; only when create is set is
// a missing branch started: at startAt (a commit) when set, else from base
// (or the remote's default branch).
// resumed reports that the branch already existed.
func (u *User) checkoutThread(ctx context.Context, threadID string, create bool, base, startAt string) (resumed bool, err error) {
	b := Branch(threadID)
	local := "refs/heads/" + b
	remote := "refs/remotes/origin/" + b
	cur, err := u.currentBranch(ctx)
	if err != nil {
		return false, err
	}
	if cur == b {
		return u.refExists(ctx, local) || u.refExists(ctx, remote), nil
	}
	if err := u.saveWIP(ctx, "switching to thread "+threadID); err != nil {
		return false, fmt.Errorf("save work of %s: %w", cur, err)
	}
	switch {
	case u.refExists(ctx, local):
		_, err = u.git(ctx, gitCall{args: []string{"checkout", "--quiet", b, "--"}})
		return true, err
	case u.refExists(ctx, remote):
		_, err = u.git(ctx, gitCall{args: []string{"checkout", "--quiet", "--track", "-b", b, "origin/" + b, "--"}})
		return true, err
	case !create:
		return false, fmt.Errorf("thread %s has no branch: %w", threadID, ErrNotInitialized)
	}
	start := startAt
	if start == "" {
		if start, err = u.resolveBase(ctx, base); err != nil {
			return false, err
		}
	}
	args := []string{"checkout", "--quiet", "--no-track", "-b", b}
	if start != "" {
		args = append(args, start)
	}
	_, err = u.git(ctx, gitCall{args: append(args, "--")})
	return false, err
}

// resolveBase returns the start point of a new thread branch: base on the
// remote or locally, or without base the remote's default branch
// (origin/HEAD), then main or master, then HEAD. "" means the repository
// has no commit at all.
func (u *User) resolveBase(ctx context.Context, base string) (string, error) {
	if base != "" {
		for _, ref := range []string{"refs/remotes/origin/" + base, "refs/heads/" + base} {
			if u.refExists(ctx, ref) {
				return ref, nil
			}
		}
		return "", fmt.Errorf("resolve base branch: %w", ErrBaseBranchNotFound)
	}
	if out, err := u.git(ctx, gitCall{args: []string{"symbolic-ref", "--quiet", "refs/remotes/origin/HEAD"}}); err == nil {
		if ref := strings.TrimSpace(out); ref != "" && u.refExists(ctx, ref) {
			return ref, nil
		}
	}
	for _, ref := range []string{"refs/remotes/origin/main", "refs/remotes/origin/master", "refs/heads/main", "refs/heads/master", "HEAD"} {
		if u.refExists(ctx, ref) {
			return ref, nil
		}
	}
	return "", nil
}

// fastForward moves the checked-out thread branch to origin's copy when
// that is strictly ahead (pushed from elsewhere). Divergence is left alone:
// the next push reports it.
func (u *User) fastForward(ctx context.Context, threadID string) {
	b := Branch(threadID)
	remote := "refs/remotes/origin/" + b
	if !u.refExists(ctx, remote) {
		return
	}
	if _, err := u.git(ctx, gitCall{args: []string{"merge-base", "--is-ancestor", "refs/heads/" + b, remote}}); err != nil {
		return
	}
	if dirty, err := u.dirty(ctx); err != nil || dirty {
		return
	}
	if _, err := u.git(ctx, gitCall{args: []string{"merge", "--ff-only", "--quiet", remote}}); err != nil {
		u.log.WarnContext(ctx, "fast-forward thread branch", "branch", b, "error", err)
	}
}
