// Package sandboxtest gives tests a sandbox whose tenants run under uids of
// their own, on a root those uids can reach.
package sandboxtest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/webordinary/claude-code-astro/internal/sandbox"
)

// UIDs is the tenant uid range the tests use, away from the default one so
// that tests never share a uid with a worker of this machine.
var UIDs = sandbox.UIDRange{Min: 3000000, Max: 3999999}

// RequireRoot skips the test when it cannot start processes under other
// uids: it needs root. CI runs as root, so there it always runs.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if !sandbox.CanSwitchUIDs() {
		tb.Skip("needs root to run processes under tenant uids (CI runs as root)")
	}
}

// Root returns a new workspace root that tenant uids can traverse to: a
// temporary directory, its parents searchable by everyone (t.TempDir makes
// them 0700). It is removed when the test ends.
func Root(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	for d := dir; d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
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
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o711); err != nil {
		tb.Fatal(err)
	}
	return root
}

// New returns a privileged Sandbox on a new Root, skipping the test when
// this process cannot switch uids.
func New(tb testing.TB) *sandbox.Sandbox {
	tb.Helper()
	RequireRoot(tb)
	sb, err := sandbox.New(sandbox.Config{Root: Root(tb), UIDs: UIDs})
	if err != nil {
		tb.Fatal(err)
	}
	return sb
}
