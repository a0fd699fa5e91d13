// Package sandbox is the process and file boundary between tenants.
//
// Every clientId/userId is a tenant with a uid of its own, allocated once on
// the shared workspace root and stable across tasks and restarts. Every
// process that runs or reads a tenant's content (git on its working tree,
// the package manager, the Astro dev server, the Claude Code CLI and all it
// starts) runs as that uid and gid, with no supplementary groups, no
// capabilities and no_new_privs; its files are its own, mode 0700. The
// worker itself (see Confine) keeps only what starting such processes and
// owning their directories takes, and is not dumpable.
//
// A worker that cannot switch uids (not started as root) runs children as
// itself and serves one tenant only: New reports it, and Tenant refuses a
// second tenant with ErrSingleTenant rather than pretend to separate them.
package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"

	"github.com/webordinary/claude-code-astro/internal/config"
	"github.com/webordinary/claude-code-astro/internal/ident"
)

// ErrSingleTenant reports a second tenant on a worker that cannot switch
// uids.
var ErrSingleTenant = errors.New("this worker cannot switch uids (it was not started as root) and serves one tenant only")

// DefaultPATH is the PATH of every tenant process the worker starts (the
// Astro dev server, the Claude Code CLI) when its configuration sets none:
// where node, git and the system's tools are, and nothing of the worker's
// own environment.
const DefaultPATH = "/usr/local/bin:/usr/bin:/bin"

// Config configures a Sandbox. Root is required.
type Config struct {
	// Root is the shared workspace root (WORKSPACE_PATH); the uid records
	// live in Root/.uids.
	Root string
	// UIDs is the range tenant uids are taken from (TENANT_UIDS). The
	// zero value means config.Default().TenantUIDs.
	UIDs ident.UIDRange
	// Unprivileged forces single-tenant mode even when the process could
	// switch uids (tests of that mode).
	Unprivileged bool
	// Limits bound each tenant process (TENANT_MAX_MEMORY_MB,
	// TENANT_NICE); Tenant.Apply and Tenant.Limit set them on a command.
	Limits ChildLimits
}

// Sandbox hands out tenants. It is safe for concurrent use.
type Sandbox struct {
	privileged bool
	uids       *Allocator

	limits ChildLimits

	mu     sync.Mutex
	tenant map[string]*Tenant // by key, once known
	single string             // the one tenant of an unprivileged sandbox
}

// New returns a Sandbox on cfg.Root. It is privileged (tenants get uids of
// their own) when the process runs as root and may set uids and gids.
func New(cfg Config) (*Sandbox, error) {
	if cfg.UIDs == (ident.UIDRange{}) {
		cfg.UIDs = config.Default().TenantUIDs
	}
	if err := cfg.UIDs.Check(); err != nil {
		return nil, err
	}
	if err := cfg.Limits.Resolve(); err != nil {
		return nil, err
	}
	s := &Sandbox{privileged: !cfg.Unprivileged && CanSwitchUIDs(), tenant: map[string]*Tenant{}, limits: cfg.Limits}
	if s.privileged {
		a, err := NewAllocator(cfg.Root, cfg.UIDs)
		if err != nil {
			return nil, err
		}
		s.uids = a
	}
	return s, nil
}

// Privileged reports whether tenants run under uids of their own.
func (s *Sandbox) Privileged() bool { return s.privileged }

// Tenant returns the tenant clientID/userID, allocating its uid the first
// time any worker sees it. The ids must be valid (ident.ValidID).
func (s *Sandbox) Tenant(clientID, userID string) (*Tenant, error) {
	key := clientID + "/" + userID
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.tenant[key]; ok {
		return t, nil
	}
	if !s.privileged {
		if s.single != "" && s.single != key {
			return nil, fmt.Errorf("tenant %s: %w (it serves %s)", key, ErrSingleTenant, s.single)
		}
		s.single = key
		t := &Tenant{Key: key, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), limits: s.limits}
		s.tenant[key] = t
		return t, nil
	}
	uid, err := s.uids.UID(key)
	if err != nil {
		return nil, fmt.Errorf("allocate a uid for tenant %s: %w", key, err)
	}
	t := &Tenant{Key: key, UID: uid, GID: uid, separate: true, limits: s.limits}
	s.tenant[key] = t
	return t, nil
}

// Tenant is one clientId/userId. Its fields are read-only.
type Tenant struct {
	// Key is "clientId/userId".
	Key string
	// UID and GID are the tenant's; on an unprivileged sandbox the worker's.
	UID, GID uint32
	// separate is true when UID is the tenant's own, not the worker's.
	separate bool
	limits   ChildLimits
}

// Separate reports whether the tenant runs under a uid of its own.
func (t *Tenant) Separate() bool { return t.separate }

// Credential returns the credential a child of this tenant runs with: its
// uid and gid and no supplementary groups; nil on an unprivileged sandbox
// (the child runs as the worker).
func (t *Tenant) Credential() *syscall.Credential {
	if !t.separate {
		return nil
	}
	return &syscall.Credential{Uid: t.UID, Gid: t.GID, Groups: []uint32{}}
}

// Apply makes cmd run as the tenant, under the sandbox's ChildLimits. It
// keeps the rest of cmd.SysProcAttr. Call it once, after cmd's Path and
// Args are final.
func (t *Tenant) Apply(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Credential = t.Credential()
	t.Limit(cmd)
}

// Limit makes cmd run under the sandbox's ChildLimits, for a command whose
// credential is set otherwise (the agent's). Call it once.
func (t *Tenant) Limit(cmd *exec.Cmd) { t.limits.Wrap(cmd) }

// Own gives path (not following a symlink) to the tenant: owner uid, group
// gid. On an unprivileged sandbox it does nothing.
func (t *Tenant) Own(path string) error {
	if !t.separate {
		return nil
	}
	if err := os.Lchown(path, int(t.UID), int(t.GID)); err != nil {
		return fmt.Errorf("give %s to tenant %s: %w", path, t.Key, err)
	}
	return nil
}

// MkdirOwned creates dir (its parent must exist and belong to the worker)
// with mode perm, owned by the tenant; an existing directory is given the
// same owner and mode. A symlink at dir is refused.
func (t *Tenant) MkdirOwned(dir string, perm os.FileMode) error {
	err := os.Mkdir(dir, perm)
	if err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("create %s: not a directory", dir)
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if t.separate && st != nil && (st.Uid != t.UID || st.Gid != t.GID) {
		if err := t.Own(dir); err != nil {
			return err
		}
	}
	if fi.Mode().Perm() != perm {
		if err := os.Chmod(dir, perm); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	return nil
}

// CanSwitchUIDs reports whether this process may start children under other
// uids: it runs as root with CAP_SETUID and CAP_SETGID in its effective set.
func CanSwitchUIDs() bool {
	if os.Geteuid() != 0 {
		return false
	}
	eff, ok := effectiveCaps()
	return ok && eff&(1<<capSetuid) != 0 && eff&(1<<capSetgid) != 0
}
