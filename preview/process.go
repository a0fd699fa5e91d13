package preview

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/webordinary/claude-code-astro/internal/procfs"
)

// exitNoAstro is the launcher's exit status when the project has no astro.
const exitNoAstro = 3

// runOnce starts the dev server, waits for it to answer, and waits for it to
// exit or r to be cancelled; then it kills the process group. It returns how
// long the dev server was ready and why it ended. The process is an
// exec.Cmd of the run's context: cancelling it signals the whole process
// group (Cancel), WaitDelay kills the leader when it does not stop in time
// and stops waiting for output a straggler holds open; the group's
// stragglers are killed after.
func (d *devServer) runOnce(r *run) (time.Duration, error) {
	d.mu.Lock()
	port := d.port
	d.mu.Unlock()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	probe, err := net.Listen("tcp", addr)
	if err != nil {
		return 0, &startError{fmt.Errorf("listen on %s: %w: %w", addr, ErrPortInUse, err)}
	}
	if err := probe.Close(); err != nil {
		return 0, fmt.Errorf("close port probe: %w", err)
	}
	if d.cfg.BeforeStart != nil {
		d.cfg.BeforeStart(port)
	}

	// Whether astro is installed, the launcher finds out as the tenant (the
	// worker may not read a tenant's directory): it exits with
	// exitNoAstro.
	node, err := lookPath("node", d.cfg.PATH)
	if err != nil {
		return 0, &startError{fmt.Errorf("start the dev server: %w", err)}
	}
	launcher, removeLauncher, err := writeLauncher()
	if err != nil {
		return 0, &startError{err}
	}
	defer removeLauncher()
	g, err := newGuard(r.as)
	if err != nil {
		return 0, &startError{err}
	}

	ctx, stop := context.WithCancel(r.ctx)
	defer stop()
	portConflict := make(chan struct{}, 1)
	cmd := exec.CommandContext(ctx, node, launcher)
	cmd.Dir = r.dir
	cmd.Env = append(d.env(r.as), secretEnv+"="+g.secret, portEnv+"="+strconv.Itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: r.as.Credential}
	if r.as.Limit != nil {
		r.as.Limit(cmd) // prlimit and nice exec the launcher in place: the pid is the dev server's
	}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = d.cfg.StopTimeout
	stdout := &lineLogger{log: d.log, level: slog.LevelInfo, stream: "stdout", portConflict: portConflict}
	stderr := &lineLogger{log: d.log, level: slog.LevelWarn, stream: "stderr", portConflict: portConflict}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		return 0, &startError{fmt.Errorf("start %s: %w", node, err)}
	}
	pid := cmd.Process.Pid
	log := d.log.With("dir", r.dir, "pid", pid)
	stdout.setLog(log)
	stderr.setLog(log)
	log.Info("dev server started", "port", port)
	d.update(r, d.stateForStart(r), pid, nil)
	d.setGuard(r, g)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// finish waits for the process to end (stopping it first when it still
	// runs), kills what is left of its group, and reports why it ended.
	finish := func(waitErr error, running bool) error {
		if running {
			stop()
			waitErr = stoppedError(<-exited)
			log.Info("dev server stopped")
		}
		stdout.flush()
		stderr.flush()
		// Stragglers (esbuild and other children) die with the group.
		if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			log.Warn("kill dev server process group", "error", err)
		}
		if !waitGroupGone(pid, d.cfg.StopTimeout) {
			log.Warn("dev server process group still alive after SIGKILL", "pgid", pid)
		}
		d.update(r, d.stateAfterExit(r), 0, nil)
		return waitErr
	}

	// Wait for it to answer.
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	for ready := false; !ready; {
		select {
		case <-r.ctx.Done():
			return 0, finish(nil, true)
		case err := <-exited:
			if exit := (*exec.ExitError)(nil); errors.As(err, &exit) && exit.ExitCode() == exitNoAstro {
				ferr := finish(nil, false)
				return 0, &startError{errors.Join(fmt.Errorf("start the dev server in %s: astro is not installed (node_modules/astro): %w", r.dir, os.ErrNotExist), ferr)}
			}
			select {
			case <-portConflict: // strictPort: it said so before it exited
				ferr := finish(nil, false)
				return 0, &startError{errors.Join(fmt.Errorf("listen on %s: %w (another process took it)", addr, ErrPortInUse), ferr)}
			default:
			}
			return 0, finish(fmt.Errorf("dev server exited before it was ready: %w", exitError(err)), false)
		case <-portConflict:
			err := finish(nil, true)
			return 0, &startError{errors.Join(fmt.Errorf("listen on %s: %w (another process took it)", addr, ErrPortInUse), err)}
		case <-tick.C:
			ready, err = d.answers(r.ctx, port, g)
			if errors.Is(err, ErrForeignListener) {
				ferr := finish(nil, true)
				return 0, &startError{errors.Join(fmt.Errorf("listen on %s: %w: %w", addr, ErrPortInUse, err), ferr)}
			}
		}
	}
	tick.Stop()
	readyAt := time.Now()
	log.Info("dev server ready", "url", loopbackURL(port).String())
	d.update(r, StateReady, pid, nil)

	select {
	case <-r.ctx.Done():
		return time.Since(readyAt), finish(nil, true)
	case err := <-exited:
		return time.Since(readyAt), finish(fmt.Errorf("dev server exited: %w", exitError(err)), false)
	}
}

// stateForStart is the state while run r starts a process: starting for
// its first, restarting for later ones.
func (d *devServer) stateForStart(r *run) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state == StateStarting {
		return StateStarting
	}
	return StateRestarting
}

// stateAfterExit is the state once r's process is gone: stopped when r was
// cancelled, restarting otherwise.
func (d *devServer) stateAfterExit(r *run) string {
	if r.ctx.Err() != nil {
		return StateStopped
	}
	return StateRestarting
}

// waitGroupGone waits until process group pgid has no process left (killed
// processes linger until reaped), for at most timeout.
func waitGroupGone(pgid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if !procfs.GroupAlive(pgid) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stoppedError drops the exit error of a process that was asked to stop:
// its exit status (it was signalled), a context error, or the end of
// WaitDelay (it was killed).
func stoppedError(err error) error {
	var exit *exec.ExitError
	if errors.As(err, &exit) || errors.Is(err, exec.ErrWaitDelay) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// exitError describes how the dev server ended.
func exitError(err error) error {
	if err == nil {
		return errors.New("exit status 0")
	}
	return err
}
