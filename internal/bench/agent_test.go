package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/agent"
	"github.com/webordinary/claude-code-astro/internal/procfs"
	"github.com/webordinary/claude-code-astro/internal/testkit/browser"
	"github.com/webordinary/claude-code-astro/internal/testkit/fakeanthropic"
	"github.com/webordinary/claude-code-astro/internal/testkit/sqstest"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/preview/previewtest"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// agentWorker is a worker binary with the real CLI against the fake
// Messages API and a remote repository, reached through the emulator.
type agentWorker struct {
	p         *workerProc
	api       *fakeanthropic.Server
	jobsQ     sqstest.Queue
	responses *collector
	workspace string // WORKSPACE_PATH
}

// startAgentWorker starts it; extra entries override the environment.
func (e *env) startAgentWorker(b *testing.B, name string, files map[string]string, extra map[string]string) *agentWorker {
	return e.startAgentWorkerAs(b, name, files, extra, nil)
}

// startAgentWorkerAs is startAgentWorker with the worker run as as (nil:
// as this process, root).
func (e *env) startAgentWorkerAs(b *testing.B, name string, files map[string]string, extra map[string]string, as *syscall.Credential) *agentWorker {
	claude := e.claudeBin(b)
	emu := sqstest.Start(b)
	jobsQ, respQ := queues(b, emu, name)
	remote := workspacetest.NewRemote(b, workspacetest.NewGit(b), files)
	api := fakeanthropic.New(b)
	vars := workerEnv(b, emu, jobsQ, respQ)
	vars["AWS_ENDPOINT_URL"] = emu.URL
	vars["CLAUDE_BIN"] = claude
	vars["ANTHROPIC_BASE_URL"] = api.URL
	vars["REPO_URL"] = remote.URL
	for k, v := range extra {
		vars[k] = v
	}
	p := e.startWorkerAs(b, vars, as)
	p.waitHealthy(20*time.Millisecond, 30*time.Second)
	return &agentWorker{p: p, api: api, jobsQ: jobsQ, responses: collect(b, respQ, 1), workspace: vars["WORKSPACE_PATH"]}
}

// run sends job and returns its final response, failing unless it succeeded.
func (w *agentWorker) run(b *testing.B, job jobs.Job, timeout time.Duration) received {
	b.Helper()
	if err := sendJob(context.Background(), w.jobsQ, job); err != nil {
		b.Fatal(err)
	}
	r := w.responses.wait(b, job.JobID, timeout)
	if r.resp.Status != jobs.StatusSucceeded {
		b.Fatalf("job %s: %+v error %+v", job.JobID, r.resp, r.resp.Error)
	}
	if job.Type == jobs.TypeExecute && (r.resp.Commit == "" || r.resp.Claude == nil) {
		b.Fatalf("execute job %s committed nothing: %+v", job.JobID, r.resp)
	}
	return r
}

// page returns the path of the user's home page in the workspace.
func (w *agentWorker) page(user string) string {
	return filepath.Join(w.workspace, "acme", user, "project", "src", "pages", "index.astro")
}

func initJob(id, user string) jobs.Job {
	return jobs.Job{Type: jobs.TypeInit, JobID: id, ClientID: "acme", UserID: user, ThreadID: "t1"}
}

func execJob(id, user, instruction string) jobs.Job {
	return jobs.Job{Type: jobs.TypeExecute, JobID: id, ClientID: "acme", UserID: user, ThreadID: "t1", Instruction: instruction}
}

// benchExecute: rows 7a-7d, execute jobs of the worker binary with the real
// CLI (Read, Edit, a text answer from the fake API) on a warm workspace of
// the small test site, the preview off.
func benchExecute(b *testing.B, e *env) {
	const warmup, n = 1, 5
	w := e.startAgentWorker(b, "execute", workspacetest.SiteFiles(), nil)
	w.run(b, initJob("init", "bench"), 2*time.Minute)
	page := w.page("bench")

	bare := newBareCLI(b, e.claudeBin(b), w.api.URL, workspacetest.NewGit(b))

	heading := "<h1>Hello</h1>"
	var overhead, startup, outsideCLI, whole, bareRuns []time.Duration
	for i := range warmup + n {
		next := fmt.Sprintf("<h1>Edit %d</h1>", i)
		instruction := "Change the heading to Edit " + strconv.Itoa(i)
		w.api.SetScript(fakeanthropic.EditFile(page, heading, next, "The heading now says Edit "+strconv.Itoa(i)+".")...)
		offset := w.p.logs.Len()
		requests := len(w.api.Requests())
		r := w.run(b, execJob(fmt.Sprintf("exec-%d", i), "bench", instruction), 3*time.Minute)
		calls := len(w.api.Requests()) - requests
		// The baseline takes turns with the jobs: the same prompt and
		// script, its own copy of the site.
		w.api.SetScript(fakeanthropic.EditFile(bare.page, heading, next, "The heading now says Edit "+strconv.Itoa(i)+".")...)
		bareRun := bare.run(b, instruction, next)
		heading = next
		if i < warmup {
			continue // the CLI's first run in this workspace, and a fresh session
		}
		bareRuns = append(bareRuns, bareRun)
		e.callsPerExecute = calls
		rec, fin := times(b, r.resp)
		total := fin.Sub(rec)
		wall, start := agentTimes(b, w.p, offset)
		overhead = append(overhead, total-wall)
		startup = append(startup, start)
		outsideCLI = append(outsideCLI, total-time.Duration(r.resp.Claude.DurationMs)*time.Millisecond)
		whole = append(whole, total)
	}
	e.table.Check("7a", VsBaseline(whole, bareRuns), Ratio(whole, bareRuns) < executeGoal)
	e.table.Info("7e", medMax(overhead))
	b.ReportMetric(Ratio(whole, bareRuns), "execute-vs-bare-cli-x")
	e.table.Info("7b", medMax(startup))
	e.table.Info("7c", Ms(Median(outsideCLI)))
	e.table.Info("7d", Ms(Median(whole)))
	b.ReportMetric(ms(Median(overhead)), "execute-overhead-median-ms")
	b.ReportMetric(ms(Median(startup)), "cli-startup-median-ms")
}

// bareCLI is row 7a's baseline: the pinned CLI run as the agent runner runs
// it (its arguments, an allowlisted environment, the instruction on stdin,
// one session resumed run after run), straight from this process, with no
// worker, in a plain copy of the same site: a git repository, as the
// worker's project is (the CLI reads a repository's state as it starts),
// each run's edit committed after it, as the worker commits a job's.
type bareCLI struct {
	bin, dir, page string
	env            []string
	session        string
	runs           int
	git            *workspacetest.Git
}

func newBareCLI(b *testing.B, bin, apiURL string, git *workspacetest.Git) *bareCLI {
	dir := b.TempDir()
	workspacetest.WriteFiles(b, dir, workspacetest.SiteFiles())
	git.Run(dir, "init", "--quiet", "--initial-branch=main")
	git.Run(dir, "add", "--all")
	git.Run(dir, "commit", "--quiet", "--message=site")
	home, config, tmp := b.TempDir(), b.TempDir(), b.TempDir()
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		b.Fatal(err)
	}
	id[6], id[8] = id[6]&0x0f|0x40, id[8]&0x3f|0x80 // a version 4 UUID
	return &bareCLI{
		bin: bin, dir: dir, page: filepath.Join(dir, "src", "pages", "index.astro"), git: git,
		session: fmt.Sprintf("%x-%x-%x-%x-%x", id[0:4], id[4:6], id[6:8], id[8:10], id[10:]),
		env: []string{
			"PATH=" + os.Getenv("PATH"), "HOME=" + home, "CLAUDE_CONFIG_DIR=" + config,
			"CLAUDE_CODE_TMPDIR=" + tmp, "TMPDIR=" + tmp, "LANG=C.UTF-8",
			"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_AUTOUPDATER=1",
			"DISABLE_TELEMETRY=1", "DISABLE_ERROR_REPORTING=1",
			"ANTHROPIC_API_KEY=bench-bare-key", "ANTHROPIC_BASE_URL=" + apiURL,
		},
	}
}

// run runs the CLI once on instruction and returns its time from start to
// exit, failing unless it exited 0 with want in the page.
func (c *bareCLI) run(b *testing.B, instruction, want string) time.Duration {
	b.Helper()
	args := []string{"-p", "--output-format", "stream-json", "--verbose", "--max-turns", "30",
		"--strict-mcp-config", "--setting-sources", "",
		"--settings", `{"permissions":{"allow":["Read(./**)","Edit(./**)"]},"disableAllHooks":true}`,
		"--permission-mode", "dontAsk", "--tools", strings.Join(agent.DefaultTools(), ",")}
	if c.runs == 0 {
		args = append(args, "--session-id", c.session)
	} else {
		args = append(args, "--resume", c.session)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Dir, cmd.Env, cmd.Stdin = c.dir, c.env, strings.NewReader(instruction)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(start)
	if err != nil {
		b.Fatalf("the bare CLI run: %v\n%s", err, out)
	}
	if page, err := os.ReadFile(c.page); err != nil || !strings.Contains(string(page), want) {
		b.Fatalf("the bare CLI run did not make its edit (%v): %s\n%s", err, page, out)
	}
	c.git.Run(c.dir, "commit", "--quiet", "--all", "--message="+instruction)
	c.runs++
	return took
}

// agentTimes reads the one "agent finished" log line written after offset:
// the CLI's wall time (start to exit, its processes gone) and its start-up
// (start to its init line).
func agentTimes(b *testing.B, p *workerProc, offset int) (wall, startup time.Duration) {
	b.Helper()
	var found []map[string]any
	for _, l := range p.logLines(offset) {
		if l["msg"] == "agent finished" {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		b.Fatalf("want one \"agent finished\" log line for the job, found %d", len(found))
	}
	wallMs, ok1 := found[0]["wall_ms"].(float64)
	startupMs, ok2 := found[0]["startup_ms"].(float64)
	if !ok1 || !ok2 {
		b.Fatalf("\"agent finished\" lacks wall_ms or startup_ms: %v", found[0])
	}
	return time.Duration(wallMs) * time.Millisecond, time.Duration(startupMs) * time.Millisecond
}

// benchMemory: rows 11a-11c, the worker binary with the preview on the
// example site, the real CLI and a page open in headless Chromium (not
// counted): the summed RSS of the worker's process tree during its init job
// and during two execute jobs, each from the send to the open page showing
// the edit.
func benchMemory(b *testing.B, e *env) {
	const executes = 2
	addr := freeAddr(b)
	_, port, _ := strings.Cut(addr, ":")
	w := e.startAgentWorker(b, "memory", previewtest.SiteFiles(b), map[string]string{
		"ASTRO_DEV_MODE":   "true",
		"ASTRO_PORT":       strconv.Itoa(freePort(b)),
		"NPM_CACHE_DIR":    e.npmCache,
		"HTTP_ADDR":        addr,
		"PREVIEW_BASE_URL": "http://{preview}.preview.test:" + port + "/",
	})
	s := sampleTree(w.p.pid(), 50*time.Millisecond)
	r := w.run(b, initJob("init", "mem"), 8*time.Minute)
	initPeak := s.stop(b)
	rec, fin := times(b, r.resp)
	cache := "npm cache empty"
	if e.npmCacheWarm.Load() {
		cache = "npm cache warm from row 6"
	}
	e.table.Info("11c", fmt.Sprintf("%s (%s)", Ms(fin.Sub(rec)), cache))
	e.table.Info("11b", initPeak.String())

	// The user's preview, opened from the init's previewUrl as a customer
	// does (its token signs the browser in).
	br := browser.Start(b, browser.MapHost("*.preview.test"))
	br.Open(r.resp.PreviewURL)
	heading := "Welcome to Example Site"
	br.WaitText("#title", heading, time.Minute)
	page := w.page("mem")
	var peak treeSample
	for i := range executes {
		next := fmt.Sprintf("Edited by the agent, job %d", i)
		w.api.SetScript(fakeanthropic.EditFile(page,
			`<h1 id="title">`+heading+`</h1>`, `<h1 id="title">`+next+`</h1>`, "The heading now says "+next+".")...)
		s := sampleTree(w.p.pid(), 50*time.Millisecond)
		w.run(b, execJob(fmt.Sprintf("exec-%d", i), "mem", "Change the heading to "+next), 3*time.Minute)
		br.WaitText("#title", next, time.Minute)
		got := s.stop(b)
		if got.total > peak.total {
			peak = got
		}
		heading = next
	}
	e.table.Check("11a", peak.String(), peak.total < 2<<30)
	b.ReportMetric(float64(peak.total)/(1<<20), "execute-peak-MiB")
}

// freePort returns a loopback TCP port that was free when asked.
func freePort(tb testing.TB) int {
	_, port, _ := strings.Cut(freeAddr(tb), ":")
	n, err := strconv.Atoi(port)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// treeSample is the memory of a process tree at one moment.
type treeSample struct {
	total int64            // summed RSS
	parts map[string]int64 // RSS by part: worker, astro, claude, other
	procs int
}

// String formats the sample with its parts.
func (t treeSample) String() string {
	names := []string{"worker", "astro", "claude", "other"}
	var parts []string
	for _, n := range names {
		if v, ok := t.parts[n]; ok {
			parts = append(parts, fmt.Sprintf("%s %.0f", n, float64(v)/(1<<20)))
		}
	}
	return fmt.Sprintf("%s (%s MiB; %d processes)", MiB(t.total), strings.Join(parts, ", "), t.procs)
}

// sampler samples a process tree's memory until stopped, keeping the peak.
type sampler struct {
	stopc   chan struct{}
	done    chan struct{}
	peak    treeSample
	samples int
	err     error
}

// sampleTree samples the tree under (and including) pid every interval.
func sampleTree(pid int, interval time.Duration) *sampler {
	s := &sampler{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			got, err := treeMemory(pid)
			if err != nil {
				s.err = err
				return
			}
			s.samples++
			if got.total > s.peak.total {
				s.peak = got
			}
			select {
			case <-s.stopc:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the peak.
func (s *sampler) stop(tb testing.TB) treeSample {
	tb.Helper()
	close(s.stopc)
	<-s.done
	if s.err != nil {
		tb.Fatalf("sample memory: %v", s.err)
	}
	if s.samples < 2 {
		tb.Fatalf("only %d memory samples", s.samples)
	}
	return s.peak
}

// treeMemory returns the summed RSS of pid and its descendants, each child
// subtree of pid counted as astro, claude or other by its root's command
// line.
func treeMemory(pid int) (treeSample, error) {
	rss, err := residentBytes(pid)
	if err != nil {
		return treeSample{}, fmt.Errorf("the worker (%d): %w", pid, err)
	}
	t := treeSample{total: rss, parts: map[string]int64{"worker": rss}, procs: 1}
	tree := procfs.Snapshot()
	for _, child := range tree.Children(pid) {
		part := classify(child.PID)
		for _, p := range append([]procfs.Process{child}, tree.Descendants(child.PID)...) {
			rss, err := residentBytes(p.PID)
			if err != nil {
				continue // exited meanwhile
			}
			t.total += rss
			t.parts[part] += rss
			t.procs++
		}
	}
	return t, nil
}

// classify names the part of the worker a child process is.
func classify(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return "other"
	}
	cmd := string(b)
	switch {
	case strings.Contains(cmd, "claude"):
		return "claude"
	case strings.Contains(cmd, "astro"):
		return "astro"
	}
	return "other"
}

// residentBytes returns a process's resident set size, from /proc/PID/statm.
func residentBytes(pid int) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "statm"))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, fmt.Errorf("parse /proc/%d/statm", pid)
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse /proc/%d/statm: %w", pid, err)
	}
	return pages * int64(os.Getpagesize()), nil
}
