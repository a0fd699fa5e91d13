package preview

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/webordinary/claude-code-astro/internal/backoff"
	"github.com/webordinary/claude-code-astro/internal/sandbox"
)

// The states of a devServer, as State reports them.
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

// Defaults for the zero fields of devServerConfig.
const (
	DefaultReadyTimeout = 60 * time.Second
	DefaultMinBackoff   = 250 * time.Millisecond
	DefaultMaxBackoff   = 30 * time.Second
	DefaultStopTimeout  = 5 * time.Second
)

// stableAfter is how long a dev server must have been ready for a later
// crash to restart with the minimum backoff again.
const stableAfter = 30 * time.Second

// devServerConfig configures a devServer. Only Port is required.
type devServerConfig struct {
	// Port is the loopback TCP port the dev server listens on (ASTRO_PORT).
	Port int
	// PATH is the dev server's PATH, where it finds node. Empty means
	// sandbox.DefaultPATH.
	PATH string
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

// devServer runs the Astro dev server (`astro dev`) of one project directory
// on 127.0.0.1:Port and keeps it running: a supervising goroutine restarts it
// with exponential backoff when it dies, until Close. It runs in its own
// process group, which is killed whole when it stops.
//
// Switching git branches inside the served directory needs no restart: the
// dev server's file watcher sees the checkout.
//
// The zero value is not usable: call newDevServer. Its methods are safe for
// concurrent use.
type devServer struct {
	cfg   devServerConfig
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
// value runs it as the worker, with no HOME.
type RunAs struct {
	// Credential is the uid and gid of the dev server and all it starts;
	// nil runs it as the worker.
	Credential *syscall.Credential
	// Home is its HOME; empty leaves HOME unset.
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

// newDevServer returns a stopped devServer; Target starts it.
func newDevServer(cfg devServerConfig) *devServer {
	if cfg.PATH == "" {
		cfg.PATH = sandbox.DefaultPATH
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
	return &devServer{
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

// Target makes the dev server serve projectDir as as (a tenant's uid and
// HOME): it starts it, or stops the one serving another directory, or the
// same directory as someone else, and starts it anew. It does nothing when
// the dev server already serves projectDir as as (unless it failed; while it
// restarts after a crash, Target starts it now rather than after the backoff
// and waits for it). It returns once the dev server answers GET /, or with
// an error when it failed to start, ctx ended, ReadyTimeout passed or another
// Target re-targeted it. A dev server still starting when Target returns
// keeps starting in the background.
func (d *devServer) Target(ctx context.Context, projectDir string, as RunAs) error {
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
func (d *devServer) State() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state
}

// Upstream returns what the Proxy needs to forward to the dev server, and
// whether it is ready: its address, its secret and the uid that must own
// the socket answering there.
func (d *devServer) Upstream() (Upstream, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state != StateReady || d.guard == nil {
		return Upstream{}, false
	}
	return Upstream{URL: loopbackURL(d.port), guard: d.guard}, true
}

// PIDFor returns the process id of the dev server when it serves dir (and
// runs), 0 otherwise.
func (d *devServer) PIDFor(dir string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dir != filepath.Clean(dir) {
		return 0
	}
	return d.pid
}

// PID returns the process id of the running dev server, which is also its
// process group id, or 0 when none runs.
func (d *devServer) PID() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pid
}

// Close stops the dev server, killing its whole process group, and stops
// supervising it. Later Targets fail with ErrClosed. It returns ctx's error
// if ctx ends first; the process group is still killed in the background.
func (d *devServer) Close(ctx context.Context) error {
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

// awaitReady waits until the dev server is ready, whatever its run, and
// reports true; it reports false when it is stopped, failed or closed, or
// when ctx ends first. A starting or restarting dev server is waited for.
func (d *devServer) awaitReady(ctx context.Context) bool {
	for {
		d.mu.Lock()
		state, closed, changed := d.state, d.closed, d.changed
		d.mu.Unlock()
		switch {
		case closed || state == StateStopped || state == StateFailed:
			return false
		case state == StateReady:
			return true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return false
		}
	}
}

// waitReady waits until the run gen is ready, fails or is replaced.
func (d *devServer) waitReady(ctx context.Context, gen uint64, dir string) error {
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
func (d *devServer) setStateLocked(state string) {
	if d.state == state {
		return
	}
	d.state = state
	close(d.changed)
	d.changed = make(chan struct{})
}

// update changes the state of run r, if it is still current.
func (d *devServer) update(r *run, state string, pid int, err error) {
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
func (d *devServer) supervise(r *run) {
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

// startError is a failure to start the dev server at all, which a first
// attempt does not retry.
type startError struct{ err error }

func (e *startError) Error() string { return e.err.Error() }
func (e *startError) Unwrap() error { return e.err }
