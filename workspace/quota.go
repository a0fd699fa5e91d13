package workspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrQuotaExceeded is returned by CheckQuota for a workspace that holds
// more than its quota, or that cannot be measured.
var ErrQuotaExceeded = errors.New("workspace quota exceeded")

// Quota bounds what one user's workspace may hold: the tenant's parts of
// it (the project with its node_modules, HOME with the npm cache and
// TMPDIR, the agent's sessions). A zero field means no bound on it.
type Quota struct {
	// Bytes is the most disk space, as allocated (du), in bytes
	// (TENANT_DISK_MB).
	Bytes int64
	// Inodes is the most files, directories and links (TENANT_MAX_FILES).
	Inodes int64
}

// Usage is what a workspace holds.
type Usage struct {
	Bytes, Inodes int64
}

// DiskUsage measures the tenant's parts of the workspace with du, run as
// the tenant (the worker cannot enter a tenant's 0700 directories, and never
// reads them itself). A part du cannot read entirely (a directory its
// tenant made unreadable) is an error: the usage cannot be known.
func (u *User) DiskUsage(ctx context.Context) (Usage, error) {
	var parts []string
	for _, d := range []string{u.ProjectDir, u.HomeDir, u.AgentDir} {
		if exists(d) {
			parts = append(parts, d)
		}
	}
	if len(parts) == 0 {
		return Usage{}, nil
	}
	var use Usage
	for _, m := range []struct {
		flag string
		into *int64
	}{{"-B1", &use.Bytes}, {"--inodes", &use.Inodes}} {
		out, err := u.du(ctx, append([]string{"-s", "-c", "-x", m.flag, "--"}, parts...))
		if err != nil {
			return Usage{}, fmt.Errorf("measure the workspace: %w", err)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		total, _, _ := strings.Cut(lines[len(lines)-1], "\t")
		if *m.into, err = strconv.ParseInt(strings.TrimSpace(total), 10, 64); err != nil {
			return Usage{}, fmt.Errorf("measure the workspace: du printed %q", lines[len(lines)-1])
		}
	}
	return use, nil
}

// vanished is how du (LC_ALL=C) ends the line about a file that was
// removed while it walked: the file is no longer there to count.
const vanished = ": No such file or directory"

// du runs du as the tenant and returns its standard output. du exits 1 for
// any file it could not measure; when every file it complains of vanished
// during the walk (an install writing and removing temporary files beside
// the measure), its totals are right and are taken. Any other complaint (a
// directory it may not read) is an error.
func (u *User) du(ctx context.Context, args []string) (string, error) {
	cmd := u.command(ctx, u.Dir, u.childEnv(), "du", args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil && (ctx.Err() != nil || !onlyVanished(errOut.String())) {
		tail := errOut.String()
		if len(tail) > tailSize {
			tail = "..." + tail[len(tail)-tailSize:]
		}
		return "", fmt.Errorf("du %s: %w: %s", strings.Join(args, " "), err, u.ws.redactor.String(tail))
	}
	return out.String(), nil
}

// onlyVanished reports whether every line of du's stderr is about a file
// that vanished (and there is at least one).
func onlyVanished(stderr string) bool {
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	for _, l := range lines {
		if !strings.HasSuffix(l, vanished) {
			return false
		}
	}
	return len(lines) > 0 && lines[0] != ""
}

// CheckQuota measures the workspace and returns an error wrapping
// ErrQuotaExceeded when it holds more than q allows or cannot be measured
// (a context error is returned as it is).
func (u *User) CheckQuota(ctx context.Context, q Quota) (Usage, error) {
	if q == (Quota{}) {
		return Usage{}, nil
	}
	use, err := u.DiskUsage(ctx)
	switch {
	case ctx.Err() != nil:
		return use, ctx.Err()
	case err != nil:
		return use, fmt.Errorf("%w: %w", ErrQuotaExceeded, err)
	case q.Bytes > 0 && use.Bytes > q.Bytes:
		return use, fmt.Errorf("%w: the workspace holds %d MB, more than its %d MB (TENANT_DISK_MB)", ErrQuotaExceeded, use.Bytes>>20, q.Bytes>>20)
	case q.Inodes > 0 && use.Inodes > q.Inodes:
		return use, fmt.Errorf("%w: the workspace holds %d files, more than its %d (TENANT_MAX_FILES)", ErrQuotaExceeded, use.Inodes, q.Inodes)
	}
	return use, nil
}

// Reclaim brings a workspace that exceeded its quota back under it, so its
// next job can run: the working tree's uncommitted changes are discarded
// (git reset --hard, git clean of untracked files) and TMPDIR emptied; when
// that is not enough, the ignored files go too (node_modules is installed
// again by the next job) and HOME's npm cache; and when even that is not
// enough, the agent's sessions (the thread's next execute starts a fresh
// one). Commits are kept. Everything runs as the tenant.
func (u *User) Reclaim(ctx context.Context, q Quota) error {
	var errs []error
	if _, err := u.git(ctx, gitCall{args: []string{"reset", "--hard", "--quiet", "HEAD"}}); err != nil {
		errs = append(errs, err)
	}
	if _, err := u.git(ctx, gitCall{args: []string{"clean", "-ffdq"}}); err != nil {
		errs = append(errs, err)
	}
	if _, err := u.run(ctx, u.HomeDir, "find", u.TmpDir, "-mindepth", "1", "-delete"); err != nil {
		errs = append(errs, err)
	}
	if _, err := u.CheckQuota(ctx, q); err == nil {
		return errors.Join(errs...)
	}
	errs = errs[:0]
	u.log.WarnContext(ctx, "the workspace is still over its quota: removing its ignored files and the npm cache too")
	if _, err := u.git(ctx, gitCall{args: []string{"clean", "-ffdxq"}}); err != nil {
		errs = append(errs, err)
	}
	if _, err := u.run(ctx, u.HomeDir, "rm", "-rf", "--", u.HomeDir+"/.npm"); err != nil {
		errs = append(errs, err)
	}
	if _, err := u.CheckQuota(ctx, q); err == nil {
		return errors.Join(errs...)
	}
	// The agent's transcripts hold what its tools wrote: the thread's next
	// execute then starts a fresh session (freshSession).
	u.log.WarnContext(ctx, "the workspace is still over its quota: removing the agent's sessions too")
	if _, err := u.run(ctx, u.HomeDir, "find", u.AgentDir, "-mindepth", "1", "-delete"); err != nil {
		errs = append(errs, err)
	}
	if _, err := u.CheckQuota(ctx, q); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("reclaim the workspace: %w", errors.Join(errs...))
	}
	return nil
}
