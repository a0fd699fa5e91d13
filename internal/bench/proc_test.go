package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/webordinary/claude-code-astro/internal/testkit/logbuf"
	"github.com/webordinary/claude-code-astro/internal/testkit/sandboxtest"
	"github.com/webordinary/claude-code-astro/internal/testkit/sqstest"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/preview/previewtest"
)

// Fake secrets for the worker processes.
const benchAPIKey = "sk-ant-api03-BENCH-KEY-0123456789abcdef"

// workerEnv returns the explicit environment of a worker process against
// the emulator's queues: a temporary HOME and WORKSPACE_PATH, no preview, no
// idle shutdown, JSON logs. Callers add or override entries.
func workerEnv(tb testing.TB, emu *sqstest.Emulator, jobsQ, respQ sqstest.Queue) map[string]string {
	return map[string]string{
		"PATH":                      os.Getenv("PATH"),
		"HOME":                      tb.TempDir(),
		"AWS_ENDPOINT_URL":          emu.URL,
		"AWS_REGION":                "us-east-1",
		"AWS_ACCESS_KEY_ID":         "test",
		"AWS_SECRET_ACCESS_KEY":     "test",
		"AWS_EC2_METADATA_DISABLED": "true",
		"JOB_QUEUE_URL":             jobsQ.URL,
		"RESPONSE_QUEUE_URL":        respQ.URL,
		"WORKSPACE_PATH":            sandboxtest.Root(tb), // tenant uids pass through its parents
		"HTTP_ADDR":                 freeAddr(tb),
		"ASTRO_DEV_MODE":            "false",
		"AUTO_SHUTDOWN_MINUTES":     "0",
		"ANTHROPIC_API_KEY":         benchAPIKey,
		"LOG_FORMAT":                "json",
		"LOG_LEVEL":                 "info",
	}
}

// freeAddr returns 127.0.0.1:PORT with a port that was free when asked.
func freeAddr(tb testing.TB) string {
	return "127.0.0.1:" + strconv.Itoa(previewtest.FreePort(tb))
}

// workerProc is a running worker binary.
type workerProc struct {
	tb      testing.TB
	cmd     *exec.Cmd
	addr    string // HTTP_ADDR
	logs    *logbuf.Buffer
	started time.Time
	done    chan struct{}
}

// startWorker runs `worker run` with exactly vars as its environment, in a
// process group of its own. It is stopped (SIGTERM, then the group killed)
// when the benchmark ends.
func (e *env) startWorker(tb testing.TB, vars map[string]string) *workerProc {
	return e.startWorkerAs(tb, vars, nil)
}

// startWorkerAs is startWorker with the worker run as the uid and gid of as
// (nil: as this process).
func (e *env) startWorkerAs(tb testing.TB, vars map[string]string, as *syscall.Credential) *workerProc {
	tb.Helper()
	cmd := exec.Command(e.workerBin(tb), "run")
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if vars["STATUS_SOCKET"] == "" {
		// A status socket of each worker's own: two workers of one
		// measurement would otherwise share the default one, and the
		// second refuses to start. Its parent is one the worker's uid can
		// write (it makes the socket's 0700 directory there).
		dir := sandboxtest.SearchableTempDir(tb)
		if err := os.Chmod(dir, 0o777); err != nil {
			tb.Fatal(err)
		}
		cmd.Env = append(cmd.Env, "STATUS_SOCKET="+filepath.Join(dir, "status", "status.sock"))
	}
	p := &workerProc{tb: tb, cmd: cmd, addr: vars["HTTP_ADDR"], logs: &logbuf.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: as}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start the worker: %v", err)
	}
	go func() {
		_ = cmd.Wait() // the exit status is in ProcessState
		close(p.done)
	}()
	tb.Cleanup(func() {
		p.stop()
		if tb.Failed() {
			tb.Logf("worker log:\n%s", p.logs.String())
		}
	})
	return p
}

// pid returns the worker's process id.
func (p *workerProc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM and waits for the exit; after 30 s it kills the
// worker's process group.
func (p *workerProc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
}

// waitHealthy polls GET /health every interval until it answers 200 and
// returns when that answer arrived. It fails when the worker exits or the
// timeout passes first.
func (p *workerProc) waitHealthy(interval, timeout time.Duration) time.Time {
	p.tb.Helper()
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	deadline := time.Now().Add(timeout)
	url := "http://" + p.addr + "/health"
	for {
		resp, err := client.Get(url)
		if err == nil {
			at := time.Now()
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return at
			}
		}
		select {
		case <-p.done:
			p.tb.Fatalf("the worker exited (%v) before /health answered 200:\n%s", p.cmd.ProcessState, p.logs.String())
		case <-time.After(interval):
		}
		if time.Now().After(deadline) {
			p.tb.Fatalf("/health did not answer 200 within %s (last error %v):\n%s", timeout, err, p.logs.String())
		}
	}
}

// logLines returns the JSON log lines written after offset bytes of output.
func (p *workerProc) logLines(offset int) []map[string]any {
	s := p.logs.String()
	if offset > len(s) {
		offset = len(s)
	}
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s[offset:]))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// procStatusKB returns a "Field:   123 kB" value of /proc/PID/status in bytes.
func procStatusKB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse %s of %d: %w", field, pid, err)
			}
			return kb << 10, nil
		}
	}
	return 0, nil // kernel threads and zombies have no VmRSS
}

// userHZ is the unit of the CPU times in /proc/PID/stat (USER_HZ, 100 on
// every Linux architecture Go runs this on).
const userHZ = 100

// procStat returns the fields of /proc/PID/stat after the command name
// (which is in parentheses and may hold spaces): fields[0] is the state.
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return strings.Fields(s[i+1:]), nil
}

// cpuTime returns the user plus system CPU time of every thread of pid.
func cpuTime(pid int) (time.Duration, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	// utime and stime are fields 14 and 15 of stat, 11 and 12 after the name.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse CPU times of %d", pid)
	}
	return time.Duration(ut+st) * time.Second / userHZ, nil
}

// received is a response as upstream got it.
type received struct {
	resp jobs.Response
	at   time.Time // when the receive that brought it returned
}

// collector reads the response queue the way upstream does, stamping each
// response with the time it arrived and deleting it.
type collector struct {
	q       sqstest.Queue
	mu      sync.Mutex
	final   map[string]received // by job id
	err     error
	changed chan struct{} // closed and replaced at every change
}

// collect starts readers receivers on q; they stop when the benchmark ends.
func collect(tb testing.TB, q sqstest.Queue, readers int) *collector {
	c := &collector{q: q, final: map[string]received{}, changed: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range readers {
		wg.Go(func() { c.read(ctx) })
	}
	tb.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return c
}

func (c *collector) read(ctx context.Context) {
	for ctx.Err() == nil {
		out, err := c.q.Client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(c.q.URL), MaxNumberOfMessages: 10, WaitTimeSeconds: 20,
		})
		at := time.Now()
		if err != nil {
			if ctx.Err() == nil {
				c.fail(fmt.Errorf("receive responses: %w", err))
			}
			return
		}
		var del []types.DeleteMessageBatchRequestEntry
		var got []received
		for i, m := range out.Messages {
			var r jobs.Response
			if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &r); err != nil {
				c.fail(fmt.Errorf("response is not JSON: %w: %s", err, aws.ToString(m.Body)))
				return
			}
			if r.Status != jobs.StatusProgress {
				got = append(got, received{resp: r, at: at})
			}
			del = append(del, types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
		}
		if len(del) > 0 {
			// Deleted before they are handed over: on a FIFO queue the
			// user's group is blocked while its messages are in flight.
			if _, err := c.q.Client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(c.q.URL), Entries: del}); err != nil {
				if ctx.Err() == nil {
					c.fail(fmt.Errorf("delete responses: %w", err))
				}
				return
			}
		}
		c.mu.Lock()
		for _, r := range got {
			c.final[r.resp.JobID] = r
		}
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	}
}

func (c *collector) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
	close(c.changed)
	c.changed = make(chan struct{})
}

// wait returns the final response to jobID, failing after timeout.
func (c *collector) wait(tb testing.TB, jobID string, timeout time.Duration) received {
	tb.Helper()
	var r received
	c.waitFor(tb, timeout, "the final response to "+jobID, func() bool {
		var ok bool
		r, ok = c.final[jobID]
		return ok
	})
	return r
}

// all waits until n final responses arrived and returns them.
func (c *collector) all(tb testing.TB, n int, timeout time.Duration) []received {
	tb.Helper()
	var out []received
	c.waitFor(tb, timeout, strconv.Itoa(n)+" final responses", func() bool {
		if len(c.final) < n {
			return false
		}
		for _, r := range c.final {
			out = append(out, r)
		}
		return true
	})
	return out
}

// waitFor waits until cond, called with c.mu held, holds.
func (c *collector) waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		c.mu.Lock()
		ok, err, changed, n := cond(), c.err, c.changed, len(c.final)
		c.mu.Unlock()
		switch {
		case ok:
			return
		case err != nil:
			tb.Fatal(err)
		}
		select {
		case <-changed:
		case <-t.C:
			tb.Fatalf("no %s within %s (%d final responses so far)", what, timeout, n)
		}
	}
}

// times returns the response's receivedAt and finishedAt.
func times(tb testing.TB, r jobs.Response) (receivedAt, finishedAt time.Time) {
	tb.Helper()
	rec, err1 := time.Parse(time.RFC3339Nano, r.ReceivedAt)
	fin, err2 := time.Parse(time.RFC3339Nano, r.FinishedAt)
	if err1 != nil || err2 != nil {
		tb.Fatalf("response %s times %q, %q: %v %v", r.JobID, r.ReceivedAt, r.FinishedAt, err1, err2)
	}
	return rec, fin
}

// sendJob puts a job on q as upstream does (group clientId/userId, dedup the
// job id) and returns any error: it is safe to call from any goroutine.
func sendJob(ctx context.Context, q sqstest.Queue, job jobs.Job) error {
	body, err := json.Marshal(job)
	if err != nil {
		return err
	}
	in := &sqs.SendMessageInput{QueueUrl: aws.String(q.URL), MessageBody: aws.String(string(body))}
	if strings.HasSuffix(q.URL, ".fifo") {
		group := job.ClientID + "/" + job.UserID
		if job.Type == jobs.TypeCancel {
			group += jobs.ControlGroupSuffix
		}
		in.MessageGroupId = aws.String(group)
		in.MessageDeduplicationId = aws.String(job.JobID)
	}
	if _, err := q.Client.SendMessage(ctx, in); err != nil {
		return fmt.Errorf("send job %s: %w", job.JobID, err)
	}
	return nil
}
