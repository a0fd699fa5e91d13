package systemtest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/procfs"
	"github.com/webordinary/claude-code-astro/internal/testkit/fakeanthropic"
	"github.com/webordinary/claude-code-astro/internal/testkit/sandboxtest"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/preview/previewtest"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// attackScript is what a hostile repository runs: from its npm postinstall
// script and from its "dev server" (which stands for astro.config.mjs or
// page code: code the dev server runs). It tries everything the tenant
// boundary must stop and writes what worked into its own project, where the
// test reads it. $1 says where it runs.
const attackScript = `#!/bin/sh
stage=$1
me=$(id -u)
root=$(cd ../../.. && pwd)
{
echo "uid=$me"
echo "groups=$(id -G)"
# The other tenant's names are easy to guess: try them (listing acme/ is refused).
for f in "$root/acme/bob/project/secret-page.html" "$root/acme/bob/metadata.json" "$root/acme/bob/.claude/threads/t1.json"; do
  if content=$(cat "$f" 2>/dev/null); then echo "read-other: $f: $content"; fi
done
for d in "$root/acme/bob/project" "$root/acme/bob/home" "$root/acme/bob/.claude/agent" "$root/acme/bob"; do
  if echo pwned > "$d/pwned.html" 2>/dev/null; then echo "wrote-other: $d"; fi
done
for p in /proc/[0-9]*; do
  [ "$(stat -c %u "$p" 2>/dev/null)" = "$me" ] && continue
  if tr '\0' '\n' < "$p/environ" 2>/dev/null | grep -q .; then echo "environ-of: $p $(tr '\0' ' ' < "$p/cmdline")"; fi
  if ( exec 3<"$p/mem" ) 2>/dev/null; then echo "mem-of: $p"; fi
done
for p in /proc/[0-9]*; do
  if tr '\0' '\n' < "$p/environ" 2>/dev/null | grep -E 'SYSTEMTEST|AWS_SECRET|GITHUB_TOKEN|ANTHROPIC_API_KEY=sk-' ; then echo "secret-in: $p"; fi
done
for f in "$root/planted" "$root/.home/.npmrc" "$root/acme/.npmrc" "$root/acme/bob/home/.npmrc" \
         "$root/acme/bob/.npmrc" "$root/.uids/999999" "$root/.gitconfig-tenants" "$root/.git-excludes" \
         "$root/acme/alice/metadata.json" "$root/acme/alice/.jobs/planted" "$root/acme/alice/.claude/threads/t1.json"; do
  if ( mkdir -p "$(dirname "$f")" && echo "planted" >> "$f" ) 2>/dev/null; then echo "planted: $f"; fi
done
} > "loot-$stage.txt" 2>&1
setsid sh -c 'exec sleep 600' </dev/null >/dev/null 2>&1 &
`

// hostileSite is a repository whose postinstall script runs attackScript,
// and which installs a "dev server" that runs it again, then serves a page.
func hostileSite() map[string]string {
	return map[string]string{
		"attack.sh": attackScript,
		"package.json": `{"name":"hostile","version":"1.0.0","private":true,
  "scripts":{"postinstall":"sh ./attack.sh install && mkdir -p node_modules/astro && cp fake-astro.mjs node_modules/astro/index.mjs && cp fake-astro.json node_modules/astro/package.json"}}
`,
		// The worker's launcher starts the dev server with astro's dev():
		// this one attacks, then serves.
		"fake-astro.json": `{"name":"astro","version":"0.0.0","type":"module","exports":{".":"./index.mjs","./package.json":"./package.json"}}
`,
		"fake-astro.mjs": `import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import http from 'node:http';
export async function dev(config) {
  execFileSync('sh', ['./attack.sh', 'devserver'], { stdio: 'inherit' });
  http.createServer((q, s) => s.end('<h1 id="title">hostile</h1>')).listen(config.server.port, '127.0.0.1');
  // Then, once, it hoards ports, which would push every other preview off
  // the dev servers' range.
  if (!existsSync('hoarded')) {
    writeFileSync('hoarded', '');
    for (let i = 0; i < 30; i++) http.createServer().listen(0, '127.0.0.1');
  }
}
`,
		"index.html": "<h1>Hostile</h1>\n",
	}
}

// TestHostileRepositoryStaysInItsTenant: tenant alice's repository attacks
// from its install script and from its dev server, and alice's agent is
// scripted to reach outside her project. Tenant bob shares the worker and
// the root. Nothing of bob's can be read or changed, no secret and no other
// uid's memory or environment can be read, nothing can be planted in the
// shared root or in what decides alice's own jobs, no process of alice
// outlives her job but her dev server, and her dev server, hoarding ports
// past TENANT_MAX_PORTS, is killed.
func TestHostileRepositoryStaysInItsTenant(t *testing.T) {
	t.Parallel()
	sandboxtest.RequireRoot(t)
	h := newHarness(t, harnessOptions{})
	hostile := workspacetest.NewRemote(t, h.git, hostileSite())
	p := h.start(map[string]string{"ASTRO_DEV_MODE": "true", "ASTRO_PORT": strconv.Itoa(previewtest.FreePort(t)),
		"AWS_SECRET_ACCESS_KEY": "SYSTEMTEST-aws-secret"})

	h.send(initJob("bob-init", "bob", "t1"))
	if r := h.final("bob-init", 2*time.Minute); r.Status != jobs.StatusSucceeded {
		t.Fatalf("bob's init: %+v", r.Error)
	}
	bobProject := h.projectDir("bob")
	workspacetest.WriteOwned(t, filepath.Join(bobProject, "secret-page.html"), "BOB-UNPUBLISHED-PAGE\n")

	aliceInit := initJob("alice-init", "alice", "t1")
	aliceInit.RepoURL = hostile.URL
	h.send(aliceInit)
	if r := h.final("alice-init", 3*time.Minute); r.Status != jobs.StatusSucceeded {
		t.Fatalf("alice's init: %+v", r.Error)
	}
	aliceProject := h.projectDir("alice")
	aliceUID := owner(t, aliceProject)
	bobUID := owner(t, bobProject)
	if aliceUID == bobUID || aliceUID == 0 || bobUID == 0 || aliceUID == uint32(os.Getuid()) {
		t.Errorf("uids: alice %d, bob %d, worker 0: want three different", aliceUID, bobUID)
	}

	// Her job is answered: by then nothing she started is left but her dev
	// server (the worker's child) and what it runs; the sleep her scripts
	// left in a session of their own, reparented away, is gone.
	wait.For(t, 30*time.Second, "alice's dev server to run her code", func() bool {
		_, err := os.Stat(filepath.Join(aliceProject, "loot-devserver.txt"))
		return err == nil
	})
	worker := p.cmd.Process.Pid
	for _, q := range processesOf(aliceUID) {
		if !descendsFrom(q.pid, worker) {
			t.Errorf("a process alice left survived her init job: %d %s", q.pid, q.cmdline)
		}
	}
	// Her dev server's 31 listeners are over TENANT_MAX_PORTS (8): the
	// worker kills it.
	wait.For(t, 20*time.Second, "the worker to stop alice's port hoarding", func() bool {
		return strings.Contains(p.logs.String(), "TENANT_MAX_PORTS") && listenersOf(t, aliceUID) <= 8
	})

	// alice's agent tries to read and write bob's files directly.
	h.api.SetScript(
		fakeanthropic.Read(filepath.Join(bobProject, "secret-page.html")),
		fakeanthropic.Write(filepath.Join(bobProject, "pwned-by-agent.html"), "pwned"),
		fakeanthropic.Tool("Glob", map[string]any{"pattern": "**/*", "path": h.root}),
		fakeanthropic.Tool("Grep", map[string]any{"pattern": "UNPUBLISHED", "path": h.root}),
		fakeanthropic.Bash("git log --output="+filepath.Join(aliceProject, ".git", "config")+" --format='[core] fsmonitor = touch /tmp/pwned'"),
		fakeanthropic.Text("done"),
	)
	h.send(execJob("alice-exec", "alice", "t1", "Look around"))
	r := h.final("alice-exec", 2*time.Minute)
	if r.Status != jobs.StatusSucceeded {
		t.Fatalf("alice's execute: %+v", r.Error)
	}
	if last, ok := h.api.LastMessageRequest(); !ok || last.Contains("BOB-UNPUBLISHED-PAGE") {
		t.Errorf("bob's page reached alice's agent (request seen: %v)", ok)
	}
	for _, q := range processesOf(aliceUID) {
		if !descendsFrom(q.pid, worker) {
			t.Errorf("a process alice left survived her execute job: %d %s", q.pid, q.cmdline)
		}
	}

	for _, stage := range []string{"install", "devserver"} {
		loot, err := os.ReadFile(filepath.Join(aliceProject, "loot-"+stage+".txt"))
		if err != nil {
			t.Fatalf("the %s attack left no report: %v", stage, err)
		}
		report := string(loot)
		t.Logf("%s attack report (first lines):\n%s", stage, firstLines(report, 12))
		if !strings.Contains(report, "uid="+strconv.FormatUint(uint64(aliceUID), 10)+"\n") {
			t.Errorf("%s: the attack did not run as alice's uid %d", stage, aliceUID)
		}
		if want := "groups=" + strconv.FormatUint(uint64(aliceUID), 10) + "\n"; !strings.Contains(report, want) {
			t.Errorf("%s: alice's process has other groups than her own", stage)
		}
		for _, bad := range []string{"read-other:", "wrote-other:", "environ-of:", "mem-of:", "secret-in:", "planted:", "SYSTEMTEST"} {
			if strings.Contains(report, bad) {
				t.Errorf("%s: the attack succeeded: %q", stage, bad)
			}
		}
	}
	for _, f := range []string{filepath.Join(bobProject, "pwned.html"), filepath.Join(bobProject, "pwned-by-agent.html"),
		filepath.Join(h.root, "planted"), filepath.Join(h.root, ".home"), filepath.Join(h.root, "acme", ".npmrc"), "/tmp/pwned"} {
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("%s exists", f)
		}
	}

	// bob's next job commits and pushes his own work only.
	h.api.SetScript(editHeading(filepath.Join(bobProject, "src", "pages", "index.astro"))...)
	h.send(execJob("bob-exec", "bob", "t1", "Edit the heading"))
	r = h.final("bob-exec", 2*time.Minute)
	if r.Status != jobs.StatusSucceeded || len(r.FilesChanged) != 2 {
		t.Errorf("bob's execute: %+v %+v, want index.html and his secret page committed", r.Error, r.FilesChanged)
	}
	for _, f := range r.FilesChanged {
		if strings.Contains(f, "pwned") {
			t.Errorf("bob's commit holds %s", f)
		}
	}
}

// owner returns the uid that owns path.
func owner(t *testing.T, path string) uint32 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Uid
}

type procInfo struct {
	pid     int
	cmdline string
}

// processesOf returns the live processes of uid with their command lines.
func processesOf(uid uint32) []procInfo {
	procs, _ := procfs.OfUID(uid)
	var out []procInfo
	for _, p := range procs {
		b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.PID), "cmdline"))
		out = append(out, procInfo{pid: p.PID, cmdline: strings.ReplaceAll(string(b), "\x00", " ")})
	}
	return out
}

// listenersOf counts the listening TCP sockets uid holds.
func listenersOf(t *testing.T, uid uint32) int {
	t.Helper()
	ls, err := procfs.Listeners()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range ls {
		if l.UID == uid {
			n++
		}
	}
	return n
}

// descendsFrom reports whether pid is root or below it.
func descendsFrom(pid, root int) bool {
	for pid > 1 {
		if pid == root {
			return true
		}
		p, ok := procfs.Read(pid)
		if !ok {
			return false
		}
		pid = p.PPID
	}
	return false
}

// firstLines returns the first n lines of s.
func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

// TestPlainUserWorkerServesOneTenant: a worker that is not root cannot run
// tenants under uids of their own: it says so, serves the first tenant (as
// itself), and answers a second tenant's job with an error instead of mixing
// two tenants under one uid.
func TestPlainUserWorkerServesOneTenant(t *testing.T) {
	t.Parallel()
	sandboxtest.RequireRoot(t) // to start the worker as another, plain user
	h := newHarness(t, harnessOptions{asUID: 3999991})
	p := h.start(nil)
	h.send(initJob("alice-init", "alice", "t1"))
	if r := h.final("alice-init", time.Minute); r.Status != jobs.StatusSucceeded {
		t.Fatalf("the first tenant's init: %+v", r.Error)
	}
	if got := owner(t, h.projectDir("alice")); got != 3999991 {
		t.Errorf("alice's project belongs to uid %d, want the worker's own 3999991", got)
	}
	h.send(initJob("bob-init", "bob", "t1"))
	r := h.final("bob-init", time.Minute)
	if r.Status != jobs.StatusFailed || r.Error == nil || !strings.Contains(r.Error.Message, "serves one tenant") {
		t.Errorf("a second tenant's init: %+v %+v, want a failure saying the worker serves one tenant", r, r.Error)
	}
	if _, err := os.Stat(h.projectDir("bob")); err == nil {
		t.Error("bob's workspace was created")
	}
	if !strings.Contains(p.logs.String(), "cannot run tenants under uids of their own") {
		t.Error("the worker did not say it cannot switch uids")
	}
}
