package sandbox

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/webordinary/claude-code-astro/internal/procfs"
)

// stopPoll is the pause between two rounds of StopUID.
const stopPoll = 10 * time.Millisecond

// Stop kills every process of the tenant's uid except the processes keep
// names, their process groups and their descendants (a dev server to keep
// running), as StopUID does. It returns how many processes it killed. On
// an unprivileged sandbox, where tenant processes run as the worker, it does
// nothing.
func (t *Tenant) Stop(ctx context.Context, keep ...int) (int, error) {
	if !t.separate {
		return 0, nil
	}
	killed, err := StopUID(ctx, t.UID, keep...)
	if err != nil {
		return killed, fmt.Errorf("stop tenant %s: %w", t.Key, err)
	}
	return killed, nil
}

// StopUID kills every process of uid except the processes keep names,
// their process groups and their descendants, round after round until none
// is left or ctx ends. A process is found by its uid, so one that left its
// parent's group and session (setsid, a double fork) is found too, and one
// forked while the others were killed is killed in the next round. Each
// process id is checked to be uid's again just before its kill (ids are
// reused). It returns how many processes it killed.
func StopUID(ctx context.Context, uid uint32, keep ...int) (int, error) {
	killed := 0
	for {
		victims, err := others(uid, keep)
		if err != nil {
			return killed, err
		}
		if len(victims) == 0 {
			return killed, nil
		}
		for _, p := range victims {
			if u, ok := procfs.UID(p.PID); !ok || u != uid {
				continue // gone, or its id already reused
			}
			if err := syscall.Kill(p.PID, syscall.SIGKILL); err == nil {
				killed++
			} else if !errors.Is(err, syscall.ESRCH) {
				return killed, fmt.Errorf("kill process %d of uid %d: %w", p.PID, uid, err)
			}
		}
		select {
		case <-ctx.Done():
			return killed, fmt.Errorf("%d processes of uid %d still running: %w", len(victims), uid, ctx.Err())
		case <-time.After(stopPoll):
		}
	}
}

// Processes returns the tenant's live processes (none on an unprivileged
// sandbox, whose tenant processes cannot be told from the worker's).
func (t *Tenant) Processes() ([]procfs.Process, error) {
	if !t.separate {
		return nil, nil
	}
	return processesOf(t.UID)
}

// processesOf returns the live processes of uid.
func processesOf(uid uint32) ([]procfs.Process, error) {
	procs, ok := procfs.OfUID(uid)
	if !ok {
		return nil, errors.New("read the process table: /proc is not readable")
	}
	return procs, nil
}

// others returns the live processes of uid outside keep's trees.
func others(uid uint32, keep []int) ([]procfs.Process, error) {
	procs, err := processesOf(uid)
	if err != nil || len(procs) == 0 || len(keep) == 0 {
		return procs, err
	}
	kept := map[int]bool{}
	tree := procfs.Snapshot()
	for _, root := range keep {
		if root <= 0 {
			continue
		}
		kept[root] = true
		for _, d := range tree.Descendants(root) {
			kept[d.PID] = true
		}
	}
	var out []procfs.Process
	for _, p := range procs {
		inGroup := false
		for _, root := range keep {
			if root > 0 && p.PGID == root {
				inGroup = true
			}
		}
		if !kept[p.PID] && !inGroup {
			out = append(out, p)
		}
	}
	return out, nil
}
