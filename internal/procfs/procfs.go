// Package procfs reads the Linux process table from /proc: enough to find
// every process a child started and to tell whether any of them still runs.
package procfs

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Process is one entry of the process table.
type Process struct {
	PID, PPID, PGID, SID int
	// Start is when the process started, in clock ticks after boot: with
	// PID it names a process uniquely, since ids are reused.
	Start uint64
	// Zombie is true for a process that has exited and waits to be reaped.
	Zombie bool
}

// Read returns the process pid; ok is false when it does not exist.
func Read(pid int) (p Process, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return Process{}, false
	}
	// "pid (comm) state ppid pgrp session ... starttime(22nd) ...": comm may
	// hold spaces and parentheses, so split after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return Process{}, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return Process{}, false
	}
	p = Process{PID: pid, Zombie: f[0] == "Z" || f[0] == "X"}
	var errs [4]error
	p.PPID, errs[0] = strconv.Atoi(f[1])
	p.PGID, errs[1] = strconv.Atoi(f[2])
	p.SID, errs[2] = strconv.Atoi(f[3])
	p.Start, errs[3] = strconv.ParseUint(f[19], 10, 64)
	if errors.Join(errs[:]...) != nil {
		return Process{}, false
	}
	return p, true
}

// All returns every process; ok is false without a readable /proc.
func All() (procs []Process, ok bool) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, false
	}
	procs = make([]Process, 0, len(entries))
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := Read(pid); ok {
			procs = append(procs, p)
		}
	}
	return procs, true
}

// UID returns the real user id of process pid, from /proc/pid/status (which
// any process may read, whoever owns pid, dumpable or not); ok is false when
// the process is gone.
func UID(pid int) (uid uint32, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		rest, found := strings.CutPrefix(line, "Uid:")
		if !found {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0, false
		}
		n, err := strconv.ParseUint(f[0], 10, 32)
		return uint32(n), err == nil
	}
	return 0, false
}

// OfUID returns the live processes (zombies excluded) whose real user id is
// uid; ok is false without a readable /proc.
func OfUID(uid uint32) (procs []Process, ok bool) {
	all, ok := All()
	if !ok {
		return nil, false
	}
	for _, p := range all {
		if p.Zombie {
			continue
		}
		if u, ok := UID(p.PID); ok && u == uid {
			procs = append(procs, p)
		}
	}
	return procs, true
}

// GroupAlive reports whether process group pgid has a live process. Zombies
// do not count: they are dead, waiting for their parent (or init) to reap
// them. Without /proc it trusts kill(-pgid, 0), which counts zombies.
func GroupAlive(pgid int) bool {
	procs, ok := All()
	if !ok {
		return groupSignalable(pgid)
	}
	for _, p := range procs {
		if p.PGID == pgid && !p.Zombie {
			return true
		}
	}
	return false
}

// Tree is a snapshot of the live processes (zombies excluded) by parent.
type Tree map[int][]Process

// Snapshot reads the process table once into a Tree.
func Snapshot() Tree {
	procs, _ := All()
	t := Tree{}
	for _, p := range procs {
		if !p.Zombie {
			t[p.PPID] = append(t[p.PPID], p)
		}
	}
	return t
}

// Children returns pid's direct children.
func (t Tree) Children(pid int) []Process { return t[pid] }

// Descendants returns the processes below pid: children, their children, ...
func (t Tree) Descendants(pid int) []Process {
	var out []Process
	var walk func(int)
	walk = func(p int) {
		for _, c := range t[p] {
			out = append(out, c)
			walk(c.PID)
		}
	}
	walk(pid)
	return out
}

// Descendants returns the live processes below root (children, their
// children, ...), zombies excluded, from one reading of the process table.
func Descendants(root int) []Process { return Snapshot().Descendants(root) }
