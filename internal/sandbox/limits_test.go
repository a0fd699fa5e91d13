package sandbox_test

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/webordinary/claude-code-astro/internal/sandbox"
	"github.com/webordinary/claude-code-astro/internal/testkit/sandboxtest"
)

// TestTenantProcessLimits: a tenant process started through Apply runs
// under its uid with RLIMIT_DATA and the niceness set from its first
// instruction (its own /proc says so), with the command's own process id;
// a process that allocates past the limit fails, one within it runs.
func TestTenantProcessLimits(t *testing.T) {
	sandboxtest.RequireRoot(t)
	const limit = 256 << 20
	sb, err := sandbox.New(sandbox.Config{Root: sandboxtest.Root(t), UIDs: sandboxtest.ClaimUIDs(t),
		Limits: sandbox.ChildLimits{DataBytes: limit, Nice: 10}})
	if err != nil {
		t.Fatal(err)
	}
	tenant, err := sb.Tenant("acme", "alice")
	if err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) (string, error) {
		cmd := exec.Command(name, args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent"}
		tenant.Apply(cmd)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// The shell reports its own pid, uid, data limit and niceness.
	out, err := run("/bin/sh", "-c", `echo "$$ $(id -u) $(ulimit -d) $(cut -d' ' -f19 /proc/$$/stat)"`)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	f := strings.Fields(out)
	// nice adds to the caller's niceness (the test may run under nice).
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	own, _ := strconv.Atoi(strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))[16])
	wantNice := strconv.Itoa(min(19, own+10))
	if len(f) != 4 || f[1] != strconv.Itoa(int(tenant.UID)) || f[2] != strconv.Itoa(limit>>10) || f[3] != wantNice {
		t.Errorf("pid uid data-limit(KiB) nice = %q, want uid %d, %d KiB, nice %s", out, tenant.UID, limit>>10, wantNice)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatal("node is needed: apt-get install -y nodejs")
	}
	alloc := func(mb int) (string, error) {
		return run("node", "-e", "const a=[];for(let i=0;i<"+strconv.Itoa(mb)+";i++)a.push(Buffer.alloc(1<<20,1));console.log('allocated')")
	}
	if out, err := alloc(64); err != nil || !strings.Contains(out, "allocated") {
		t.Errorf("64 MB under a 256 MB limit: %v %s", err, out)
	}
	if out, err := alloc(512); err == nil || strings.Contains(out, "allocated") {
		t.Errorf("512 MB under a 256 MB limit: allocated (%v)", err)
	}
}
