package sandbox

import (
	"fmt"
	"os/exec"
	"strconv"
)

// ChildLimits bound each tenant process beyond what the worker's own
// resource limits (Limits, inherited) do. They are set by running the
// command through prlimit(1) and nice(1), which exec it in place (the
// process id stays the command's), so they hold from its first
// instruction: there is no window in which the tenant's code runs
// unlimited. Without cgroups (Fargate gives a task's own processes none)
// these are per process, not per tenant.
type ChildLimits struct {
	// DataBytes is RLIMIT_DATA: the writable private memory (heap, and
	// anonymous writable mappings) one process may have. Unlike RLIMIT_AS
	// it does not count address space that is only reserved: Node reserves
	// tens of GB for WebAssembly (the Astro dev server needs an RLIMIT_AS
	// of 32 GB to start, with 200 MB resident), so RLIMIT_AS bounds
	// nothing useful. 0 means no limit.
	DataBytes uint64
	// Nice is the niceness of every tenant process (install scripts, the
	// dev servers, the agent): the worker itself, at 0, keeps the CPU it
	// needs for its proxy and gateway. 0 means unchanged.
	Nice int

	prlimit, nice string // the tools' paths, found by Resolve
}

// Resolve finds prlimit and nice for the limits that are set, on PATH.
func (l *ChildLimits) Resolve() error {
	var err error
	if l.DataBytes > 0 {
		if l.prlimit, err = exec.LookPath("prlimit"); err != nil {
			return fmt.Errorf("tenant memory limit: prlimit (util-linux) is needed: %w", err)
		}
	}
	if l.Nice != 0 {
		if l.nice, err = exec.LookPath("nice"); err != nil {
			return fmt.Errorf("tenant niceness: nice (coreutils) is needed: %w", err)
		}
	}
	return nil
}

// Wrap makes cmd, not started yet, run under the limits: its program is
// run by prlimit and nice, which exec it. Limits not resolved, or a
// command that could not be found, are left as they are.
func (l ChildLimits) Wrap(cmd *exec.Cmd) {
	if cmd.Process != nil || cmd.Err != nil || len(cmd.Args) == 0 || (l.prlimit == "" && l.nice == "") {
		return
	}
	var args []string
	if l.prlimit != "" {
		n := strconv.FormatUint(l.DataBytes, 10)
		args = append(args, l.prlimit, "--data="+n+":"+n, "--")
	}
	if l.nice != "" {
		args = append(args, l.nice, "-n", strconv.Itoa(l.Nice), "--")
	}
	args = append(args, cmd.Path)
	args = append(args, cmd.Args[1:]...)
	cmd.Path, cmd.Args = args[0], args
}
