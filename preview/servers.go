package preview

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/webordinary/claude-code-astro/internal/config"
)

// DefaultPortRange is how many ports from BasePort the dev servers take
// (ServersConfig.PortRange).
const DefaultPortRange = 100

// ErrNoWorkspace is returned by Ensure for a preview id whose user has no
// workspace this worker can serve.
var ErrNoWorkspace = errors.New("no workspace for this preview")

// Target is one user's preview: what their dev server serves, as whom.
type Target struct {
	// ID is the preview id (see ID).
	ID string
	// Key is "clientId/userId".
	Key string
	// ThreadID is the thread of the user's latest job, for /health.
	ThreadID string
	// Dir is the user's project directory.
	Dir string
	// As is the tenant the dev server runs as.
	As RunAs
}

// ServersConfig configures Servers. Zero values mean the defaults.
type ServersConfig struct {
	// BasePort is the first loopback port a dev server takes (ASTRO_PORT);
	// each running dev server has its own port from there up, within
	// PortRange ports. A port any process holds is skipped, and one that
	// another uid takes before the dev server listens is never used (the dev
	// server moves to another). When every port of the range is held (a
	// tenant binding them all), a dev server takes a port the kernel picks
	// from its ephemeral range.
	BasePort int
	// PortRange is how many ports from BasePort the dev servers take before
	// they fall back to the kernel's ephemeral ports. Default
	// DefaultPortRange.
	PortRange int
	// BeforeStart, when set, is called with a dev server's port after the
	// worker found it free and before the dev server listens on it: a test
	// hook to take the port in that window.
	BeforeStart func(port int)
	// PATH is the dev servers' PATH (where they find node). Default
	// sandbox.DefaultPATH.
	PATH string
	// MaxServers is how many dev servers run at once (PREVIEW_MAX_SERVERS);
	// past it the least recently viewed one stops. 0 means
	// config.Default()'s.
	MaxServers int
	// IdleAfter stops a dev server nobody viewed (and no job targeted) for
	// that long (PREVIEW_IDLE_MINUTES). 0 means config.Default()'s.
	IdleAfter time.Duration
	// Lookup finds the preview of an id whose dev server is not running (a
	// user of this worker's root, after a restart or an eviction), or
	// returns ErrNoWorkspace.
	Lookup func(ctx context.Context, id string) (Target, error)
	// Claim, when set, is called before every Target (a job's, or a start
	// on a page load) with its target: a worker in a fleet takes the user's
	// preview lease there. Its error is Target's, and nothing starts.
	Claim func(ctx context.Context, t Target) error
	// Stopped, when set, is called after a user's dev server stopped (idle,
	// evicted, closed), with its last target: to end the tenant's other
	// processes.
	Stopped func(Target)
	// Logger receives the dev servers' output and lifecycle. Nil discards.
	Logger *slog.Logger
	// How long Target waits for a dev server to answer, the least and most
	// pause before restarting one that died (doubling after each quick
	// death), and how long a stopping one gets after SIGTERM before its
	// process group is killed. Defaults DefaultReadyTimeout,
	// DefaultMinBackoff, DefaultMaxBackoff, DefaultStopTimeout.
	ReadyTimeout, MinBackoff, MaxBackoff, StopTimeout time.Duration
}

// Servers runs one dev server per active user, each on its own loopback
// port and as its user's tenant: started by a job (Target) or by a viewer's
// request (Ensure), stopped when idle or when more than MaxServers run. Its
// methods are safe for concurrent use; none holds its lock across a process
// start or stop.
type Servers struct {
	cfg ServersConfig
	log *slog.Logger

	mu       sync.Mutex
	byID     map[string]*server
	starting map[string]bool // Ensure looking a preview up
	closed   bool
	bg       sync.WaitGroup // background starts and stops
}

// server is one user's dev server.
type server struct {
	target     Target
	ds         *devServer
	lastViewed time.Time
	targeting  int // Target calls under way: not idle while they wait
	viewing    int // requests and WebSockets under way: not idle either
}

// ServerInfo describes a running dev server, for /health.
type ServerInfo struct {
	Target
	State      string
	Port       int
	PID        int
	LastViewed time.Time
}

// NewServers returns Servers with none running.
func NewServers(cfg ServersConfig) *Servers {
	if cfg.MaxServers <= 0 {
		cfg.MaxServers = config.Default().MaxPreviewServers()
	}
	if cfg.IdleAfter <= 0 {
		cfg.IdleAfter = config.Default().PreviewIdle
	}
	if cfg.PortRange <= 0 {
		cfg.PortRange = DefaultPortRange
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Servers{cfg: cfg, log: log, byID: map[string]*server{}, starting: map[string]bool{}}
}

// Target makes t's user's dev server serve t.Dir as t.As, starting it (and
// stopping the least recently viewed one past MaxServers) when it does not
// run, and waits until it answers. A dev server of t.ID serving another
// directory, or as another tenant, is re-targeted. It returns an error when
// the dev server failed to start, ctx ended, ReadyTimeout passed or another
// Target re-targeted it; one still starting keeps starting in the
// background.
func (s *Servers) Target(ctx context.Context, t Target) error {
	if s.cfg.Claim != nil {
		if err := s.cfg.Claim(ctx, t); err != nil {
			return fmt.Errorf("claim the preview of %s: %w", t.Key, err)
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	e := s.byID[t.ID]
	if e == nil {
		port, err := s.freePortLocked()
		if err != nil {
			s.mu.Unlock()
			return fmt.Errorf("start the preview of %s: %w", t.Key, err)
		}
		e = &server{ds: newDevServer(devServerConfig{
			Port: port, PATH: s.cfg.PATH, Logger: s.log.With("preview", t.ID),
			ReadyTimeout: s.cfg.ReadyTimeout, MinBackoff: s.cfg.MinBackoff, MaxBackoff: s.cfg.MaxBackoff, StopTimeout: s.cfg.StopTimeout,
			PickPort: s.freePort, BeforeStart: s.cfg.BeforeStart,
		})}
		s.byID[t.ID] = e
	}
	e.target = t
	e.lastViewed = time.Now()
	e.targeting++
	evicted := s.evictLocked(t.ID)
	s.mu.Unlock()
	s.stopInBackground(evicted, "more than PREVIEW_MAX_SERVERS dev servers")
	err := e.ds.Target(ctx, t.Dir, t.As)
	s.mu.Lock()
	e.targeting--
	e.lastViewed = time.Now() // idle counts from when it serves
	s.mu.Unlock()
	return err
}

// View returns the address of preview id's dev server and whether it is
// ready, and counts a view of it until done is called: a request, or an
// open WebSocket for as long as it stays open. A dev server with a view
// under way is not idle. done may be called more than once.
func (s *Servers) View(id string) (up Upstream, ready bool, done func()) {
	s.mu.Lock()
	e := s.byID[id]
	if e != nil {
		e.lastViewed = time.Now()
		e.viewing++
	}
	s.mu.Unlock()
	if e == nil {
		return Upstream{}, false, func() {}
	}
	var once sync.Once
	done = func() {
		once.Do(func() {
			s.mu.Lock()
			e.viewing--
			e.lastViewed = time.Now()
			s.mu.Unlock()
		})
	}
	up, ready = e.ds.Upstream()
	return up, ready, done
}

// AwaitReady waits until preview id's dev server is ready and reports
// true, or reports false when none runs or starts for id, when it fails or
// stops, or when ctx ends first.
func (s *Servers) AwaitReady(ctx context.Context, id string) bool {
	s.mu.Lock()
	e := s.byID[id]
	s.mu.Unlock()
	return e != nil && e.ds.awaitReady(ctx)
}

// Ensure starts preview id's dev server in the background when none runs
// for it (a viewer came back after an idle stop, an eviction or a restart):
// it looks the preview up now, and returns ErrNoWorkspace when there is
// nothing to serve. The Proxy calls it for page loads only, not for the
// requests an open page makes by itself (HMR, Vite's pings, assets): a tab
// left open on a stopped preview does not start it again.
func (s *Servers) Ensure(ctx context.Context, id string) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if _, running := s.byID[id]; running || s.starting[id] {
		s.mu.Unlock()
		return nil
	}
	s.starting[id] = true
	s.mu.Unlock()
	done := func() {
		s.mu.Lock()
		delete(s.starting, id)
		s.mu.Unlock()
	}
	if s.cfg.Lookup == nil {
		done()
		return ErrNoWorkspace
	}
	t, err := s.cfg.Lookup(ctx, id)
	if err != nil {
		done()
		return err
	}
	s.bg.Go(func() {
		defer done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := s.Target(sctx, t); err != nil {
			s.log.Warn("preview not serving", "preview", id, "tenant", t.Key, "error", err)
		}
	})
	return nil
}

// Run stops dev servers idle for IdleAfter until ctx ends.
func (s *Servers) Run(ctx context.Context) {
	tick := time.NewTicker(min(s.cfg.IdleAfter/4, 30*time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s.StopIdle(time.Now())
		}
	}
}

// StopIdle stops, in the background, the dev servers that nobody has viewed
// or targeted for IdleAfter by now and that have no view open, and returns
// how many it stops. Run calls it on a timer.
func (s *Servers) StopIdle(now time.Time) int {
	s.mu.Lock()
	var idle []*server
	for id, e := range s.byID {
		if e.targeting == 0 && e.viewing == 0 && now.Sub(e.lastViewed) >= s.cfg.IdleAfter {
			idle = append(idle, e)
			delete(s.byID, id)
		}
	}
	s.mu.Unlock()
	s.stopInBackground(idle, "idle for PREVIEW_IDLE_MINUTES")
	return len(idle)
}

// Stop stops preview id's dev server, if one runs, and waits for it.
func (s *Servers) Stop(ctx context.Context, id string) error {
	s.mu.Lock()
	e := s.byID[id]
	delete(s.byID, id)
	s.mu.Unlock()
	if e == nil {
		return nil
	}
	return s.stop(ctx, e, "asked to")
}

// PIDFor returns the process id of the dev server serving dir, 0 when none.
func (s *Servers) PIDFor(dir string) int {
	s.mu.Lock()
	servers := make([]*server, 0, len(s.byID))
	for _, e := range s.byID {
		servers = append(servers, e)
	}
	s.mu.Unlock()
	for _, e := range servers {
		if pid := e.ds.PIDFor(dir); pid != 0 {
			return pid
		}
	}
	return 0
}

// List describes the dev servers, most recently viewed first.
func (s *Servers) List() []ServerInfo {
	s.mu.Lock()
	out := make([]ServerInfo, 0, len(s.byID))
	dss := make([]*devServer, 0, len(s.byID))
	for _, e := range s.byID {
		out = append(out, ServerInfo{Target: e.target, LastViewed: e.lastViewed})
		dss = append(dss, e.ds)
	}
	s.mu.Unlock()
	for i, ds := range dss {
		out[i].State, out[i].PID, out[i].Port = ds.State(), ds.PID(), ds.Port()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].LastViewed.After(out[j].LastViewed) })
	return out
}

// Close stops every dev server and waits for the background work.
func (s *Servers) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	all := make([]*server, 0, len(s.byID))
	for id, e := range s.byID {
		all = append(all, e)
		delete(s.byID, id)
	}
	s.mu.Unlock()
	var errs []error
	for _, e := range all {
		errs = append(errs, s.stop(ctx, e, "shutting down"))
	}
	done := make(chan struct{})
	go func() { s.bg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("close previews: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}

// evictLocked removes and returns the least recently viewed dev servers
// past MaxServers, keeping keep. s.mu must be held.
func (s *Servers) evictLocked(keep string) []*server {
	if len(s.byID) <= s.cfg.MaxServers {
		return nil
	}
	var others []*server
	for id, e := range s.byID {
		if id != keep {
			others = append(others, e)
		}
	}
	// Spare the ones a job is starting, then the ones open in a browser,
	// then the most recently viewed.
	sort.Slice(others, func(i, j int) bool {
		if bi, bj := others[i].targeting > 0, others[j].targeting > 0; bi != bj {
			return bj
		}
		if vi, vj := others[i].viewing > 0, others[j].viewing > 0; vi != vj {
			return vj
		}
		return others[i].lastViewed.Before(others[j].lastViewed)
	})
	n := len(s.byID) - s.cfg.MaxServers
	evicted := others[:min(n, len(others))]
	for _, e := range evicted {
		delete(s.byID, e.target.ID)
	}
	return evicted
}

// stopInBackground stops servers without holding up the caller.
func (s *Servers) stopInBackground(servers []*server, why string) {
	for _, e := range servers {
		s.bg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := s.stop(ctx, e, why); err != nil {
				s.log.Warn("stop a dev server", "preview", e.target.ID, "error", err)
			}
		})
	}
}

// stop closes one dev server and reports it stopped.
func (s *Servers) stop(ctx context.Context, e *server, why string) error {
	s.log.Info("stopping a dev server", "preview", e.target.ID, "tenant", e.target.Key, "reason", why)
	err := e.ds.Close(ctx)
	if s.cfg.Stopped != nil {
		s.cfg.Stopped(e.target)
	}
	return err
}

// freePort is freePortLocked for a dev server moving to another port.
func (s *Servers) freePort() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.freePortLocked()
}

// freePortLocked returns the first port of BasePort's range that no dev
// server of s uses and that is free now, or else one the kernel picks.
// s.mu must be held.
func (s *Servers) freePortLocked() (int, error) {
	used := map[int]bool{}
	for _, e := range s.byID {
		used[e.ds.Port()] = true
	}
	first := max(s.cfg.BasePort, 1)
	for port := first; port <= 65535 && port < first+s.cfg.PortRange; port++ {
		if used[port] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		if err := ln.Close(); err != nil {
			return 0, err
		}
		return port, nil
	}
	// Every port of the range is held: the kernel's ephemeral range, which
	// one tenant cannot hold whole.
	for range 16 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("%w: no free port from %d, nor from the kernel: %w", ErrPortInUse, s.cfg.BasePort, err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if err := ln.Close(); err != nil {
			return 0, err
		}
		if !used[port] {
			return port, nil
		}
	}
	return 0, fmt.Errorf("%w: no free port from %d", ErrPortInUse, s.cfg.BasePort)
}
