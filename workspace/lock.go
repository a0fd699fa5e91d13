package workspace

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// ErrBusy reports a user's workspace locked by another process: another
// worker runs one of the user's jobs (a standard queue delivered a duplicate,
// or a message's visibility lapsed). The job should be tried again later.
var ErrBusy = errors.New("workspace busy in another process")

// Lock takes the user's workspace for one job: an exclusive, non-blocking
// flock on {user dir}/.lock, which works across the containers sharing an EFS
// volume (NFSv4 locks) and is let go by the kernel if the process dies. It
// returns ErrBusy when another process holds it. Call unlock when the job is
// done. Within one process the worker already runs a user's jobs one at a time.
func (u *User) Lock() (unlock func() error, err error) {
	if err := u.Prepare(); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(u.Dir, ".lock"), os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open the workspace lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close() // the lock error is the one to report
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrBusy
		}
		return nil, fmt.Errorf("lock the workspace: %w", err)
	}
	return f.Close, nil // closing the file lets the lock go
}
