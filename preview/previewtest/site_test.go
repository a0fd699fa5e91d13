package previewtest_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/webordinary/claude-code-astro/preview/previewtest"
)

func TestPrepareSite(t *testing.T) {
	dir := previewtest.PrepareSite(t)
	for _, rel := range []string{"package.json", "package-lock.json", "astro.config.mjs", "src/pages/index.astro"} {
		if _, err := os.Stat(filepath.Join(dir, rel)); err != nil {
			t.Errorf("missing %s: %v", rel, err)
		}
	}
	// The executable resolves through the recreated relative symlink.
	if _, err := os.Stat(filepath.Join(dir, "node_modules", ".bin", "astro")); err != nil {
		t.Errorf("node_modules/.bin/astro: %v", err)
	}
	// Files are shared with examples/site, directories are not.
	src, err := os.Stat(filepath.Join(previewtest.SiteDir(t), "node_modules", "astro", "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	dst, err := os.Stat(filepath.Join(dir, "node_modules", "astro", "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(src, dst) {
		t.Error("node_modules/astro/package.json is a copy, want a hard link (same file system)")
	}
	if info, err := os.Lstat(filepath.Join(dir, "node_modules")); err != nil || info.Mode()&os.ModeSymlink != 0 {
		t.Errorf("node_modules must be a directory of its own: %v, %v", info, err)
	}
	for _, cache := range []string{".vite", ".astro"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", cache)); !os.IsNotExist(err) {
			t.Errorf("node_modules/%s copied: %v", cache, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, ".astro")); !os.IsNotExist(err) {
		t.Errorf(".astro copied: %v", err)
	}
}

func TestGroupAlive(t *testing.T) {
	cmd := exec.Command("/bin/sleep", "30")
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if !previewtest.GroupAlive(pid) {
		t.Error("GroupAlive = false for a running group")
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait() // killed: the error says so
	if previewtest.GroupAlive(pid) {
		t.Error("GroupAlive = true after the group was killed and reaped")
	}
}

func TestFreePort(t *testing.T) {
	if p := previewtest.FreePort(t); p <= 0 || p > 65535 {
		t.Errorf("FreePort = %d", p)
	}
}
