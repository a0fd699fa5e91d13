package sandbox

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
	"kernel.org/pub/linux/libs/security/libcap/cap"
	"kernel.org/pub/linux/libs/security/libcap/psx"
)

// Capability numbers read from /proc (linux/capability.h).
const (
	capSetgid = 6
	capSetuid = 7
)

// WorkerCaps are the capabilities the worker keeps: start children as
// tenant uids (SETUID, SETGID), give them their directories (CHOWN, FOWNER),
// and stop their processes (KILL). Docker's default set, and so Fargate's,
// holds all five.
var WorkerCaps = []cap.Value{cap.SETUID, cap.SETGID, cap.CHOWN, cap.FOWNER, cap.KILL}

// Limits are the resource limits every tenant process inherits from the
// worker.
type Limits struct {
	// MaxProcs is RLIMIT_NPROC: how many processes (and threads) one tenant
	// uid may have at once, counted by the kernel per uid. Root, which the
	// worker is, is exempt, so a fork bomb stops inside its tenant.
	MaxProcs uint64
	// MaxFileBytes is RLIMIT_FSIZE: the largest file a tenant process may
	// write; it caps a clone's pack, so its size.
	MaxFileBytes uint64
}

// Confinement says what Confine did.
type Confinement struct {
	// Caps lists the capabilities the worker kept.
	Caps []string
	// BoundKept lists capabilities left in the bounding set because the
	// runtime gave no CAP_SETPCAP to drop them (none in Docker's default).
	BoundKept []string
	Limits
}

// Confine reduces this process, which must run as root, to what a worker
// needs, for good: its capabilities (effective, permitted and the bounding
// set) to WorkerCaps, none inheritable or ambient; no_new_privs, so no child
// gains privileges by exec; not dumpable, so no other uid reads its memory
// or environment through /proc or ptrace; umask 077; and the resource limits
// of lim, which its children inherit. The capability changes apply to every
// thread (libcap's psx). Call it once, early.
func Confine(lim Limits) (Confinement, error) {
	if os.Geteuid() != 0 {
		return Confinement{}, fmt.Errorf("confine the worker: it runs as uid %d, not root", os.Geteuid())
	}
	syscall.Umask(0o077)
	for _, l := range []struct {
		res int
		val uint64
	}{{unix.RLIMIT_NPROC, lim.MaxProcs}, {unix.RLIMIT_FSIZE, lim.MaxFileBytes}} {
		if l.val == 0 {
			continue
		}
		if err := syscall.Setrlimit(l.res, &syscall.Rlimit{Cur: l.val, Max: l.val}); err != nil {
			return Confinement{}, fmt.Errorf("confine the worker: set resource limit %d: %w", l.res, err)
		}
	}
	// The bounding set first: dropping from it takes CAP_SETPCAP, which
	// the worker gives up next. Without SETPCAP (a runtime that dropped it)
	// the bounding set stays as the runtime left it: the permitted set
	// below and no_new_privs still keep the worker from gaining anything.
	var keptBound []string
	for v := cap.Value(0); v < cap.MaxBits(); v++ {
		if slices.Contains(WorkerCaps, v) {
			continue
		}
		if in, err := cap.GetBound(v); err != nil || !in {
			continue
		}
		if err := cap.DropBound(v); err != nil {
			keptBound = append(keptBound, strings.ToUpper(v.String()))
		}
	}
	set := cap.NewSet()
	if err := set.SetFlag(cap.Permitted, true, WorkerCaps...); err != nil {
		return Confinement{}, fmt.Errorf("confine the worker: %w", err)
	}
	if err := set.SetFlag(cap.Effective, true, WorkerCaps...); err != nil {
		return Confinement{}, fmt.Errorf("confine the worker: %w", err)
	}
	if err := set.SetProc(); err != nil {
		return Confinement{}, fmt.Errorf("confine the worker: set capabilities: %w", err)
	}
	if err := cap.ResetAmbient(); err != nil {
		return Confinement{}, fmt.Errorf("confine the worker: clear ambient capabilities: %w", err)
	}
	// no_new_privs is per thread, inherited by the threads and children
	// created later: set it on every thread.
	const prSetNoNewPrivs = 38
	if _, _, errno := psx.Syscall6(syscall.SYS_PRCTL, prSetNoNewPrivs, 1, 0, 0, 0, 0); errno != 0 {
		return Confinement{}, fmt.Errorf("confine the worker: set no_new_privs: %w", errno)
	}
	if err := SetNotDumpable(); err != nil {
		return Confinement{}, err
	}
	c := Confinement{Limits: lim, BoundKept: keptBound}
	for _, v := range WorkerCaps {
		c.Caps = append(c.Caps, strings.ToUpper(v.String()))
	}
	return c, nil
}

// SetNotDumpable makes this process not dumpable: its /proc files belong to
// root and other uids cannot ptrace it or read its memory or environment.
// It applies to the whole process.
func SetNotDumpable() error {
	const prSetDumpable = 4
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetDumpable, 0, 0); errno != 0 {
		return fmt.Errorf("make the worker not dumpable: %w", errno)
	}
	return nil
}

// effectiveCaps reads this thread's effective capability mask.
func effectiveCaps() (uint64, bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return n, err == nil
		}
	}
	return 0, false
}
