package workspace

import (
	"errors"
	"testing"

	"github.com/webordinary/claude-code-astro/internal/sandbox"
)

func TestLockIsExclusiveAcrossOpenFiles(t *testing.T) {
	root := t.TempDir()
	sb, err := sandbox.New(sandbox.Config{Root: root, Unprivileged: true})
	if err != nil {
		t.Fatal(err)
	}
	w, err := Open(Config{Root: root, Sandbox: sb})
	if err != nil {
		t.Fatal(err)
	}
	u, err := w.User("acme", "alice")
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := u.Lock()
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to open files: a second open, as another worker
	// would make, is refused while the first holds it.
	if _, err := u.Lock(); !errors.Is(err, ErrBusy) {
		t.Fatalf("second Lock = %v, want ErrBusy", err)
	}
	if err := unlock(); err != nil {
		t.Fatal(err)
	}
	again, err := u.Lock()
	if err != nil {
		t.Fatalf("Lock after unlock: %v", err)
	}
	if err := again(); err != nil {
		t.Fatal(err)
	}
}
