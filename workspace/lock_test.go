package workspace

import (
	"errors"
	"testing"
)

func TestLockIsExclusiveAcrossOpenFiles(t *testing.T) {
	w, err := Open(Config{Root: t.TempDir()})
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
	other, _ := w.User("acme", "bob")
	unlockBob, err := other.Lock()
	if err != nil {
		t.Fatalf("another user's lock: %v", err)
	}
	if err := unlockBob(); err != nil {
		t.Fatal(err)
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
