package preview_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/sandbox"
	"github.com/webordinary/claude-code-astro/internal/testkit/sandboxtest"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/preview"
	"github.com/webordinary/claude-code-astro/preview/previewtest"
)

// tenant is a user of a test whose processes run under a uid of their own.
type tenant struct {
	name string
	uid  uint32
	home string
}

// cred is the tenant's process credential.
func (tn tenant) cred() *syscall.Credential {
	return &syscall.Credential{Uid: tn.uid, Gid: tn.uid}
}

// tenants returns n tenants with uids of this test and their HOMEs.
func tenants(t *testing.T, names ...string) []tenant {
	t.Helper()
	sandboxtest.RequireRoot(t)
	uids := sandboxtest.ClaimUIDs(t)
	root := sandboxtest.Root(t)
	var out []tenant
	for i, name := range names {
		tn := tenant{name: name, uid: uids.Min + uint32(i) + 1, home: filepath.Join(root, name+"-home")}
		if err := os.Mkdir(tn.home, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(tn.home, int(tn.uid), int(tn.uid)); err != nil {
			t.Fatal(err)
		}
		out = append(out, tn)
	}
	t.Cleanup(func() {
		for _, tn := range out { // whatever a tenant left running
			killUID(tn.uid)
		}
	})
	return out
}

// killUID kills every process of uid.
func killUID(uid uint32) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if fi, err := os.Stat("/proc/" + e.Name()); err == nil && fi.Sys().(*syscall.Stat_t).Uid == uid {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// siteOf prepares a copy of site for tn: its directories belong to tn (the
// dev server writes .astro and node_modules/.vite), its files stay
// read-only hard links to the example's node_modules.
func siteOf(t *testing.T, site previewtest.Site, tn tenant, heading string) preview.Target {
	t.Helper()
	dir := filepath.Join(filepath.Dir(tn.home), tn.name+"-site")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	site.Copy(t, dir)
	site.InstallNodeModules(t, dir)
	setHeading(t, dir, heading)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.Contains(p, "/node_modules/") {
			return os.Lchown(p, int(tn.uid), int(tn.uid))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	id := preview.ID("acme", tn.name)
	return preview.Target{ID: id, Key: "acme/" + tn.name, Dir: dir, As: preview.RunAs{Credential: tn.cred(), Home: tn.home}}
}

// runAs runs node with script as tn and returns its output.
func runAs(t *testing.T, tn tenant, script string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin(t), append([]string{"-e", script}, args...)...)
	cmd.Dir = tn.home
	cmd.Env = []string{"HOME=" + tn.home, "PATH=" + sandbox.DefaultPATH}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: tn.cred()}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node as %s: %v\n%s", tn.name, err, out)
	}
	return strings.TrimSpace(string(out))
}

// nodeBin is the node of the Astro 5 site.
func nodeBin(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is missing: %v", err)
	}
	return p
}

// probeScript, run by another tenant, asks 127.0.0.1:port for a page's
// source and for Vite's HMR socket, and prints both statuses.
const probeScript = `
const http = require('node:http');
const port = Number(process.argv[1]);
const get = () => new Promise((res) => {
  http.get({host: '127.0.0.1', port, path: '/src/pages/index.astro?raw'}, (r) => {
    let body = ''; r.on('data', (c) => body += c); r.on('end', () => res(r.statusCode + (body.includes('<h1') ? ' source' : '')));
  }).on('error', (e) => res('error ' + e.code));
});
const upgrade = () => new Promise((res) => {
  const req = http.request({host: '127.0.0.1', port, path: '/', headers: {
    Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13',
    'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Protocol': 'vite-hmr'}});
  req.on('upgrade', (r, s) => { s.destroy(); res(String(r.statusCode)); });
  req.on('response', (r) => { r.resume(); res(String(r.statusCode)); });
  req.on('error', (e) => res('error ' + e.code));
  req.end();
});
(async () => { console.log((await get()) + ',' + (await upgrade())); })();
`

// TestDevServerAnswersOnlyTheProxy: another tenant's process reads bob's
// dev server directly over loopback (a page's source, Vite's HMR socket) and
// is refused, on both example sites; bob, through the gate and the proxy,
// sees his page; a process of bob's own uid is refused too without the
// secret (it only has it from the dev server's environment).
func TestDevServerAnswersOnlyTheProxy(t *testing.T) {
	for _, site := range previewtest.Sites() {
		t.Run(site.Name, func(t *testing.T) {
			tns := tenants(t, "alice", "bob")
			alice, bob := tns[0], tns[1]
			s := newServersFor(t, site, preview.ServersConfig{})
			target := siteOf(t, site, bob, "Bob's secret draft")
			// The tenant's limits hold for its dev server too.
			limits := sandbox.ChildLimits{DataBytes: 2 << 30, Nice: 7}
			if err := limits.Resolve(); err != nil {
				t.Fatal(err)
			}
			target.As.Limit = limits.Wrap
			targetServers(t, s, target)
			if pid := s.PIDFor(target.Dir); pid == 0 {
				t.Error("no dev server process for bob")
			} else if nice, data := procLimits(t, pid); nice != 7 || data != 2<<30 {
				t.Errorf("bob's dev server runs at niceness %d with RLIMIT_DATA %d, want 7 and %d", nice, data, 2<<30)
			}
			base, tokens := gated(t, s)
			if status, body := getAs(t, base, tokens, user{name: "bob", target: target}, "/"); status != 200 || !strings.Contains(body, "Bob&#39;s secret draft") && !strings.Contains(body, "Bob's secret draft") {
				t.Fatalf("bob's preview: status %d, body %.300s", status, body)
			}
			port := portOf(t, s, target.ID)
			for _, tn := range []tenant{alice, bob} {
				got := runAs(t, tn, probeScript, strconv.Itoa(port))
				if got != "403,403" {
					t.Errorf("%s read bob's dev server on 127.0.0.1:%d directly: source %q, want 403,403 (page source, HMR upgrade)", tn.name, port, got)
				}
			}
		})
	}
}

// TestDevServerPortRace takes bob's port as alice in the window between
// the worker's check that it is free and the dev server's listen (the
// BeforeStart hook): the dev server moves to another port, alice's listener
// never receives a byte (no request, no secret), and bob's preview serves
// bob's site.
func TestDevServerPortRace(t *testing.T) {
	tns := tenants(t, "alice", "bob")
	alice, bob := tns[0], tns[1]
	site := previewtest.Default()
	var (
		once     sync.Once
		squatted int
		squatter *exec.Cmd
		heard    bytes.Buffer
		heardMu  sync.Mutex
	)
	s := newServersFor(t, site, preview.ServersConfig{BeforeStart: func(port int) {
		once.Do(func() {
			squatted = port
			// Alice listens on bob's port and reports every connection and
			// every byte it receives; she also answers HTTP, as a page would.
			squatter = exec.Command(nodeBin(t), "-e", `
const net = require('node:net');
const srv = net.createServer((c) => {
  console.log('connection');
  c.on('data', (d) => { console.log('data ' + JSON.stringify(d.toString())); c.end('HTTP/1.1 200 OK\r\nContent-Length: 14\r\n\r\nAlice\'s page!\n'); });
  c.on('error', () => {});
});
srv.listen(Number(process.argv[1]), '127.0.0.1', () => console.log('listening'));
`, strconv.Itoa(port))
			squatter.Env = []string{"HOME=" + alice.home}
			squatter.SysProcAttr = &syscall.SysProcAttr{Credential: alice.cred()}
			squatter.Stdout = lockedWriter{&heardMu, &heard}
			if err := squatter.Start(); err != nil {
				t.Errorf("start alice's squatter: %v", err)
				return
			}
			wait.For(t, 10*time.Second, "alice to listen on bob's port", func() bool {
				heardMu.Lock()
				defer heardMu.Unlock()
				return strings.Contains(heard.String(), "listening")
			})
		})
	}})
	t.Cleanup(func() {
		if squatter != nil && squatter.Process != nil {
			_ = squatter.Process.Kill()
			_ = squatter.Wait()
		}
	})
	target := siteOf(t, site, bob, "Bob's draft")
	targetServers(t, s, target)
	base, tokens := gated(t, s)
	for range 5 {
		if status, body := getAs(t, base, tokens, user{name: "bob", target: target}, "/"); status != 200 || !strings.Contains(body, "Bob") {
			t.Fatalf("bob's preview: status %d, body %.300s", status, body)
		}
	}
	if port := portOf(t, s, target.ID); port == squatted || squatted == 0 {
		t.Errorf("bob's dev server is on %d, alice took %d", port, squatted)
	}
	heardMu.Lock()
	defer heardMu.Unlock()
	if strings.Contains(heard.String(), "data") {
		t.Errorf("alice's listener on bob's port received bytes:\n%s", heard.String())
	}
}

// TestPortExhaustion: alice holds every port of the dev servers' range;
// bob's preview starts anyway, on a port the kernel gives.
func TestPortExhaustion(t *testing.T) {
	tns := tenants(t, "alice", "bob")
	alice, bob := tns[0], tns[1]
	site := previewtest.Default()
	const portRange = 20
	base := freeRange(t, portRange)
	hold := exec.Command(nodeBin(t), "-e", `
const net = require('node:net');
const first = Number(process.argv[1]), n = Number(process.argv[2]);
let up = 0;
for (let p = first; p < first + n; p++) net.createServer().listen(p, '127.0.0.1', () => { if (++up === n) console.log('holding'); });
`, strconv.Itoa(base), strconv.Itoa(portRange))
	hold.Env = []string{"HOME=" + alice.home}
	hold.SysProcAttr = &syscall.SysProcAttr{Credential: alice.cred()}
	var out bytes.Buffer
	var mu sync.Mutex
	hold.Stdout = lockedWriter{&mu, &out}
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hold.Process.Kill(); _ = hold.Wait() })
	wait.For(t, 10*time.Second, "alice to hold the range", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(out.String(), "holding")
	})

	s := newServersFor(t, site, preview.ServersConfig{BasePort: base, PortRange: portRange})
	target := siteOf(t, site, bob, "Bob's draft")
	targetServers(t, s, target)
	gbase, tokens := gated(t, s)
	if status, body := getAs(t, gbase, tokens, user{name: "bob", target: target}, "/"); status != 200 || !strings.Contains(body, "Bob") {
		t.Fatalf("bob's preview: status %d, body %.300s", status, body)
	}
	if port := portOf(t, s, target.ID); port >= base && port < base+portRange {
		t.Errorf("bob's dev server on %d, inside alice's range %d-%d", port, base, base+portRange-1)
	}
}

// lockedWriter writes to a buffer under a lock.
type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// freeRange returns the first of n consecutive free loopback ports.
func freeRange(t *testing.T, n int) int {
	t.Helper()
	for start := 20000 + os.Getpid()%10000; start < 60000; start += n {
		ok := true
		for p := start; p < start+n && ok; p++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				continue
			}
			ln.Close()
		}
		if ok {
			return start
		}
	}
	t.Fatal("no free port range")
	return 0
}

// newServersFor is newServers for site's node, with cfg's BasePort, PortRange
// and BeforeStart.
func newServersFor(t *testing.T, site previewtest.Site, cfg preview.ServersConfig) *preview.Servers {
	t.Helper()
	cfg.PATH = site.PATH(t)
	s, _ := newServers(t, cfg)
	return s
}

// targetServers starts t's dev server.
func targetServers(tb testing.TB, s *preview.Servers, t preview.Target) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := s.Target(ctx, t); err != nil {
		tb.Fatalf("target %s: %v", t.Key, err)
	}
}

// portOf returns the port of preview id's dev server.
func portOf(t *testing.T, s *preview.Servers, id string) int {
	t.Helper()
	for _, info := range s.List() {
		if info.ID == id {
			return info.Port
		}
	}
	t.Fatalf("no dev server for %s", id)
	return 0
}

// procLimits returns the niceness and the soft RLIMIT_DATA of process pid.
func procLimits(t *testing.T, pid int) (nice int, data uint64) {
	t.Helper()
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command (in parentheses): state is field 3, nice 19.
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	nice, _ = strconv.Atoi(fields[16])
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(limits), "\n") {
		if strings.HasPrefix(line, "Max data size") {
			f := strings.Fields(strings.TrimPrefix(line, "Max data size"))
			data, _ = strconv.ParseUint(f[0], 10, 64)
		}
	}
	return nice, data
}
