package systemtest

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/ident"
	"github.com/webordinary/claude-code-astro/internal/procfs"
	"github.com/webordinary/claude-code-astro/internal/testkit/fakeanthropic"
	"github.com/webordinary/claude-code-astro/internal/testkit/logbuf"
	"github.com/webordinary/claude-code-astro/internal/testkit/repo"
	"github.com/webordinary/claude-code-astro/internal/testkit/sandboxtest"
	"github.com/webordinary/claude-code-astro/internal/testkit/sqstest"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// workerBin is the worker binary built once for the package.
var workerBin string

// repoRoot is the module's root directory.
var repoRoot string

// npmCache is shared by every worker the tests start, so the example site's
// packages are fetched from the registry once per run.
var npmCache string

// cliCache is every worker's WORKER_CACHE_DIR: where a worker copies the
// CLI when tenant uids cannot reach the checkout's (a clone under a 0700
// directory), once per run.
var cliCache string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	dir, err := os.MkdirTemp("", "worker-bin-")
	if err == nil {
		err = os.Chmod(dir, 0o755) // a test runs the binary as a plain user too
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	workerBin = filepath.Join(dir, "worker")
	npmCache = filepath.Join(dir, "npm-cache")
	cliCache = filepath.Join(dir, "cli-cache")
	build := exec.Command("go", "build", "-race", "-o", workerBin, "./cmd/worker")
	build.Dir = repoRoot
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build the worker:", err)
		return 1
	}
	return m.Run()
}

// Secrets the tests recognise wherever they leak.
const (
	testAPIKey = "sk-ant-api03-SYSTEMTEST-KEY-0123456789abcdef"
	testToken  = "ghp_SYSTEMTESTTOKEN0123456789abcdefABCD"
)

// harness is one worker's world: queues, a remote, a fake API, a workspace.
type harness struct {
	t         *testing.T
	emu       *sqstest.Emulator
	jobsQ     sqstest.Queue
	respQ     sqstest.Queue
	responses *sqstest.Responses
	git       *workspacetest.Git
	remote    *workspacetest.Remote
	api       *fakeanthropic.Server
	root      string // WORKSPACE_PATH
	home      string // the worker's HOME
	env       map[string]string
	opt       harnessOptions
}

type harnessOptions struct {
	visibility time.Duration
	// asUID, when not 0, runs the worker as that uid (and gid), a plain
	// user: it owns the workspace root and HOME.
	asUID uint32
	// bin and dir, when set, are the worker binary to run and its working
	// directory (default: the one built for the package, run here).
	bin, dir string
	// cli is the Claude Code CLI the worker runs; zero: the pinned one.
	cli repo.CLI
}

func newHarness(t *testing.T, opt harnessOptions) *harness {
	t.Helper()
	if opt.visibility == 0 {
		opt.visibility = 30 * time.Second
	}
	if opt.cli.Bin == "" {
		opt.cli.Bin = repo.ClaudeBin(t)
	}
	h := &harness{t: t, opt: opt, emu: sqstest.Start(t), git: workspacetest.NewGit(t), root: sandboxtest.Root(t), home: t.TempDir()}
	if opt.asUID != 0 {
		h.home = workspacetest.Reachable(t)
		for _, d := range []string{h.root, h.home} {
			if err := os.Chown(d, int(opt.asUID), int(opt.asUID)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// kumo keeps its queues in one store per process, whatever the server:
	// each test names its own.
	name := queueName(t)
	h.jobsQ = h.emu.CreateQueue(t, name+"-jobs", sqstest.QueueOptions{FIFO: true, VisibilityTimeout: opt.visibility})
	h.respQ = h.emu.CreateQueue(t, name+"-responses", sqstest.QueueOptions{FIFO: true})
	h.responses = sqstest.NewResponses(h.respQ)
	h.remote = workspacetest.NewRemote(t, h.git, workspacetest.SiteFiles())
	h.api = fakeanthropic.New(t)
	h.env = map[string]string{
		"PATH":                      os.Getenv("PATH"),
		"HOME":                      h.home,
		"AWS_ENDPOINT_URL":          h.emu.URL,
		"AWS_REGION":                "us-east-1",
		"AWS_ACCESS_KEY_ID":         "test",
		"AWS_SECRET_ACCESS_KEY":     "test",
		"AWS_EC2_METADATA_DISABLED": "true",
		"JOB_QUEUE_URL":             h.jobsQ.URL,
		"RESPONSE_QUEUE_URL":        h.respQ.URL,
		"WORKSPACE_PATH":            h.root,
		"HTTP_ADDR":                 "127.0.0.1:0",
		"ASTRO_DEV_MODE":            "false",
		"AUTO_SHUTDOWN_MINUTES":     "0",
		"CLAUDE_BIN":                opt.cli.Bin,
		"WORKER_CACHE_DIR":          cliCache,
		"ANTHROPIC_API_KEY":         testAPIKey,
		"ANTHROPIC_BASE_URL":        h.api.URL,
		"REPO_URL":                  h.remote.URL,
		"LOG_FORMAT":                "json",
		"LOG_LEVEL":                 "debug",
		// Its own uids: tests run at once, and their tenants' names repeat.
		"TENANT_UIDS": uidRange(sandboxtest.ClaimUIDs(t)),
	}
	return h
}

// uidRange formats r as TENANT_UIDS does.
func uidRange(r ident.UIDRange) string {
	return strconv.FormatUint(uint64(r.Min), 10) + "-" + strconv.FormatUint(uint64(r.Max), 10)
}

// queueName turns the test's name into a queue name.
func queueName(t *testing.T) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, t.Name())
}

// proc is a running worker subprocess.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	logs   *logbuf.Buffer
	addr   string
	done   chan struct{}
	status int
	// socket is the worker's STATUS_SOCKET.
	socket string
}

// start runs the worker with the harness environment plus extra.
func (h *harness) start(extra map[string]string) *proc {
	h.t.Helper()
	p := h.launch(extra)
	deadline := time.Now().Add(30 * time.Second)
	for p.addr == "" {
		select {
		case <-p.done:
			h.t.Fatalf("worker exited with %d before listening:\n%s", p.status, p.logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if m := listeningRE.FindStringSubmatch(p.logs.String()); m != nil {
			p.addr = m[1]
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("worker not listening after 30s:\n%s", p.logs.String())
		}
	}
	return p
}

var listeningRE = regexp.MustCompile(`"msg":"listening","http_addr":"([^"]+)"`)

// launch starts the worker without waiting for it.
func (h *harness) launch(extra map[string]string) *proc {
	h.t.Helper()
	return h.launchArgs([]string{"run"}, extra)
}

// launchArgs starts the worker binary with args (its subcommand first).
func (h *harness) launchArgs(args []string, extra map[string]string) *proc {
	h.t.Helper()
	env := map[string]string{}
	for k, v := range h.env {
		env[k] = v
	}
	for k, v := range extra {
		if v == "" {
			delete(env, k)
		} else {
			env[k] = v
		}
	}
	if env["STATUS_SOCKET"] == "" {
		// A status socket of its own: workers of tests running at once
		// would share the default one. Its parent is one the worker's uid
		// can write (it creates the 0700 directory of the socket).
		env["STATUS_SOCKET"] = filepath.Join(workspacetest.Reachable(h.t), "status", "status.sock")
	}
	cmd := exec.Command(cmp.Or(h.opt.bin, workerBin), args...)
	cmd.Dir = h.opt.dir
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &proc{t: h.t, cmd: cmd, logs: &logbuf.Buffer{}, done: make(chan struct{}), socket: env["STATUS_SOCKET"]}
	cmd.Stdout = p.logs
	cmd.Stderr = p.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if uid := h.opt.asUID; uid != 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}
	}
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	go func() {
		err := cmd.Wait()
		p.status = cmd.ProcessState.ExitCode()
		if err != nil && p.status == 0 {
			p.status = -1
		}
		close(p.done)
	}()
	h.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(25 * time.Second):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-p.done
			}
		}
		if h.t.Failed() {
			h.t.Logf("worker log:\n%s", p.logs.String())
		}
	})
	return p
}

// stop sends sig and waits up to limit for the exit, returning the code.
func (p *proc) stop(sig syscall.Signal, limit time.Duration) (code int, took time.Duration) {
	p.t.Helper()
	start := time.Now()
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return p.status, time.Since(start)
	case <-time.After(limit):
		p.t.Fatalf("worker did not exit within %s of %v", limit, sig)
		return -1, 0
	}
}

// wait waits up to limit for the worker to exit by itself.
func (p *proc) wait(limit time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.status
	case <-time.After(limit):
		p.t.Fatalf("worker still running after %s", limit)
		return -1
	}
}

// health returns /health's status code and body.
func (p *proc) health() (int, map[string]any) {
	p.t.Helper()
	resp, err := http.Get("http://" + p.addr + "/health")
	if err != nil {
		p.t.Fatalf("GET /health: %v", err)
	}
	defer resp.Body.Close()
	var body map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &body); err != nil {
		p.t.Fatalf("/health body %q: %v", b, err)
	}
	return resp.StatusCode, body
}

// workerStatus returns what `worker status` prints: the tenant details /health
// never shows.
func (p *proc) workerStatus() map[string]any {
	p.t.Helper()
	out, err := exec.Command(workerBin, "status", "-socket", p.socket).Output()
	if err != nil {
		p.t.Fatalf("worker status: %v", err)
	}
	var body map[string]any
	if err := json.Unmarshal(out, &body); err != nil {
		p.t.Fatalf("worker status printed %q: %v", out, err)
	}
	return body
}

// send puts a job on the job queue.
func (h *harness) send(j jobs.Job) {
	h.t.Helper()
	h.jobsQ.SendJob(h.t, j)
}

// final waits for the final response to jobID and returns it.
func (h *harness) final(jobID string, limit time.Duration) jobs.Response {
	h.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		for _, r := range h.responses.Final() {
			if r.JobID == jobID {
				return r
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("no final response for %s within %s; got %+v", jobID, limit, h.responses.All)
		}
		h.responses.Poll(h.t, time.Second)
	}
}

func initJob(id, user, thread string) jobs.Job {
	return jobs.Job{Type: jobs.TypeInit, JobID: id, ClientID: "acme", UserID: user, ThreadID: thread}
}

func execJob(id, user, thread, instruction string) jobs.Job {
	return jobs.Job{Type: jobs.TypeExecute, JobID: id, ClientID: "acme", UserID: user, ThreadID: thread, Instruction: instruction}
}

// projectDir is the user's checkout.
func (h *harness) projectDir(user string) string {
	return filepath.Join(h.root, "acme", user, "project")
}

// descendants returns the pids of every live process below pid.
func descendants(pid int) []int {
	var out []int
	for _, p := range procfs.Descendants(pid) {
		out = append(out, p.PID)
	}
	return out
}

// processesUsing returns live processes whose environment mentions needle
// (a temp dir unique to the test): what a worker left behind.
func processesUsing(needle string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil || e.Name() == strconv.Itoa(os.Getpid()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !strings.Contains(string(b), needle) {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if s := string(stat); strings.Contains(s, ") Z ") {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		out = append(out, e.Name()+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	return out
}

// waitNoProcesses waits until no process mentions needle.
func waitNoProcesses(t *testing.T, needle string) {
	t.Helper()
	if !wait.Until(10*time.Second, func() bool { return len(processesUsing(needle)) == 0 }) {
		t.Fatalf("processes left behind: %v", processesUsing(needle))
	}
}

// logLines returns the worker's JSON log lines.
func logLines(t *testing.T, logs string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

var _ = context.Background

// jsonUnmarshal decodes a JSON string.
func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
