package reach_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/webordinary/claude-code-astro/internal/reach"
	"github.com/webordinary/claude-code-astro/internal/sandbox"
	"github.com/webordinary/claude-code-astro/internal/testkit/sandboxtest"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// TestCheckAgreesWithARealTenant lays out directories, files and symlinks,
// asks Check whether a tenant reaches each path, and asks a real process of
// a tenant uid the same by doing it: what Check says is what the kernel
// does.
func TestCheckAgreesWithARealTenant(t *testing.T) {
	if !sandbox.CanSwitchUIDs() {
		t.Fatal("this test runs processes under a tenant uid: run it as root (CI does)")
	}
	uid := sandboxtest.ClaimUIDs(t).Min
	base := workspacetest.Reachable(t)
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{"open", 0o755}, {"open/a", 0o755}, {"open/b", 0o755}, {"private", 0o700}, {"private/sub", 0o755},
		{"group", 0o750}, {"passonly", 0o711}} {
		if err := os.Mkdir(filepath.Join(base, d.path), d.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(base, d.path), d.mode); err != nil {
			t.Fatal(err)
		}
	}
	script := "#!/bin/sh\nexit 0\n"
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{"open/b/tool", 0o755}, {"open/b/noread", 0o711}, {"open/b/secret", 0o640}, {"private/sub/tool", 0o755},
		{"passonly/tool", 0o755}} {
		p := filepath.Join(base, f.path)
		if err := os.WriteFile(p, []byte(script), f.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
	}
	for link, target := range map[string]string{
		"open/a/rel":      "../b/tool",
		"open/a/intoPriv": filepath.Join(base, "private/sub/tool"),
		"private/out":     filepath.Join(base, "open/b/tool"),
		"open/a/chain":    "rel",
	} {
		if err := os.Symlink(target, filepath.Join(base, link)); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		path    string
		need    reach.Need
		blocker string // "" when a tenant reaches it
	}{
		{"open/b/tool", reach.Exec, ""},
		{"open/a/rel", reach.Exec, ""},
		{"open/a/chain", reach.Exec, ""},
		{"passonly/tool", reach.Exec, ""},
		{"open/b", reach.Read, ""},
		{"private/sub/tool", reach.Exec, "private"},
		{"private/sub", reach.Search, "private"},
		{"open/a/intoPriv", reach.Exec, "private"},
		{"private/out", reach.Exec, "private"},
		{"open/b/noread", reach.Exec, "open/b/noread"},
		{"open/b/secret", reach.Read, "open/b/secret"},
		{"group", reach.Search, "group"},
		{"passonly", reach.Read, "passonly"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			p := filepath.Join(base, tt.path)
			err := reach.Check(p, tt.need)
			var re *reach.Error
			switch {
			case tt.blocker == "" && err != nil:
				t.Errorf("Check(%s) = %v, want nil", tt.path, err)
			case tt.blocker != "" && !errors.As(err, &re):
				t.Errorf("Check(%s) = %v, want an *reach.Error", tt.path, err)
			case tt.blocker != "" && re.Blocker != filepath.Join(base, tt.blocker):
				t.Errorf("Check(%s) blames %s, want %s", tt.path, re.Blocker, tt.blocker)
			case tt.blocker != "" && !errors.Is(err, reach.ErrUnreachable):
				t.Errorf("Check(%s) = %v, not ErrUnreachable", tt.path, err)
			}
			if tenantCan(t, uid, p, tt.need) != (tt.blocker == "") {
				t.Errorf("a process of uid %d %s do it; Check says %v", uid, map[bool]string{true: "can", false: "cannot"}[tenantCan(t, uid, p, tt.need)], err)
			}
		})
	}
}

// tenantCan does need to path as uid and reports whether it worked.
func tenantCan(t *testing.T, uid uint32, path string, need reach.Need) bool {
	t.Helper()
	var cmd *exec.Cmd
	switch need {
	case reach.Search:
		cmd = exec.Command("/bin/sh", "-c", `cd "$1"`, "sh", path)
	case reach.Read:
		cmd = exec.Command("/bin/sh", "-c", `if [ -d "$1" ]; then ls "$1" && cd "$1"; else cat "$1"; fi`, "sh", path)
	case reach.Exec:
		cmd = exec.Command(path)
	}
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}
	return cmd.Run() == nil
}

// TestCheckTreeFindsAnUnreadableFile: a package installed under umask 077
// has files only root reads, though its directory is open.
func TestCheckTreeFindsAnUnreadableFile(t *testing.T) {
	base := workspacetest.Reachable(t)
	pkg := filepath.Join(base, "pkg")
	if err := os.MkdirAll(filepath.Join(pkg, "lib"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"package.json": 0o644, "lib/cli.js": 0o644} {
		if err := os.WriteFile(filepath.Join(pkg, name), []byte("{}"), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := reach.CheckTree(pkg); err != nil {
		t.Fatalf("CheckTree of an open package: %v", err)
	}
	if err := os.Chmod(filepath.Join(pkg, "lib/cli.js"), 0o600); err != nil {
		t.Fatal(err)
	}
	var re *reach.Error
	if err := reach.CheckTree(pkg); !errors.As(err, &re) || re.Blocker != filepath.Join(pkg, "lib/cli.js") {
		t.Fatalf("CheckTree = %v, want it to blame lib/cli.js", err)
	}
}
