package agent

import (
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/procfs"
	"github.com/webordinary/claude-code-astro/internal/testkit/fakeanthropic"
	"github.com/webordinary/claude-code-astro/internal/testkit/logbuf"
	"github.com/webordinary/claude-code-astro/internal/testkit/repo"
)

// testAPIKey is the key the tests give the CLI; it must never show in errors.
const testAPIKey = "sk-ant-test-0123456789abcdef"

// eachCLI runs test once for each CLI the worker supports (repo.CLIs: the
// pinned release and the oldest one), as subtests named by version.
func eachCLI(t *testing.T, test func(t *testing.T, cli repo.CLI)) {
	t.Helper()
	for _, cli := range repo.CLIs(t) {
		t.Run(cli.Version, func(t *testing.T) { test(t, cli) })
	}
}

// testEnv is one test's fake API and temporary workspace.
type testEnv struct {
	tb      testing.TB
	srv     *fakeanthropic.Server
	bin     string
	root    string
	project string
	config  string
	home    string
	tmp     string
	logs    *logbuf.Buffer

	mu   sync.Mutex
	pids []int
}

// newTestEnv starts a fake API with script and makes a project holding
// index.md ("hello world"), to run cli in.
func newTestEnv(tb testing.TB, cli repo.CLI, script ...fakeanthropic.Step) *testEnv {
	tb.Helper()
	root := tb.TempDir()
	e := &testEnv{
		tb:      tb,
		srv:     fakeanthropic.New(tb, script...),
		bin:     cli.Bin,
		root:    root,
		project: filepath.Join(root, "project"),
		config:  filepath.Join(root, ".claude"),
		home:    root,
		tmp:     filepath.Join(root, "tmp"),
		logs:    &logbuf.Buffer{},
	}
	if err := os.MkdirAll(e.project, 0o755); err != nil {
		tb.Fatal(err)
	}
	e.writeFile("index.md", "hello world\n")
	return e
}

// path returns the absolute path of a project file.
func (e *testEnv) path(name string) string {
	return filepath.Join(e.project, name)
}

func (e *testEnv) writeFile(name, content string) {
	e.tb.Helper()
	if err := os.WriteFile(e.path(name), []byte(content), 0o644); err != nil {
		e.tb.Fatal(err)
	}
}

func (e *testEnv) readFile(name string) string {
	e.tb.Helper()
	b, err := os.ReadFile(e.path(name))
	if err != nil {
		e.tb.Fatal(err)
	}
	return string(b)
}

// runner returns a Runner against the fake API; mod may adjust its config.
func (e *testEnv) runner(mod func(*Config)) *Runner {
	cfg := Config{
		Bin:              e.bin,
		APIKey:           testAPIKey,
		BaseURL:          e.srv.URL,
		PATH:             "/usr/local/bin:/usr/bin:/bin",
		MaxRetries:       -1,
		ProgressInterval: time.Nanosecond,
		KillGrace:        2 * time.Second,
		Logger:           slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Started: func(pid int) {
			e.mu.Lock()
			e.pids = append(e.pids, pid)
			e.mu.Unlock()
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	return NewRunner(cfg)
}

// request returns a Request for the test's workspace.
func (e *testEnv) request(instruction string) Request {
	return Request{
		Instruction: instruction,
		ProjectDir:  e.project,
		ConfigDir:   e.config,
		HomeDir:     e.home,
		TmpDir:      e.tmp,
	}
}

// startedPIDs returns the CLI process ids started so far.
func (e *testEnv) startedPIDs() []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]int(nil), e.pids...)
}

// assertNoProcessLeft fails if a process of any started CLI's process group
// still runs. (Zombies don't count: this machine's init does not reap them.)
func (e *testEnv) assertNoProcessLeft() {
	e.tb.Helper()
	pids := e.startedPIDs()
	if len(pids) == 0 {
		e.tb.Fatal("the CLI was never started")
	}
	procs, ok := procfs.All()
	if !ok {
		e.tb.Fatal("read /proc")
	}
	for _, pid := range pids {
		for _, p := range procs {
			if p.PGID == pid && !p.Zombie {
				e.tb.Errorf("process %d of the CLI's group %d still runs", p.PID, pid)
			}
		}
	}
}

// findDescendant returns a running descendant of root whose command name is comm.
func findDescendant(root int, comm string) (procfs.Process, bool) {
	procs, _ := procfs.All()
	parent := make(map[int]int, len(procs))
	for _, p := range procs {
		parent[p.PID] = p.PPID
	}
	for _, p := range procs {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.PID), "comm"))
		if err != nil || strings.TrimSpace(string(b)) != comm || p.Zombie {
			continue
		}
		for a := p.PPID; a > 1; a = parent[a] {
			if a == root {
				return p, true
			}
		}
	}
	return procfs.Process{}, false
}

// running reports whether process p (same pid and start time) still runs.
func running(p procfs.Process) bool {
	now, ok := procfs.Read(p.PID)
	return ok && now.Start == p.Start && !now.Zombie
}

// progressLog collects progress callbacks.
type progressLog struct {
	mu    sync.Mutex
	items []Progress
}

func (p *progressLog) add(pr Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.items = append(p.items, pr)
}

func (p *progressLog) all() []Progress {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Progress(nil), p.items...)
}
