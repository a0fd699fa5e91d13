package portcap_test

import (
	"bufio"
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/portcap"
	"github.com/webordinary/claude-code-astro/internal/testkit/sandboxtest"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
)

// holder is a tenant process listening on loopback ports.
type holder struct {
	cmd   *exec.Cmd
	ports []int
	done  chan error
}

// listen starts node as uid, listening on n loopback ports the kernel
// picks, and returns once they all listen.
func listen(t *testing.T, uid uint32, n int) *holder {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is needed to play a tenant process: %v", err)
	}
	cmd := exec.Command(node, "-e", `
const net = require('node:net');
const n = Number(process.argv[1]), ports = [];
for (let i = 0; i < n; i++) {
  const s = net.createServer();
  s.listen(0, '127.0.0.1', () => { ports.push(s.address().port); if (ports.length === n) console.log(ports.join(' ')); });
}
`, strconv.Itoa(n))
	cmd.Env = []string{"HOME=/nonexistent", "PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start a process as uid %d: %v", uid, err)
	}
	h := &holder{cmd: cmd, done: make(chan error, 1)}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		t.Fatalf("uid %d's process did not listen: %v", uid, err)
	}
	for _, f := range strings.Fields(line) {
		p, _ := strconv.Atoi(f)
		h.ports = append(h.ports, p)
	}
	go func() { h.done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-h.done })
	return h
}

// alive reports whether h still runs.
func (h *holder) alive() bool {
	select {
	case err := <-h.done:
		h.done <- err
		return false
	default:
		return true
	}
}

// TestTenantOverItsPortsIsStopped: alice's process listens on 12 ports with
// an allowance of 4, bob's on 3 and a root process on 12. One look kills
// alice's and frees her ports; bob's and root's keep running and listening.
func TestTenantOverItsPortsIsStopped(t *testing.T) {
	sandboxtest.RequireRoot(t)
	uids := sandboxtest.ClaimUIDs(t)
	aliceUID, bobUID := uids.Min, uids.Min+1
	alice := listen(t, aliceUID, 12)
	bob := listen(t, bobUID, 3)
	rootPorts := make([]net.Listener, 12)
	for i := range rootPorts {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		rootPorts[i] = ln
	}

	c, err := portcap.New(portcap.Config{MinUID: uids.Min, MaxUID: uids.Max, Max: 4})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Enforce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].UID != aliceUID || got[0].Listeners != 12 || got[0].Killed < 1 {
		t.Fatalf("violations %+v, want alice's uid %d with 12 listeners and her process killed", got, aliceUID)
	}
	wait.For(t, 5*time.Second, "alice's process to end", func() bool { return !alice.alive() })
	for _, p := range alice.ports {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Errorf("alice's port %d is still held: %v", p, err)
			continue
		}
		ln.Close()
	}
	if !bob.alive() {
		t.Fatal("bob's process, within his allowance, was killed")
	}
	for _, p := range bob.ports {
		conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Errorf("bob's port %d no longer answers: %v", p, err)
			continue
		}
		conn.Close()
	}
	if again, err := c.Enforce(context.Background()); err != nil || len(again) != 0 {
		t.Errorf("a second look: %+v, %v; want nothing over the cap", again, err)
	}
}

// TestRunEnforcesUntilCancelled: Run looks again and again, so a tenant
// that goes over its allowance later is stopped too, and returns when its
// context ends.
func TestRunEnforcesUntilCancelled(t *testing.T) {
	sandboxtest.RequireRoot(t)
	uids := sandboxtest.ClaimUIDs(t)
	c, err := portcap.New(portcap.Config{MinUID: uids.Min, MaxUID: uids.Max, Max: 2, Every: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { c.Run(ctx); close(ran) }()
	time.Sleep(100 * time.Millisecond) // Run is looking already
	late := listen(t, uids.Min, 5)
	wait.For(t, 5*time.Second, "the late tenant's process to be killed", func() bool { return !late.alive() })
	cancel()
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  portcap.Config
	}{
		{"no allowance", portcap.Config{MinUID: 100000, MaxUID: 100010, Max: 0}},
		{"root in the range", portcap.Config{MinUID: 0, MaxUID: 100010, Max: 4}},
		{"empty range", portcap.Config{MinUID: 100010, MaxUID: 100000, Max: 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := portcap.New(tt.cfg); err == nil {
				t.Errorf("New(%+v) = nil error", tt.cfg)
			}
		})
	}
}
