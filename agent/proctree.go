package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one line of the process table.
type proc struct {
	pid, ppid, pgid, sid int
	start                uint64 // clock ticks after boot
	zombie               bool
}

// readProc reads /proc/<pid>/stat.
func readProc(pid int) (proc, bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return proc{}, false
	}
	// "pid (comm) state ppid pgrp session ... starttime(22nd) ...": comm may
	// hold spaces and parentheses, so split after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return proc{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return proc{}, false
	}
	p := proc{pid: pid, zombie: f[0] == "Z" || f[0] == "X"}
	var errs [4]error
	p.ppid, errs[0] = strconv.Atoi(f[1])
	p.pgid, errs[1] = strconv.Atoi(f[2])
	p.sid, errs[2] = strconv.Atoi(f[3])
	p.start, errs[3] = strconv.ParseUint(f[19], 10, 64)
	if errors.Join(errs[:]...) != nil {
		return proc{}, false
	}
	return p, true
}

// readProcs returns every process; ok is false without a readable /proc.
func readProcs() ([]proc, bool) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, false
	}
	procs := make([]proc, 0, len(entries))
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(pid); ok {
			procs = append(procs, p)
		}
	}
	return procs, true
}

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
	if p, ok := readProc(root); ok {
		t.rootSeen, t.start = true, p.start
		t.groups[root] = p.start
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
func (t *procTree) members() []proc {
	procs, ok := readProcs()
	if !ok {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	byPID := make(map[int]proc, len(procs))
	for _, p := range procs {
		byPID[p.pid] = p
	}
	tracked := func(ids map[int]uint64, id int) bool {
		start, ok := ids[id]
		if !ok {
			return false
		}
		leader, alive := byPID[id]
		return !alive || leader.start == start
	}
	children := make(map[int][]proc)
	var queue []proc
	in := make(map[int]bool)
	for _, p := range procs {
		if t.rootSeen && p.start < t.start {
			continue
		}
		children[p.ppid] = append(children[p.ppid], p)
		isRoot := p.pid == t.root && (!t.rootSeen || p.start == t.start)
		if isRoot || tracked(t.groups, p.pgid) || tracked(t.sessions, p.sid) {
			queue = append(queue, p)
			in[p.pid] = true
		}
	}
	var out []proc
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p.pgid == p.pid {
			t.groups[p.pid] = p.start
		}
		if p.sid == p.pid {
			t.sessions[p.pid] = p.start
		}
		if !p.zombie {
			out = append(out, p)
		}
		for _, c := range children[p.pid] {
			if !in[c.pid] {
				in[c.pid] = true
				queue = append(queue, c)
			}
		}
	}
	return out
}

// signal sends sig to the CLI's group and every tracked process.
func (t *procTree) signal(sig syscall.Signal) {
	if p, ok := readProc(t.root); !ok || p.start == t.start {
		_ = syscall.Kill(-t.root, sig) // ESRCH: the group is gone already
	}
	for _, p := range t.members() {
		_ = syscall.Kill(p.pid, sig) // it may have exited meanwhile
	}
}

// alive reports whether a tracked process still runs.
func (t *procTree) alive() bool {
	if _, ok := readProcs(); !ok {
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
