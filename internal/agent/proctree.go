package agent

import (
	"context"
	"sync"
	"syscall"
	"time"

	"github.com/webordinary/claude-code-astro/internal/procfs"
)

// procTree tracks every process a CLI run started: the CLI's process group,
// its descendants, and the sessions and groups they lead. The CLI's Bash
// tool starts each command in a new session, so the CLI's own process group
// alone does not hold them. Processes started before the CLI never count,
// which guards against reused ids. Without /proc only the CLI's group is
// tracked. Safe for concurrent use.
type procTree struct {
	root int

	mu       sync.Mutex
	rootSeen bool
	start    uint64
	groups   map[int]uint64 // process groups led by a tracked process: leader's start
	sessions map[int]uint64 // sessions led by a tracked process: leader's start
}

func newProcTree(root int) *procTree {
	t := &procTree{root: root, groups: map[int]uint64{}, sessions: map[int]uint64{}}
	if p, ok := procfs.Read(root); ok {
		t.rootSeen, t.start = true, p.Start
		t.groups[root] = p.Start
	}
	return t
}

// members returns the tracked processes alive now (zombies excluded) and
// remembers the groups and sessions they lead.
//
// A group or session id outlives its leader while a member remains (Linux
// does not reuse a pid still used as a group or session id), so orphans are
// found by it; a live leader with another start time is a reuse of the id
// after the whole group ended, and is not ours.
func (t *procTree) members() []procfs.Process {
	procs, ok := procfs.All()
	if !ok {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	byPID := make(map[int]procfs.Process, len(procs))
	for _, p := range procs {
		byPID[p.PID] = p
	}
	tracked := func(ids map[int]uint64, id int) bool {
		start, ok := ids[id]
		if !ok {
			return false
		}
		leader, alive := byPID[id]
		return !alive || leader.Start == start
	}
	children := make(map[int][]procfs.Process)
	var queue []procfs.Process
	in := make(map[int]bool)
	for _, p := range procs {
		if t.rootSeen && p.Start < t.start {
			continue
		}
		children[p.PPID] = append(children[p.PPID], p)
		isRoot := p.PID == t.root && (!t.rootSeen || p.Start == t.start)
		if isRoot || tracked(t.groups, p.PGID) || tracked(t.sessions, p.SID) {
			queue = append(queue, p)
			in[p.PID] = true
		}
	}
	var out []procfs.Process
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p.PGID == p.PID {
			t.groups[p.PID] = p.Start
		}
		if p.SID == p.PID {
			t.sessions[p.PID] = p.Start
		}
		if !p.Zombie {
			out = append(out, p)
		}
		for _, c := range children[p.PID] {
			if !in[c.PID] {
				in[c.PID] = true
				queue = append(queue, c)
			}
		}
	}
	return out
}

// signal sends sig to the CLI's group and every tracked process.
func (t *procTree) signal(sig syscall.Signal) {
	if p, ok := procfs.Read(t.root); !ok || p.Start == t.start {
		_ = syscall.Kill(-t.root, sig) // ESRCH: the group is gone already
	}
	for _, p := range t.members() {
		_ = syscall.Kill(p.PID, sig) // it may have exited meanwhile
	}
}

// alive reports whether a tracked process still runs.
func (t *procTree) alive() bool {
	if _, ok := procfs.All(); !ok {
		return syscall.Kill(-t.root, 0) == nil
	}
	return len(t.members()) > 0
}

// watch records the tree every interval until ctx ends, so that processes
// orphaned later are still known by their group or session.
func (t *procTree) watch(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			t.members()
		}
	}
}

// kill SIGKILLs every tracked process, repeating until none runs or ctx
// ends.
func (t *procTree) kill(ctx context.Context) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		t.signal(syscall.SIGKILL)
		if !t.alive() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
