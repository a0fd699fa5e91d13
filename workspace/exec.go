package workspace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// tailSize is how much of a child's error output is kept for errors.
const tailSize = 4 << 10

// credentialHelper answers git's "get" with the token from the helper's own
// environment. It is a constant: nothing from a job is ever part of it.
const credentialHelper = `!f() { test "$1" = get || exit 0; echo username=x-access-token; echo "password=${GIT_TOKEN}"; }; f`

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
	// authURL, when set, gives the token to this call through the
	// credential helper, scoped to that repository URL's scheme and host.
	authURL string
}

// baseEnv is the environment shared by every child: nothing is inherited.
func (w *Workspaces) baseEnv() []string {
	return []string{
		"PATH=" + w.cfg.PATH,
		"HOME=" + w.cfg.Home,
		"LANG=C",
		"LC_ALL=C",
	}
}

// git runs git in the user's project directory and returns its standard
// output. A failure is a *GitError with the redacted stderr tail.
func (u *User) git(ctx context.Context, c gitCall) (string, error) {
	w := u.ws
	dir := c.dir
	if dir == "" {
		dir = u.ProjectDir
	}
	args := []string{
		"-c", "safe.directory=" + u.ProjectDir,
		"-c", "core.hooksPath=/dev/null",
		"-c", "core.fsmonitor=false",
		"-c", "commit.gpgsign=false",
		"-c", "advice.detachedHead=false",
		"-c", "credential.helper=",
	}
	env := append(w.baseEnv(),
		"GIT_TERMINAL_PROMPT=0",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_CEILING_DIRECTORIES="+u.Dir,
		"GIT_AUTHOR_NAME="+w.cfg.AuthorName,
		"GIT_AUTHOR_EMAIL="+w.cfg.AuthorEmail,
		"GIT_COMMITTER_NAME="+w.cfg.AuthorName,
		"GIT_COMMITTER_EMAIL="+w.cfg.AuthorEmail,
	)
	if c.authURL != "" && w.cfg.Token != "" {
		if scope := credentialScope(c.authURL, w.tokenHosts()); scope != "" {
			args = append(args, "-c", "credential."+scope+".helper="+credentialHelper)
			// The repository's own config is not trusted with the token
			// (customer code can write it): no custom ssh command, proxy,
			// unverified TLS or transport helper while the token is here.
			args = append(args, "-c", "core.sshCommand=ssh", "-c", "http.proxy=", "-c", "https.proxy=",
				"-c", "http.sslVerify=true", "-c", "protocol.ext.allow=never")
			env = append(env, "GIT_TOKEN="+w.cfg.Token)
		}
	}
	args = append(args, c.args...)

	cmd := exec.CommandContext(ctx, w.git, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdin = c.stdin
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: tailSize}
	cmd.Stdout = &stdout
	cmd.Stderr = stderr
	killGroup(cmd)

	err := cmd.Run()
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w: %w", ctxErr, err) // both stay in the chain: the exit code is not lost
		}
		return stdout.String(), &GitError{Op: subcommand(c.args), Stderr: w.redactor.String(stderr.String()), Err: err}
	}
	return stdout.String(), nil
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
