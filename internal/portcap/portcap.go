// Package portcap bounds how many TCP ports one tenant holds.
//
// Linux counts no sockets per user: without cgroups or a seccomp filter
// (neither of which a Fargate task may set up for its own processes), a
// tenant's processes may listen on as many ports as their file descriptors
// allow, and a tenant holding every port of the dev servers' range would
// push every new preview onto the kernel's ephemeral ports, then exhaust
// those too. So the worker looks: every few seconds it lists the machine's
// listening TCP sockets (/proc/net/tcp{,6}), counts them per tenant uid, and
// kills every process of a tenant over its allowance: which of them hold
// the sockets cannot be told by a worker that dropped CAP_SYS_PTRACE (only
// the owner may read a process's file descriptors). Its running job fails
// and its dev server stops; the next view starts the dev server again.
// Between two looks a tenant may hold more; the dev servers' port picker
// skips any port held by someone else meanwhile.
package portcap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/webordinary/claude-code-astro/internal/procfs"
	"github.com/webordinary/claude-code-astro/internal/sandbox"
)

// DefaultEvery is the pause between two looks.
const DefaultEvery = 2 * time.Second

// Config configures a Cap.
type Config struct {
	// MinUID and MaxUID bound the tenant uids whose sockets count
	// (TENANT_UIDS); the worker's own and the system's never do.
	MinUID, MaxUID uint32
	// Max is how many listening sockets one tenant uid may hold
	// (TENANT_MAX_PORTS).
	Max int
	// Every is the pause between two looks; DefaultEvery when zero.
	Every time.Duration
	// Logger receives a warning per tenant over its allowance.
	Logger *slog.Logger
}

// Cap enforces Config.Max.
type Cap struct {
	cfg Config
	log *slog.Logger
}

// New returns a Cap for cfg.
func New(cfg Config) (*Cap, error) {
	if cfg.Max < 1 {
		return nil, fmt.Errorf("port cap: max %d: at least 1 (a dev server listens on one port)", cfg.Max)
	}
	if cfg.MinUID == 0 || cfg.MaxUID < cfg.MinUID {
		return nil, fmt.Errorf("port cap: tenant uids %d-%d: not a range above root", cfg.MinUID, cfg.MaxUID)
	}
	if cfg.Every <= 0 {
		cfg.Every = DefaultEvery
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Cap{cfg: cfg, log: log}, nil
}

// Violation is a tenant found over its allowance.
type Violation struct {
	UID uint32
	// Listeners is how many listening sockets it held.
	Listeners int
	// Killed is how many of its processes were killed for them.
	Killed int
}

// Run enforces the cap every Config.Every until ctx ends. A look that fails
// (no /proc) is logged and tried again at the next.
func (c *Cap) Run(ctx context.Context) {
	t := time.NewTicker(c.cfg.Every)
	defer t.Stop()
	for {
		if _, err := c.Enforce(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("count the tenants' listening sockets", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Enforce looks once: every tenant uid holding more than Max listening
// sockets has all its processes killed (its running job fails, its dev
// server stops until the next view starts it).
func (c *Cap) Enforce(ctx context.Context) ([]Violation, error) {
	ls, err := procfs.Listeners()
	if err != nil {
		return nil, fmt.Errorf("list listening sockets: %w", err)
	}
	held := map[uint32]map[uint64]bool{} // uid → socket inodes
	for _, l := range ls {
		if l.UID < c.cfg.MinUID || l.UID > c.cfg.MaxUID || l.Inode == 0 {
			continue
		}
		if held[l.UID] == nil {
			held[l.UID] = map[uint64]bool{}
		}
		held[l.UID][l.Inode] = true
	}
	var out []Violation
	var errs []error
	for uid, inodes := range held {
		if len(inodes) <= c.cfg.Max || ctx.Err() != nil {
			continue
		}
		killed, err := stopAll(ctx, uid)
		if err != nil {
			errs = append(errs, err)
		}
		v := Violation{UID: uid, Listeners: len(inodes), Killed: killed}
		out = append(out, v)
		c.log.Warn("a tenant listened on more ports than TENANT_MAX_PORTS allows: its processes were killed",
			"uid", uid, "listeners", v.Listeners, "limit", c.cfg.Max, "killed", killed)
	}
	return out, errors.Join(errs...)
}

// killTimeout bounds the stop of one tenant's processes.
const killTimeout = 5 * time.Second

// stopAll kills every process of uid (sandbox.StopUID: round after round, so
// one forked meanwhile goes too). Which of them hold the sockets is not
// known: a worker without CAP_SYS_PTRACE (it drops it) may not read another
// uid's file descriptors.
func stopAll(ctx context.Context, uid uint32) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, killTimeout)
	defer cancel()
	return sandbox.StopUID(ctx, uid)
}
