// Package sandboxtest gives tests a sandbox whose tenants run under uids of
// their own, on a root those uids can reach.
package sandboxtest

import (
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/webordinary/claude-code-astro/internal/ident"
	"github.com/webordinary/claude-code-astro/internal/sandbox"
)

// UIDs is the tenant uid range the tests use, away from the default one so
// that tests never share a uid with a worker of this machine. ClaimUIDs
// hands out slices of it.
var UIDs = ident.UIDRange{Min: 3000000, Max: 3999999}

// slotSize is how many uids one test gets: tenants pick theirs from a hash
// of their key, so a test's few tenants spread over the slice.
const slotSize = 1000

// ClaimUIDs returns a slice of UIDs that no other test uses while this one
// runs, in this test binary or another one running beside it (go test runs
// packages at once): two tests' tenants of the same name would otherwise get
// the same uid, and one test's cleanup (which stops every process of a
// tenant uid) would kill the other's. The claim is a lock on a file under
// the system's temporary directory, which the kernel releases when this
// process ends, so a crashed test leaves nothing claimed.
func ClaimUIDs(tb testing.TB) ident.UIDRange {
	tb.Helper()
	dir := filepath.Join(os.TempDir(), "claude-code-astro-test-uids")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatalf("claim test uids: %v", err)
	}
	slots := int(UIDs.Max-UIDs.Min+1) / slotSize
	for slot := range slots {
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(slot)), os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			tb.Fatalf("claim test uids: %v", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue // another test's
		}
		tb.Cleanup(func() { f.Close() }) // closing releases the lock
		first := UIDs.Min + uint32(slot*slotSize)
		return ident.UIDRange{Min: first, Max: first + slotSize - 1}
	}
	tb.Fatalf("claim test uids: all %d slices of %d-%d are in use", slots, UIDs.Min, UIDs.Max)
	return ident.UIDRange{}
}

// RequireRoot fails the test when this process cannot start processes
// under other uids: the tenant sandbox needs root (CI runs as root). It never
// skips: a test that did not run must not count as passed.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if !sandbox.CanSwitchUIDs() {
		tb.Fatalf("this test needs root to run processes under tenant uids (uid %d cannot switch uids): run the tests as root, as .ci/run does", os.Geteuid())
	}
}

// SearchableTempDir returns a new temporary directory (removed when the
// test ends) whose parents every uid can search: t.TempDir makes them 0700,
// and a tenant uid must reach what is inside. The directory itself keeps its
// mode (0700): the caller opens it as far as it needs.
func SearchableTempDir(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	for d := filepath.Dir(dir); d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			tb.Fatal(err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return dir
}

// Root returns a new workspace root that tenant uids can traverse to (see
// SearchableTempDir). It is removed when the test ends.
func Root(tb testing.TB) string {
	tb.Helper()
	dir := SearchableTempDir(tb)
	if err := os.Chmod(dir, 0o711); err != nil {
		tb.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o711); err != nil {
		tb.Fatal(err)
	}
	return root
}

// New returns a privileged Sandbox on a new Root, failing the test when
// this process cannot switch uids.
func New(tb testing.TB) *sandbox.Sandbox {
	tb.Helper()
	RequireRoot(tb)
	sb, err := sandbox.New(sandbox.Config{Root: Root(tb), UIDs: ClaimUIDs(tb)})
	if err != nil {
		tb.Fatal(err)
	}
	return sb
}
