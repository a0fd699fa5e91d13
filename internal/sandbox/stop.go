package sandbox

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/webordinary/claude-code-astro/internal/procfs"
)

// stopPoll is the pause between two rounds of Stop.
const stopPoll = 10 * time.Millisecond

// Stop kills every process of the tenant's uid except the processes keep
// names, their process groups and their descendants (a dev server to keep
// running), round after round until none is left or ctx ends. A process is
// found by its uid, so one that left its parent's group and session (setsid,
// a double fork) is found too, and one forked while the others were killed
// is killed in the next round. It returns how many processes it killed. On
// an unprivileged sandbox, where tenant processes run as the worker, it does
// nothing.
func (t *Tenant) Stop(ctx context.Context, keep ...int) (int, error) {
	if !t.separate {
		return 0, nil
	}
	killed := 0
	for {
		victims, err := t.others(keep)
		if err != nil {
			return killed, err
		}
		if len(victims) == 0 {
			return killed, nil
		}
		for _, p := range victims {
			if err := syscall.Kill(p.PID, syscall.SIGKILL); err == nil {
				killed++
			} else if !errors.Is(err, syscall.ESRCH) {
				return killed, fmt.Errorf("stop tenant %s: kill %d: %w", t.Key, p.PID, err)
			}
		}
		select {
		case <-ctx.Done():
			return killed, fmt.Errorf("stop tenant %s: %d processes still running: %w", t.Key, len(victims), ctx.Err())
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
	procs, ok := procfs.OfUID(t.UID)
	if !ok {
		return nil, errors.New("read the process table: /proc is not readable")
	}
	return procs, nil
}

// others returns the tenant's live processes outside keep's trees.
func (t *Tenant) others(keep []int) ([]procfs.Process, error) {
	procs, err := t.Processes()
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
