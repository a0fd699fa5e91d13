package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/ident"
	"github.com/webordinary/claude-code-astro/internal/procfs"
	"github.com/webordinary/claude-code-astro/internal/sandbox"
	"github.com/webordinary/claude-code-astro/internal/testkit/sandboxtest"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
)

func TestMain(m *testing.M) {
	if os.Getenv("SANDBOX_TEST_CONFINE") != "" {
		os.Exit(confinedChild())
	}
	os.Exit(m.Run())
}

func TestUIDsAreStableDistinctAndRaceFree(t *testing.T) {
	root := sandboxtest.Root(t)
	r := ident.UIDRange{Min: 200000, Max: 200099} // small: collisions of the hash are certain
	keys := []string{"acme/alice", "acme/Alice", "acme/ali_ce", "acme/ali-ce", "beta/alice", "acme/bob"}
	for i := range 40 {
		keys = append(keys, fmt.Sprintf("c%d/u%d", i%7, i))
	}
	// Eight workers on one root allocate every key at once.
	const workers = 8
	got := make([]map[string]uint32, workers)
	var wg sync.WaitGroup
	for w := range workers {
		got[w] = map[string]uint32{}
		a, err := sandbox.NewAllocator(root, r)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for i := range keys {
				key := keys[(i+w*5)%len(keys)]
				uid, err := a.UID(key)
				if err != nil {
					t.Errorf("worker %d: UID(%s): %v", w, key, err)
					return
				}
				got[w][key] = uid
			}
		})
	}
	wg.Wait()
	owner := map[uint32]string{}
	for _, key := range keys {
		uid := got[0][key]
		for w := 1; w < workers; w++ {
			if got[w][key] != uid {
				t.Errorf("%s: worker 0 says uid %d, worker %d says %d", key, uid, w, got[w][key])
			}
		}
		if uid < r.Min || uid > r.Max {
			t.Errorf("%s: uid %d outside %s", key, uid, r)
		}
		if other, taken := owner[uid]; taken {
			t.Errorf("uid %d given to %s and %s", uid, other, key)
		}
		owner[uid] = key
	}
	// A new worker (a restart, another task) finds the same uids.
	a, err := sandbox.NewAllocator(root, r)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range keys {
		if uid, err := a.UID(key); err != nil || uid != got[0][key] {
			t.Errorf("after a restart %s has uid %d (%v), want %d", key, uid, err, got[0][key])
		}
	}
	fi, err := os.Stat(filepath.Join(root, ".uids"))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("uid records directory: %v %v, want mode 0700", fi.Mode(), err)
	}
}

func TestTenantsRunUnderTheirOwnUIDs(t *testing.T) {
	sb := sandboxtest.New(t)
	alice, err := sb.Tenant("acme", "alice")
	if err != nil {
		t.Fatal(err)
	}
	bob, err := sb.Tenant("acme", "bob")
	if err != nil {
		t.Fatal(err)
	}
	if alice.UID == bob.UID || alice.UID == uint32(os.Getuid()) || bob.UID == uint32(os.Getuid()) {
		t.Fatalf("uids: alice %d, bob %d, worker %d: want three different", alice.UID, bob.UID, os.Getuid())
	}
	cmd := exec.Command("/bin/sh", "-c", "id -u; id -g; id -G; grep -E '^(CapEff|CapPrm|CapAmb|NoNewPrivs)' /proc/self/status")
	alice.Apply(cmd)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("run as alice: %v", err)
	}
	f := strings.Fields(string(out))
	want := strconv.FormatUint(uint64(alice.UID), 10)
	if len(f) < 3 || f[0] != want || f[1] != want || f[2] != want {
		t.Errorf("alice's process: id -u, -g, -G = %q, want %s three times (no supplementary groups)", f, want)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "Cap") && !strings.HasSuffix(line, "0000000000000000") {
			t.Errorf("alice's process has capabilities: %s", line)
		}
	}
}

// TestStopKillsEveryProcessOfTheTenantButTheKeptOne: a process that left
// its parent's session with a double fork is found by its uid and killed; the
// kept process tree (a dev server) and other tenants' processes live on.
func TestStopKillsEveryProcessOfTheTenantButTheKeptOne(t *testing.T) {
	sb := sandboxtest.New(t)
	alice, _ := sb.Tenant("acme", "alice")
	bob, _ := sb.Tenant("acme", "bob")
	start := func(tn *sandbox.Tenant, script string) *exec.Cmd {
		t.Helper()
		cmd := exec.Command("/bin/sh", "-c", script)
		tn.Apply(cmd)
		cmd.SysProcAttr.Setpgid = true
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	devServer := start(alice, "sleep 300 & sleep 300 & wait")
	leftover := start(alice, "setsid sh -c 'sleep 300 & sleep 301' & exit 0")
	_ = leftover.Wait()
	other := start(bob, "sleep 300")
	wait.For(t, 10*time.Second, "alice's processes to start", func() bool {
		procs, _ := alice.Processes()
		return len(procs) >= 5 // the dev server's sh and two sleeps, the leftover sh and its sleeps
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	killed, err := alice.Stop(ctx, devServer.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if killed < 2 {
		t.Errorf("Stop killed %d processes, want the leftover's (at least 2)", killed)
	}
	procs, _ := alice.Processes()
	tree := procfs.Snapshot()
	keep := map[int]bool{devServer.Process.Pid: true}
	for _, d := range tree.Descendants(devServer.Process.Pid) {
		keep[d.PID] = true
	}
	for _, p := range procs {
		if !keep[p.PID] {
			t.Errorf("process %d of alice survived Stop", p.PID)
		}
	}
	if len(tree.Descendants(devServer.Process.Pid)) != 2 {
		t.Errorf("the kept tree lost processes: %v", tree.Descendants(devServer.Process.Pid))
	}
	if p, ok := procfs.Read(other.Process.Pid); !ok || p.Zombie {
		t.Error("Stop for alice killed bob's process")
	}

	// With nothing kept, every process of alice goes.
	if _, err := alice.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if procs, _ := alice.Processes(); len(procs) != 0 {
		t.Errorf("alice still has %d processes", len(procs))
	}
}

// TestConfine runs a child of this test binary that confines itself as the
// worker does, then checks what it kept and what its tenant children get.
func TestConfine(t *testing.T) {
	sandboxtest.RequireRoot(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = []string{"SANDBOX_TEST_CONFINE=1", "WORKER_SECRET=hunter2-confine", "PATH=/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("confined child: %v\n%s", err, out)
	}
	report := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		report[k] = v
	}
	// A fork bomb stops at its tenant's process limit, the other tenant
	// still starts processes, and a file past the size limit is cut short.
	if n, err := strconv.Atoi(report["bomb.processes"]); err != nil || n > 64 || n < 16 {
		t.Errorf("the fork bomb ran %q processes, want no more than the limit of 64\n%s", report["bomb.processes"], out)
	}
	if report["other.alive"] != "yes" {
		t.Errorf("another tenant could not start a process during the fork bomb\n%s", out)
	}
	if report["big.file"] != "refused" {
		t.Errorf("a tenant wrote a file past the size limit: %q\n%s", report["big.file"], out)
	}
	// CAP_CHOWN 0, CAP_FOWNER 3, CAP_KILL 5, CAP_SETGID 6, CAP_SETUID 7.
	const want = "00000000000000e9"
	for _, k := range []string{"worker.CapEff", "worker.CapPrm", "worker.CapBnd"} {
		if report[k] != want {
			t.Errorf("%s = %q, want %s (CHOWN FOWNER KILL SETGID SETUID)", k, report[k], want)
		}
	}
	for k, v := range map[string]string{"worker.CapInh": "0000000000000000", "worker.CapAmb": "0000000000000000",
		"worker.NoNewPrivs": "1", "worker.dumpable": "0", "tenant.CapEff": "0000000000000000", "tenant.CapPrm": "0000000000000000",
		"tenant.NoNewPrivs": "1", "tenant.reads_worker_environ": "no", "tenant.reads_worker_mem": "no", "tenant.ptrace_worker": "no"} {
		if report[k] != v {
			t.Errorf("%s = %q, want %q\n%s", k, report[k], v, out)
		}
	}
}

// confinedChild is the process TestConfine starts: it confines itself and
// prints what it and a tenant child can do.
func confinedChild() int {
	if _, err := sandbox.Confine(sandbox.Limits{MaxProcs: 64, MaxFileBytes: 1 << 20}); err != nil {
		fmt.Println("error=" + err.Error())
		return 1
	}
	status, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && (strings.HasPrefix(k, "Cap") || k == "NoNewPrivs") {
			fmt.Printf("worker.%s=%s\n", k, strings.TrimSpace(v))
		}
	}
	d, _, _ := syscall.RawSyscall(syscall.SYS_PRCTL, 3 /* PR_GET_DUMPABLE */, 0, 0)
	fmt.Printf("worker.dumpable=%d\n", d)
	pid := strconv.Itoa(os.Getpid())
	script := `grep -E '^(CapEff|CapPrm|NoNewPrivs)' /proc/self/status | sed 's/:[[:space:]]*/=/; s/^/tenant./'
if cat /proc/` + pid + `/environ >/dev/null 2>&1; then echo tenant.reads_worker_environ=yes; else echo tenant.reads_worker_environ=no; fi
if head -c1 /proc/` + pid + `/mem >/dev/null 2>&1; then echo tenant.reads_worker_mem=yes; else echo tenant.reads_worker_mem=no; fi
if grep -q 'hunter2' /proc/` + pid + `/environ 2>/dev/null; then echo tenant.ptrace_worker=yes; else echo tenant.ptrace_worker=no; fi`
	if err := runAs(212345, script); err != nil {
		fmt.Println("error=tenant child: " + err.Error())
		return 1
	}
	// A fork bomb of tenant 212346: 500 sleeping children, as many as the
	// limit lets it start.
	bomb := exec.Command("/bin/sh", "-c", `i=0; while [ $i -lt 500 ]; do sleep 60 2>/dev/null & i=$((i+1)); done; wait`)
	bomb.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 212346, Gid: 212346, Groups: []uint32{}}, Setpgid: true}
	if err := bomb.Start(); err != nil {
		fmt.Println("error=fork bomb: " + err.Error())
		return 1
	}
	// The bomb forks as fast as it can, then waits: count once the count
	// has stopped growing.
	var procs []procfs.Process
	for last, same, start := -1, 0, time.Now(); same < 5 && time.Since(start) < 10*time.Second; time.Sleep(50 * time.Millisecond) {
		procs, _ = procfs.OfUID(212346)
		if len(procs) == last {
			same++
		} else {
			last, same = len(procs), 0
		}
	}
	fmt.Printf("bomb.processes=%d\n", len(procs))
	other := "no"
	if runAs(212347, "true") == nil {
		other = "yes"
	}
	fmt.Println("other.alive=" + other)
	_ = syscall.Kill(-bomb.Process.Pid, syscall.SIGKILL)
	_ = bomb.Wait()
	tmp, _ := os.MkdirTemp("", "fsize-")
	_ = os.Chmod(tmp, 0o777)
	defer os.RemoveAll(tmp)
	big := "refused"
	if runAs(212345, "head -c 2000000 /dev/zero > "+tmp+"/big 2>/dev/null") == nil {
		big = "written"
	}
	fmt.Println("big.file=" + big)
	return 0
}

// runAs runs a shell script as uid (and gid), its output to stdout.
func runAs(uid uint32, script string) error {
	cmd := exec.Command("/bin/sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stdout
	return cmd.Run()
}

// TestUnprivilegedServesOneTenant: a sandbox that cannot switch uids runs
// its tenant as the worker, says so, and refuses a second tenant rather than
// run two tenants under one uid.
func TestUnprivilegedServesOneTenant(t *testing.T) {
	sb, err := sandbox.New(sandbox.Config{Root: t.TempDir(), Unprivileged: true})
	if err != nil {
		t.Fatal(err)
	}
	if sb.Privileged() {
		t.Fatal("Privileged() = true for an unprivileged sandbox")
	}
	alice, err := sb.Tenant("acme", "alice")
	if err != nil {
		t.Fatal(err)
	}
	if alice.Separate() || alice.Credential() != nil || alice.UID != uint32(os.Getuid()) {
		t.Errorf("alice = %+v, credential %v: want the worker's own uid", alice, alice.Credential())
	}
	if again, err := sb.Tenant("acme", "alice"); err != nil || again != alice {
		t.Errorf("alice again: %v %v", again, err)
	}
	if _, err := sb.Tenant("acme", "bob"); !errors.Is(err, sandbox.ErrSingleTenant) {
		t.Errorf("a second tenant: %v, want ErrSingleTenant", err)
	}
	if n, err := alice.Stop(context.Background()); n != 0 || err != nil {
		t.Errorf("Stop on an unprivileged tenant = %d, %v: it must never kill the worker's own processes", n, err)
	}
}
