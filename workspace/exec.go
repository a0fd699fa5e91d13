package workspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// tailSize is how much of a child's error output is kept for errors.
const tailSize = 4 << 10

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
	cut bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.cut = true
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	s := strings.ToValidUTF8(string(t.buf), "")
	if t.cut {
		s = "..." + s
	}
	return strings.TrimSpace(s)
}

// gitCall is one git invocation.
type gitCall struct {
	args  []string
	stdin io.Reader
	// dir is the working directory; empty means the project directory.
	dir string
	// env are further "KEY=value" entries: a remote's credential.
	env []string
}

// childEnv is the environment every child of the user starts from: nothing
// is inherited from the worker.
func (u *User) childEnv() []string {
	return []string{
		"PATH=" + u.ws.cfg.PATH,
		"HOME=" + u.HomeDir,
		"TMPDIR=" + u.TmpDir,
		"LANG=C",
		"LC_ALL=C",
	}
}

// command returns name with args, run as the user's tenant in dir with env,
// in a process group of its own that is killed whole when ctx ends.
func (u *User) command(ctx context.Context, dir string, env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	killGroup(cmd)
	u.Tenant.Apply(cmd)
	return cmd
}

// git runs git as the tenant in the user's project directory and returns its
// standard output. A failure is a *GitError with the redacted stderr tail.
//
// The repository's config is the tenant's: it cannot make git run a hook,
// an fsmonitor, a custom ssh command, a proxy or a transport helper, and no
// global or system config is read. A network operation names its URL on the
// command line (see RemoteAccess) and carries its credential only in git's
// environment, which no other uid can read.
func (u *User) git(ctx context.Context, c gitCall) (string, error) {
	w := u.ws
	dir := c.dir
	if dir == "" {
		dir = u.ProjectDir
	}
	args := []string{
		"-c", "core.hooksPath=/dev/null",
		"-c", "core.fsmonitor=false",
		"-c", "core.excludesFile=" + w.exclude,
		"-c", "commit.gpgsign=false",
		"-c", "advice.detachedHead=false",
		"-c", "credential.helper=",
		"-c", "core.sshCommand=ssh",
		"-c", "http.proxy=", "-c", "https.proxy=",
		"-c", "http.sslVerify=true",
		"-c", "protocol.ext.allow=never",
	}
	env := append(u.childEnv(),
		"GIT_TERMINAL_PROMPT=0",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL="+w.gitconfig,
		"GIT_CEILING_DIRECTORIES="+u.Dir,
		"GIT_AUTHOR_NAME="+w.cfg.AuthorName,
		"GIT_AUTHOR_EMAIL="+w.cfg.AuthorEmail,
		"GIT_COMMITTER_NAME="+w.cfg.AuthorName,
		"GIT_COMMITTER_EMAIL="+w.cfg.AuthorEmail,
	)
	env = append(env, c.env...)
	args = append(args, c.args...)

	cmd := u.command(ctx, dir, env, w.git, args...)
	cmd.Stdin = c.stdin
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: tailSize}
	cmd.Stdout = &stdout
	cmd.Stderr = stderr

	err := cmd.Run()
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w: %w", ctxErr, err) // both stay in the chain: the exit code is not lost
		}
		return stdout.String(), &GitError{Op: subcommand(c.args), Stderr: w.redactor.String(stderr.String()), Err: err}
	}
	return stdout.String(), nil
}

// run runs a command of the tenant's (rm, mkdir, find: a file operation
// inside its directories that the worker must not do itself) and returns its
// output.
func (u *User) run(ctx context.Context, dir string, name string, args ...string) (string, error) {
	cmd := u.command(ctx, dir, u.childEnv(), name, args...)
	var out bytes.Buffer
	tail := &tailBuffer{max: tailSize}
	cmd.Stdout = &out
	cmd.Stderr = tail
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w: %w", ctxErr, err)
		}
		return out.String(), fmt.Errorf("%s %s: %w: %s", filepath.Base(name), strings.Join(args, " "), err, u.ws.redactor.String(tail.String()))
	}
	return out.String(), nil
}

// remote returns how git reaches repoURL for this job.
func (u *User) remote(repoURL string) (RemoteAccess, error) {
	if u.Remote == nil {
		return RemoteAccess{URL: repoURL}, nil
	}
	a, err := u.Remote(repoURL)
	if err != nil {
		return RemoteAccess{}, fmt.Errorf("reach the repository: %w", err)
	}
	return a, nil
}

// subcommand returns the first argument that is not an option.
func subcommand(args []string) string {
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			return a
		}
	}
	return "?"
}

// killGroup runs cmd in its own process group and kills the whole group
// when the context ends, since git and npm start children of their own.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		if cmd.Process == nil {
			return nil
		}
		if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return err
		}
		return nil
	}
	cmd.WaitDelay = 5 * time.Second
}

// exitCode returns the exit code inside err, or -1.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}
