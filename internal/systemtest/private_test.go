package systemtest

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	claudecode "github.com/webordinary/claude-code-astro/internal/agent/claude-code"
	"github.com/webordinary/claude-code-astro/internal/reach"
	"github.com/webordinary/claude-code-astro/internal/testkit/repo"
	"github.com/webordinary/claude-code-astro/internal/testkit/sandboxtest"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/preview/previewtest"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// privateCheckout copies what the worker uses of this checkout (the worker
// binary, the example site, and with cli the installed CLI) under a
// directory only root may enter, as a clone under root's home or from
// `mktemp -d` lies, and returns the copy's root.
func privateCheckout(t *testing.T, cli bool) string {
	t.Helper()
	private := t.TempDir()
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	checkout := filepath.Join(private, "claude-code-astro")
	for name, content := range previewtest.SiteFiles(t) {
		p := filepath.Join(checkout, "examples", "site", filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	pinned := filepath.Join(checkout, claudecode.Dir)
	if err := os.MkdirAll(pinned, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"package.json", "package-lock.json"} {
		if err := os.WriteFile(filepath.Join(pinned, name), map[string][]byte{
			"package.json": claudecode.PackageJSON(), "package-lock.json": claudecode.Lockfile()}[name], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if cli {
		installed := filepath.Dir(filepath.Dir(filepath.Join(repo.Root(t), claudecode.Bin)))
		repo.ClaudeBin(t) // fails the test, saying how to install it, when it is missing
		// Hard links: the same files, reached through the private directory.
		if out, err := exec.Command("cp", "-al", installed, filepath.Join(pinned, "node_modules")).CombinedOutput(); err != nil {
			t.Fatalf("copy the CLI: %v: %s", err, out)
		}
	}
	if out, err := exec.Command("cp", workerBin, filepath.Join(checkout, "worker")).CombinedOutput(); err != nil {
		t.Fatalf("copy the worker: %v: %s", err, out)
	}
	return checkout
}

// TestRunFromAPrivateCheckout runs the worker as root from a checkout under
// a directory only root may enter, with that checkout's CLI as CLAUDE_BIN,
// as `.ci/run` from such a clone does: tenant uids cannot reach the CLI
// there, so the worker copies it into its cache, and an execute succeeds.
func TestRunFromAPrivateCheckout(t *testing.T) {
	t.Parallel()
	checkout := privateCheckout(t, true)
	bin := filepath.Join(checkout, claudecode.Bin)
	if err := reach.Check(bin, reach.Exec); err == nil {
		t.Fatalf("tenant uids reach %s: the test lays out nothing private", bin)
	}
	cache := filepath.Join(workspacetest.Reachable(t), "cache")
	h := newHarness(t, harnessOptions{bin: filepath.Join(checkout, "worker"), dir: checkout})
	h.env["CLAUDE_BIN"] = bin
	h.env["WORKER_CACHE_DIR"] = cache
	p := h.start(nil)

	var copied string
	for _, l := range logLines(t, p.logs.String()) {
		if c, ok := l["copy"].(string); ok && l["CLAUDE_BIN"] == bin {
			copied = c
		}
	}
	if want := filepath.Join(cache, "claude-code", claudecode.Key()) + "/"; !strings.HasPrefix(copied, want) {
		t.Fatalf("the worker did not say it runs a copy of the CLI under %s (copy %q)", want, copied)
	}
	h.send(initJob("i1", "pat", "t1"))
	if r := h.final("i1", 90*time.Second); r.Status != jobs.StatusSucceeded {
		t.Fatalf("init: %+v", r.Error)
	}
	h.api.SetScript(editScript(h, "pat")...)
	h.send(execJob("e1", "pat", "t1", "Change the heading"))
	r := h.final("e1", 90*time.Second)
	if r.Status != jobs.StatusSucceeded || r.Commit == "" {
		t.Fatalf("execute from a private checkout: %s %+v", r.Status, r.Error)
	}
	page, err := os.ReadFile(filepath.Join(h.projectDir("pat"), "src", "pages", "index.astro"))
	if err != nil || !strings.Contains(string(page), "Hello, edited") {
		t.Errorf("the edit is not in the project: %v\n%s", err, page)
	}
}

// TestRunStopsWhenATenantToolIsOutOfReach: a program tenants run that the
// worker cannot copy (git here, found first in PATH under a private
// directory) stops the worker at start with one line naming it and the fix.
func TestRunStopsWhenATenantToolIsOutOfReach(t *testing.T) {
	t.Parallel()
	private := filepath.Join(workspacetest.Reachable(t), "private")
	binDir := filepath.Join(private, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	git, err := exec.LookPath("git")
	if err != nil {
		t.Fatal("git is not installed: apt-get install git")
	}
	if err := os.Symlink(git, filepath.Join(binDir, "git")); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, harnessOptions{})
	p := h.launch(map[string]string{"PATH": binDir + ":" + os.Getenv("PATH")})
	if code := p.wait(30 * time.Second); code == 0 {
		t.Fatal("the worker started though tenants cannot reach its git")
	}
	var last string
	for _, l := range strings.Split(strings.TrimSpace(p.logs.String()), "\n") {
		last = l
	}
	for _, want := range []string{"PATH", filepath.Join(binDir, "git"), "others may not pass through " + private, "install git"} {
		if !strings.Contains(last, want) {
			t.Errorf("the worker's last line does not say %q:\n%s", want, last)
		}
	}
}

// TestLocalFromAPrivateCheckoutInstallsTheCLI runs the README's first
// command, `worker local`, as root from a fresh checkout under a directory
// only root may enter, with no CLI installed and an empty npm cache: it
// installs the pinned CLI into its cache by itself, keeps the workspaces
// where tenant uids reach them, and an execute (the demo agent) shows its
// edit in the preview.
func TestLocalFromAPrivateCheckoutInstallsTheCLI(t *testing.T) {
	t.Parallel()
	checkout := privateCheckout(t, false)
	cache := filepath.Join(workspacetest.Reachable(t), "cache")
	httpAddr := "127.0.0.1:" + strconv.Itoa(previewtest.FreePort(t))
	local := exec.Command(filepath.Join(checkout, "worker"), "local", "-http", httpAddr, "-aws-addr", "127.0.0.1:0")
	local.Dir = checkout
	local.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), // npm's cache: empty, so the CLI comes from the registry
		"NPM_CACHE_DIR=" + seededNpmCache(t), "WORKER_CACHE_DIR=" + cache,
		"ASTRO_PORT=" + strconv.Itoa(previewtest.FreePort(t)), "LOG_FORMAT=json",
		"TENANT_UIDS=" + uidRange(sandboxtest.ClaimUIDs(t)),
	}
	out, logs, done := startLocal(t, local, 25*time.Second)
	wait.For(t, 10*time.Minute, "worker local to install the CLI and say it is running", func() bool {
		select {
		case err := <-done:
			t.Fatalf("worker local exited: %v", err)
		default:
		}
		return strings.Contains(out.String(), "worker local is running")
	})
	installed := filepath.Join(cache, "claude-code", claudecode.Key(), claudecode.Bin[len(claudecode.Dir)+1:])
	for _, want := range []string{"installing the pinned " + claudecode.Version(), "installed the Claude Code CLI"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("worker local did not say %q", want)
		}
	}
	for _, want := range []string{"Claude Code     " + installed, "workspaces      " + filepath.Join(cache, "local"), "not under " + filepath.Join(checkout, ".local")} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the welcome does not say %q:\n%s", want, out.String())
		}
	}

	send := func(args ...string) jobs.Response {
		t.Helper()
		cmd := exec.Command(filepath.Join(checkout, "worker"), append([]string{"send", "-client", "acme", "-user", "alice", "-thread", "t1", "-wait", "3m"}, args...)...)
		cmd.Dir = checkout // the state file is the checkout's .local/local.json
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
		stdout, err := cmd.Output()
		var r jobs.Response
		if err != nil || json.Unmarshal(stdout, &r) != nil {
			t.Fatalf("worker send %v: %v\n%s", args, err, stdout)
		}
		return r
	}
	if r := send("-type", "init"); r.Status != jobs.StatusSucceeded {
		t.Fatalf("init: %+v", r.Error)
	}
	r := send("-type", "execute", "-instruction", "Hello from a private checkout")
	if r.Status != jobs.StatusSucceeded || r.Commit == "" {
		t.Fatalf("execute: %s %+v", r.Status, r.Error)
	}
	if page := openLocalPreview(t, httpAddr, r.PreviewURL); !strings.Contains(page, "Hello from a private checkout") {
		t.Errorf("the preview does not show the edit:\n%.500s", page)
	}
	if _, err := os.Stat(filepath.Join(checkout, ".local", "workspace")); err == nil {
		t.Error("worker local made its workspaces under the private checkout, out of tenants' reach")
	}
}
