package claudecode_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	claudecode "github.com/webordinary/claude-code-astro/internal/agent/claude-code"
	"github.com/webordinary/claude-code-astro/internal/reach"
	"github.com/webordinary/claude-code-astro/internal/sandbox"
	"github.com/webordinary/claude-code-astro/internal/testkit/sandboxtest"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// TestKeyNamesThePin: the cache key starts with the version package.json
// pins, so a bump gets a directory of its own.
func TestKeyNamesThePin(t *testing.T) {
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	if err := json.Unmarshal(claudecode.PackageJSON(), &pkg); err != nil {
		t.Fatal(err)
	}
	want := pkg.Dependencies["@anthropic-ai/claude-code"]
	if want == "" || claudecode.Version() != want {
		t.Fatalf("Version() = %q, package.json pins %q", claudecode.Version(), want)
	}
	if k := claudecode.Key(); !strings.HasPrefix(k, want+"-") || len(k) != len(want)+13 {
		t.Errorf("Key() = %q, want %s-{12 hex digits}", k, want)
	}
}

// script is a stand-in CLI: a tenant that can run it sees it print this.
const script = "#!/bin/sh\necho stand-in claude\n"

// TestShareCopiesTheCLIOutOfAPrivateDirectory lays out an npm install of
// the CLI as `npm ci` makes it (the binary hard-linked into two packages,
// node_modules/.bin/claude a relative symlink), under a directory only
// root may enter and with files only root may read, and shares it: a real
// tenant uid then runs the copy, which root owns and nobody else may write.
func TestShareCopiesTheCLIOutOfAPrivateDirectory(t *testing.T) {
	if !sandbox.CanSwitchUIDs() {
		t.Fatal("this test runs the copy as a tenant uid: run it as root (CI does)")
	}
	uid := sandboxtest.ClaimUIDs(t).Min
	tests := []struct {
		name string
		// layout makes the install under private and returns the CLI.
		layout  func(t *testing.T, private string) string
		wantKey string // prefix of the cache key
	}{
		{"the pinned install", func(t *testing.T, private string) string {
			return npmInstall(t, private, claudecode.PackageJSON(), claudecode.Lockfile())
		}, claudecode.Key()},
		{"another install", func(t *testing.T, private string) string {
			return npmInstall(t, private, []byte(`{"dependencies":{"@anthropic-ai/claude-code":"0.0.1"}}`), nil)
		}, "copy-"},
		{"a lone binary", func(t *testing.T, private string) string {
			bin := filepath.Join(private, "bin", "claude")
			write(t, bin, script, 0o700)
			return bin
		}, "file-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			private := t.TempDir() // mode 0700: no tenant passes through
			bin := tt.layout(t, private)
			if err := reach.Check(bin, reach.Exec); err == nil {
				t.Fatalf("the layout is within tenants' reach: %s", bin)
			}
			cache := claudecode.Cache{Dir: filepath.Join(workspacetest.Reachable(t), "cache")}
			copied, err := cache.Share(context.Background(), bin)
			if err != nil {
				t.Fatal(err)
			}
			if rel, _ := filepath.Rel(filepath.Join(cache.Dir, "claude-code"), copied); !strings.HasPrefix(rel, tt.wantKey) {
				t.Errorf("the copy is %s, want it under claude-code/%s...", copied, tt.wantKey)
			}
			if err := reach.Check(copied, reach.Exec); err != nil {
				t.Errorf("the copy is out of reach: %v", err)
			}
			cmd := exec.Command(copied)
			cmd.Env, cmd.Dir = []string{"PATH=/usr/bin:/bin"}, "/"
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}
			if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "stand-in claude") {
				t.Errorf("uid %d runs the copy: %v: %s", uid, err, out)
			}
			// Root's, readable by all, writable by none but root.
			err = filepath.Walk(cache.Dir, func(p string, fi os.FileInfo, err error) error {
				if err != nil {
					return err
				}
				st := fi.Sys().(*syscall.Stat_t)
				if fi.Mode()&os.ModeSymlink == 0 && (st.Uid != 0 || fi.Mode().Perm()&0o022 != 0 || fi.Mode().Perm()&0o004 == 0) {
					t.Errorf("%s: uid %d mode %#o, want root's, readable by all, writable by root only", p, st.Uid, fi.Mode().Perm())
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			// Shared again: the same copy, not a second one.
			again, err := cache.Share(context.Background(), bin)
			if err != nil || again != copied {
				t.Errorf("a second Share gave %s, %v; want %s", again, err, copied)
			}
			if entries, _ := os.ReadDir(filepath.Join(cache.Dir, "claude-code")); len(entries) != 1 {
				t.Errorf("the cache holds %d entries, want 1 (no temporary left)", len(entries))
			}
		})
	}
}

// TestShareKeepsHardLinks: npm's install links the CLI's binary into two
// packages; the copy links them too rather than hold it twice.
func TestShareKeepsHardLinks(t *testing.T) {
	private := t.TempDir()
	bin := npmInstall(t, private, claudecode.PackageJSON(), claudecode.Lockfile())
	cache := claudecode.Cache{Dir: filepath.Join(t.TempDir(), "cache")}
	copied, err := cache.Share(context.Background(), bin)
	if err != nil {
		t.Fatal(err)
	}
	nm := filepath.Join(filepath.Dir(filepath.Dir(copied)))
	a, errA := os.Stat(filepath.Join(nm, "@anthropic-ai", "claude-code", "bin", "claude.exe"))
	b, errB := os.Stat(filepath.Join(nm, "@anthropic-ai", "claude-code-linux-x64", "claude"))
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	if !os.SameFile(a, b) {
		t.Error("the copy holds the binary twice: the hard link was not kept")
	}
}

// npmInstall lays out the CLI's npm install under dir/prefix as npm ci
// makes it, files only root may read, and returns its
// node_modules/.bin/claude.
func npmInstall(t *testing.T, dir string, pkg, lock []byte) string {
	t.Helper()
	prefix := filepath.Join(dir, "checkout", "internal", "agent", "claude-code")
	write(t, filepath.Join(prefix, "package.json"), string(pkg), 0o600)
	if lock != nil {
		write(t, filepath.Join(prefix, "package-lock.json"), string(lock), 0o600)
	}
	nm := filepath.Join(prefix, "node_modules")
	exe := filepath.Join(nm, "@anthropic-ai", "claude-code", "bin", "claude.exe")
	write(t, exe, script, 0o700)
	write(t, filepath.Join(nm, "@anthropic-ai", "claude-code", "package.json"), "{}", 0o600)
	native := filepath.Join(nm, "@anthropic-ai", "claude-code-linux-x64", "claude")
	if err := os.MkdirAll(filepath.Dir(native), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(exe, native); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(nm, ".bin", "claude")
	if err := os.MkdirAll(filepath.Dir(bin), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../@anthropic-ai/claude-code/bin/claude.exe", bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

func write(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// TestShareRefusesACacheOthersMayWrite: a cache directory a tenant could
// write to would let it replace the CLI that every tenant runs.
func TestShareRefusesACacheOthersMayWrite(t *testing.T) {
	bin := npmInstall(t, t.TempDir(), claudecode.PackageJSON(), claudecode.Lockfile())
	for _, tt := range []struct {
		name  string
		spoil func(t *testing.T, dir string)
	}{
		{"writable by all", func(t *testing.T, dir string) {
			if err := os.Chmod(dir, 0o777); err != nil {
				t.Fatal(err)
			}
		}},
		{"another uid's", func(t *testing.T, dir string) {
			if err := os.Chown(dir, 4242, 4242); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cache := claudecode.Cache{Dir: filepath.Join(t.TempDir(), "cache")}
			if _, err := cache.Share(context.Background(), bin); err != nil {
				t.Fatal(err)
			}
			tt.spoil(t, cache.Path(claudecode.Key()))
			if _, ok := cache.Pinned(); ok {
				t.Error("Pinned() takes an install others could have changed")
			}
			if _, err := cache.Share(context.Background(), bin); !errors.Is(err, claudecode.ErrUntrusted) {
				t.Errorf("Share = %v, want ErrUntrusted", err)
			}
		})
	}
}

// TestInstalledVersion reads what an npm prefix holds: a checkout whose
// node_modules predates a bump holds another version than the pin.
func TestInstalledVersion(t *testing.T) {
	prefix := t.TempDir()
	if v := claudecode.InstalledVersion(prefix); v != "" {
		t.Errorf("an empty prefix holds %q", v)
	}
	write(t, filepath.Join(prefix, "node_modules", "@anthropic-ai", "claude-code", "package.json"), `{"name": "@anthropic-ai/claude-code", "version": "2.0.1"}`, 0o644)
	if v := claudecode.InstalledVersion(prefix); v != "2.0.1" {
		t.Errorf("InstalledVersion = %q, want 2.0.1", v)
	}
}
