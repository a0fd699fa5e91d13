package procfs

import (
	"errors"
	"syscall"
)

// groupSignalable reports whether kill(-pgid, 0) finds the group.
func groupSignalable(pgid int) bool {
	return !errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH)
}
