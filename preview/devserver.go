package preview

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/webordinary/claude-code-astro/internal/backoff"
	"github.com/webordinary/claude-code-astro/internal/procfs"
)

// The states of a DevServer, as State reports them.
const (
	// StateStopped: no dev server runs (before the first Target, after Close).
	StateStopped = "stopped"
	// StateStarting: the dev server of a new target is starting.
	StateStarting = "starting"
	// StateReady: the dev server answers on its port.
	StateReady = "ready"
	// StateRestarting: the dev server died and is being started again.
	StateRestarting = "restarting"
	// StateFailed: the dev server could not be started at all (port in use,
	// no astro executable); a new Target tries again.
	StateFailed = "failed"
)

var (
	// ErrClosed is returned by Target after Close.
	ErrClosed = errors.New("dev server closed")
	// ErrPortInUse means another process listens on the dev server's port.
	ErrPortInUse = errors.New("port in use")
	// ErrRetargeted is returned by a Target whose wait was cut short by
	// another Target for a different project.
	ErrRetargeted = errors.New("dev server re-targeted to another project")
	// ErrNotReady is returned by Target when the dev server did not answer
	// within ReadyTimeout.
	ErrNotReady = errors.New("dev server not ready")
)

// Defaults for the zero fields of DevServerConfig.
const (
	DefaultPATH         = "/usr/local/bin:/usr/bin:/bin"
	DefaultReadyTimeout = 60 * time.Second
	DefaultMinBackoff   = 250 * time.Millisecond
	DefaultMaxBackoff   = 30 * time.Second
	DefaultStopTimeout  = 5 * time.Second
)

// stableAfter is how long a dev server must have been ready for a later
// crash to restart with the minimum backoff again.
const stableAfter = 30 * time.Second

// probeInterval is the pause between two readiness probes.
const probeInterval = 50 * time.Millisecond

// maxLogLine is the longest line of dev server output logged whole.
const maxLogLine = 16 << 10

// ansi matches terminal colour sequences in the dev server's output.
var ansi = regexp.MustCompile("\x1b\\[[0-9;]*[A-Za-z]")

// portTaken is what Vite prints when it moves to another port, and
// portTakenStrict what it prints when it may not (strictPort, as the
// launcher sets it).
var (
	portTaken       = []byte("is in use, trying another one")
	portTakenStrict = []byte("is already in use")
)

// DevServerConfig configures a DevServer. Only Port is required.
type DevServerConfig struct {
	// Port is the loopback TCP port the dev server listens on (ASTRO_PORT).
	Port int
	// PATH is the dev server's PATH, where it finds node. Empty means
	// DefaultPATH.
	PATH string
	// Home is the dev server's HOME. Empty leaves HOME unset.
	Home string
	// Logger receives the dev server's output, one record per line with the
	// attribute source=astro, and its lifecycle events. Nil discards them.
	Logger *slog.Logger
	// ReadyTimeout bounds how long Target waits for the dev server to
	// answer. Zero means DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// MinBackoff and MaxBackoff bound the pause before restarting a dev
	// server that died; the pause doubles after each quick death. Zero means
	// DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// StopTimeout is how long a stopping dev server gets after SIGTERM
	// before its process group is killed. Zero means DefaultStopTimeout.
	StopTimeout time.Duration
	// PickPort, when set, gives the dev server another port when its own is
	// held by someone else (the start fails, or another uid's listener
	// answers there): such a port is never used. Nil keeps Port, and such a
	// start fails with ErrPortInUse.
	PickPort func() (int, error)
	// BeforeStart, when set, is called with the port after the worker found
	// it free and before the dev server starts listening on it: a test hook
	// to take the port in that window.
	BeforeStart func(port int)
}

// DevServer runs the Astro dev server (`astro dev`) of one project directory
// on 127.0.0.1:Port and keeps it running: a supervising goroutine restarts it
// with exponential backoff when it dies, until Close. It runs in its own
// process group, which is killed whole when it stops.
//
// Switching git branches inside the served directory needs no restart: the
// dev server's file watcher sees the checkout.
//
// The zero value is not usable: call NewDevServer. Its methods are safe for
// concurrent use.
type DevServer struct {
	cfg   DevServerConfig
	log   *slog.Logger
	probe *http.Client

	mu      sync.Mutex
	port    int    // the port of the current (or next) process
	guard   *guard // the current process's secret and owner
	state   string
	dir     string
	pid     int
	gen     uint64 // counts targets; a run only changes state while it is current
	lastErr error
	changed chan struct{} // closed and replaced at every change of state
	closed  bool
	run     *run
}

// RunAs says whom a dev server runs as: a tenant's uid and HOME. The zero
// value runs it as the worker with DevServerConfig.Home.
type RunAs struct {
	// Credential is the uid and gid of the dev server and all it starts;
	// nil runs it as the worker.
	Credential *syscall.Credential
	// Home is its HOME; empty means DevServerConfig.Home.
	Home string
	// Limit, when set, puts the tenant's limits on the dev server's
	// command (memory, niceness: sandbox.Tenant.Limit) before it starts.
	Limit func(*exec.Cmd)
}

// same reports whether a and b run a dev server as the same user.
func (a RunAs) same(b RunAs) bool {
	if (a.Credential == nil) != (b.Credential == nil) || a.Home != b.Home {
		return false
	}
	return a.Credential == nil || (a.Credential.Uid == b.Credential.Uid && a.Credential.Gid == b.Credential.Gid)
}

// run is one target's supervising goroutine.
type run struct {
	gen    uint64
	dir    string
	as     RunAs
	ctx    context.Context
	cancel context.CancelFunc
	kick   chan struct{} // cuts a restart's backoff short
	done   chan struct{}
}

// NewDevServer returns a stopped DevServer; Target starts it.
func NewDevServer(cfg DevServerConfig) *DevServer {
	if cfg.PATH == "" {
		cfg.PATH = DefaultPATH
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = DefaultReadyTimeout
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = cfg.MinBackoff
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &DevServer{
		cfg: cfg,
		log: logger,
		probe: &http.Client{
			Timeout: 10 * time.Second, // a cold first page waits for Vite's dependency scan
			Transport: &http.Transport{
				Proxy:             nil,
				DialContext:       dialChecked,
				DisableKeepAlives: true,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		port:    cfg.Port,
		state:   StateStopped,
		changed: make(chan struct{}),
	}
}

// Target makes the dev server serve projectDir: it starts it, or stops the
// one serving another directory and starts it anew. It does nothing when the
// dev server already serves projectDir (unless it failed; while it restarts
// after a crash, Target starts it now rather than after the backoff and waits
// for it). It returns once
// the dev server answers GET /, or with an error when it failed to start, ctx
// ended, ReadyTimeout passed or another Target re-targeted it. A dev server
// still starting when Target returns keeps starting in the background.
func (d *DevServer) Target(ctx context.Context, projectDir string) error {
	return d.TargetAs(ctx, projectDir, RunAs{})
}

// TargetAs is Target with the dev server run as as: a tenant's uid and HOME.
// A dev server of the same directory run as someone else is restarted.
func (d *DevServer) TargetAs(ctx context.Context, projectDir string, as RunAs) error {
	if d.cfg.Port <= 0 || d.cfg.Port > 65535 {
		return fmt.Errorf("target dev server: invalid port %d", d.cfg.Port)
	}
	dir, err := filepath.Abs(projectDir)
	if err != nil {
		return fmt.Errorf("target dev server: resolve %s: %w", projectDir, err)
	}
	if info, err := os.Lstat(dir); err != nil {
		return fmt.Errorf("target dev server: %w", err)
	} else if !info.IsDir() {
		return fmt.Errorf("target dev server: %s is not a directory", dir)
	}

	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	if d.run != nil && d.dir == dir && d.run.as.same(as) && d.state != StateFailed {
		gen := d.gen
		select {
		case d.run.kick <- struct{}{}: // restarting: do not wait out the backoff
		default:
		}
		d.mu.Unlock()
		return d.waitReady(ctx, gen, dir)
	}
	// The new run is current before the old one is told to stop: the proxy
	// stops forwarding to the old project at once (a page must not load from
	// a server that is going away), and the old run's last state changes are
	// ignored.
	old := d.run
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.gen++
	r := &run{gen: d.gen, dir: dir, as: as, ctx: runCtx, cancel: cancel, kick: make(chan struct{}, 1), done: make(chan struct{})}
	d.run = r
	d.dir = dir
	d.pid = 0
	d.lastErr = nil
	d.setStateLocked(StateStarting)
	d.mu.Unlock()
	if old != nil {
		d.log.InfoContext(ctx, "re-targeting dev server", "from", old.dir, "to", dir)
		old.cancel()
	}
	// The new run starts once the old one is gone (it holds the port);
	// nobody waits for that under a lock, and Target's wait honours ctx.
	go func() {
		if old != nil {
			<-old.done
		}
		d.supervise(r)
	}()
	return d.waitReady(ctx, r.gen, dir)
}

// State returns the dev server's state: StateStopped, StateStarting,
// StateReady, StateRestarting or StateFailed.
func (d *DevServer) State() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state
}

// URL returns the dev server's address, http://127.0.0.1:Port, and whether it
// is ready to be proxied to.
func (d *DevServer) URL() (*url.URL, bool) {
	up, ok := d.Upstream()
	return up.URL, ok
}

// Upstream returns what the Proxy needs to forward to the dev server, and
// whether it is ready: its address, its secret and the uid that must own
// the socket answering there.
func (d *DevServer) Upstream() (Upstream, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state != StateReady || d.guard == nil {
		return Upstream{}, false
	}
	return Upstream{URL: loopbackURL(d.port), guard: d.guard}, true
}

// Port returns the dev server's current port: Port, or the one PickPort gave
// it when that was held by someone else.
func (d *DevServer) Port() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.port
}

// loopbackURL is http://127.0.0.1:port.
func loopbackURL(port int) *url.URL {
	return &url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
}

// PIDFor returns the process id of the dev server when it serves dir (and
// runs), 0 otherwise.
func (d *DevServer) PIDFor(dir string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dir != filepath.Clean(dir) {
		return 0
	}
	return d.pid
}

// ProjectDir returns the directory the dev server serves or is starting in,
// or "" before the first Target and after Close.
func (d *DevServer) ProjectDir() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dir
}

// PID returns the process id of the running dev server, which is also its
// process group id, or 0 when none runs.
func (d *DevServer) PID() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pid
}

// Close stops the dev server, killing its whole process group, and stops
// supervising it. Later Targets fail with ErrClosed. It returns ctx's error
// if ctx ends first; the process group is still killed in the background.
func (d *DevServer) Close(ctx context.Context) error {
	d.mu.Lock()
	d.closed = true
	r := d.run
	d.mu.Unlock()
	if r == nil {
		return nil
	}
	r.cancel()
	select {
	case <-r.done:
	case <-ctx.Done():
		return fmt.Errorf("close dev server: %w", ctx.Err())
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.run == r {
		d.run = nil
		d.dir = ""
	}
	d.setStateLocked(StateStopped)
	return nil
}

// waitReady waits until the run gen is ready, fails or is replaced.
func (d *DevServer) waitReady(ctx context.Context, gen uint64, dir string) error {
	timer := time.NewTimer(d.cfg.ReadyTimeout)
	defer timer.Stop()
	for {
		d.mu.Lock()
		state, lastErr, changed := d.state, d.lastErr, d.changed
		switch {
		case d.closed:
			d.mu.Unlock()
			return ErrClosed
		case d.gen != gen:
			d.mu.Unlock()
			return fmt.Errorf("wait for dev server in %s: %w", dir, ErrRetargeted)
		}
		d.mu.Unlock()
		switch state {
		case StateReady:
			return nil
		case StateFailed:
			return fmt.Errorf("start dev server in %s: %w", dir, lastErr)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for dev server in %s: %w", dir, ctx.Err())
		case <-timer.C:
			if lastErr != nil {
				return fmt.Errorf("wait for dev server in %s: %w after %s (last error: %w)", dir, ErrNotReady, d.cfg.ReadyTimeout, lastErr)
			}
			return fmt.Errorf("wait for dev server in %s: %w after %s", dir, ErrNotReady, d.cfg.ReadyTimeout)
		}
	}
}

// setStateLocked changes the state and wakes the waiters. d.mu must be held.
func (d *DevServer) setStateLocked(state string) {
	if d.state == state {
		return
	}
	d.state = state
	close(d.changed)
	d.changed = make(chan struct{})
}

// update changes the state of run r, if it is still current.
func (d *DevServer) update(r *run, state string, pid int, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gen != r.gen || d.closed && state != StateStopped {
		return
	}
	d.pid = pid
	switch {
	case state == StateReady:
		d.lastErr = nil
	case err != nil:
		d.lastErr = err
	}
	d.setStateLocked(state)
}

// supervise runs the dev server of r until r is cancelled, restarting it
// with backoff when it dies.
func (d *DevServer) supervise(r *run) {
	defer close(r.done)
	bo := backoff.Backoff{Min: d.cfg.MinBackoff, Max: d.cfg.MaxBackoff}
	repicks := 0
	for attempt := 0; ; attempt++ {
		if attempt > 0 && repicks == 0 {
			wait := bo.Next()
			d.log.Warn("restarting dev server", "dir", r.dir, "in", wait.Round(time.Millisecond), "attempt", attempt)
			t := time.NewTimer(wait)
			select {
			case <-r.ctx.Done():
				t.Stop()
				d.update(r, StateStopped, 0, nil)
				return
			case <-r.kick:
				t.Stop()
			case <-t.C:
			}
		}
		if r.ctx.Err() != nil { // cancelled before it started (a re-target while the old one stopped)
			d.update(r, StateStopped, 0, nil)
			return
		}
		readyFor, err := d.runOnce(r)
		if r.ctx.Err() != nil {
			d.update(r, StateStopped, 0, nil)
			return
		}
		if errors.Is(err, ErrPortInUse) && d.cfg.PickPort != nil && repicks < maxRepicks {
			// Held by someone else: never used; another port, at once.
			repicks++
			if perr := d.repick(); perr != nil {
				err = errors.Join(err, perr)
			} else {
				d.log.Warn("dev server port held by another process: moving to another port", "dir", r.dir, "error", err, "port", d.Port())
				attempt--
				continue
			}
		}
		repicks = 0
		var fatal *startError
		if attempt == 0 && errors.As(err, &fatal) {
			d.log.Error("dev server failed to start", "dir", r.dir, "error", err)
			d.update(r, StateFailed, 0, err)
			return
		}
		if readyFor >= stableAfter {
			bo.Reset()
		}
		d.log.Warn("dev server exited", "dir", r.dir, "error", err, "ready_for", readyFor.Round(time.Millisecond))
		d.update(r, StateRestarting, 0, err)
	}
}

// exitNoAstro is the launcher's exit status when the project has no astro.
const exitNoAstro = 3

// maxRepicks bounds how many ports in a row a start tries when each is held
// by someone else.
const maxRepicks = 8

// repick moves the dev server to a port from PickPort.
func (d *DevServer) repick() error {
	port, err := d.cfg.PickPort()
	if err != nil {
		return fmt.Errorf("pick another port: %w", err)
	}
	d.mu.Lock()
	d.port = port
	d.mu.Unlock()
	return nil
}

// startError is a failure to start the dev server at all, which a first
// attempt does not retry.
type startError struct{ err error }

func (e *startError) Error() string { return e.err.Error() }
func (e *startError) Unwrap() error { return e.err }

// runOnce starts the dev server, waits for it to answer, and waits for it to
// exit or r to be cancelled; then it kills the process group. It returns how
// long the dev server was ready and why it ended. The process is an
// exec.Cmd of the run's context: cancelling it signals the whole process
// group (Cancel), WaitDelay kills the leader when it does not stop in time
// and stops waiting for output a straggler holds open; the group's
// stragglers are killed after.
func (d *DevServer) runOnce(r *run) (time.Duration, error) {
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
func (d *DevServer) stateForStart(r *run) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state == StateStarting {
		return StateStarting
	}
	return StateRestarting
}

// stateAfterExit is the state once r's process is gone: stopped when r was
// cancelled, restarting otherwise.
func (d *DevServer) stateAfterExit(r *run) string {
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

// answers reports whether the dev server answers GET / with any response,
// through a connection that g's uid answers (else ErrForeignListener) and
// with g's secret.
func (d *DevServer) answers(ctx context.Context, port int, g *guard) (bool, error) {
	req, err := http.NewRequestWithContext(withGuard(ctx, g), http.MethodGet, loopbackURL(port).String()+"/", nil)
	if err != nil {
		return false, err
	}
	req.Header.Set(SecretHeader, g.secret)
	resp, err := d.probe.Do(req)
	if err != nil {
		return false, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // best effort: the status is what counts
	if err := resp.Body.Close(); err != nil {
		d.log.DebugContext(ctx, "close probe response", "error", err)
	}
	return true, nil
}

// setGuard makes g the guard of run r's dev server, if r is current.
func (d *DevServer) setGuard(r *run, g *guard) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gen == r.gen {
		d.guard = g
	}
}

// lineLogger logs what the dev server writes to one stream, a record per
// line (ANSI colours removed, at most maxLogLine bytes), and signals
// portConflict when Vite says it moved to another port. exec.Cmd writes to
// it from one goroutine per stream; flush logs a last unterminated line
// once the process is gone.
type lineLogger struct {
	mu           sync.Mutex
	log          *slog.Logger
	level        slog.Level
	stream       string
	portConflict chan<- struct{}
	line         []byte
}

// setLog names the process in the lines logged from now on.
func (l *lineLogger) setLog(log *slog.Logger) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.log = log
}

// Write logs every complete line of p and keeps the rest for later.
func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if room := maxLogLine - len(l.line); room > 0 {
			l.line = append(l.line, chunk[:min(len(chunk), room)]...)
		}
		if i < 0 {
			break
		}
		l.emitLocked()
		p = p[i+1:]
	}
	return n, nil
}

// flush logs the last line if it had no newline.
func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.line) > 0 {
		l.emitLocked()
	}
}

// emitLocked logs the current line and starts the next. l.mu must be held.
func (l *lineLogger) emitLocked() {
	line := bytes.TrimSpace(ansi.ReplaceAll(l.line, nil))
	l.line = l.line[:0]
	if len(line) == 0 {
		return
	}
	if bytes.Contains(line, portTaken) || bytes.Contains(line, portTakenStrict) {
		select {
		case l.portConflict <- struct{}{}:
		default:
		}
	}
	l.log.LogAttrs(context.Background(), l.level, string(line), slog.String("source", "astro"), slog.String("stream", l.stream))
}

// env is the dev server's whole environment: an allowlist, never the
// worker's own environment (which holds secrets).
func (d *DevServer) env(as RunAs) []string {
	env := []string{
		"PATH=" + d.cfg.PATH,
		"ASTRO_TELEMETRY_DISABLED=1",
		"ASTRO_DISABLE_UPDATE_CHECK=true",
		"NODE_ENV=development",
		"BROWSER=none",
		"NO_COLOR=1",
	}
	if home := cmp.Or(as.Home, d.cfg.Home); home != "" {
		env = append(env, "HOME="+home)
	}
	return env
}
