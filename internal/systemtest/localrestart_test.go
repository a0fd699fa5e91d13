package systemtest

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/logbuf"
	"github.com/webordinary/claude-code-astro/internal/testkit/sandboxtest"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/preview/previewtest"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// TestLocalModeSurvivesARestart: `worker local` stopped with Ctrl-C while a
// `send -wait` waits, and started again, answers that send (the job's
// message and its answer are kept in the state directory); a preview link
// issued before the restart still opens the preview (the preview key is
// kept too).
func TestLocalModeSurvivesARestart(t *testing.T) {
	t.Parallel()
	dir := workspacetest.Reachable(t)
	httpAddr := "127.0.0.1:" + strconv.Itoa(previewtest.FreePort(t))
	awsAddr := "127.0.0.1:" + strconv.Itoa(previewtest.FreePort(t)) // the same at both starts, as the default is
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "NPM_CACHE_DIR=" + seededNpmCache(t),
		"ASTRO_PORT=" + strconv.Itoa(previewtest.FreePort(t)), "LOG_FORMAT=json",
		"TENANT_UIDS=" + uidRange(sandboxtest.ClaimUIDs(t)),
	}
	var logs logbuf.Buffer
	stops := 0
	start := func() (stop func()) {
		local := exec.Command(workerBin, "local", "-dir", dir, "-http", httpAddr, "-aws-addr", awsAddr)
		local.Dir, local.Env = repoRoot, env
		var out logbuf.Buffer
		local.Stdout, local.Stderr = &out, &logs
		local.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := local.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- local.Wait() }()
		var once sync.Once
		stop = func() {
			once.Do(func() {
				_ = local.Process.Signal(syscall.SIGINT)
				wait.For(t, 10*time.Second, "the worker to begin its stop", func() bool {
					return strings.Count(logs.String(), `"shutting down"`) > stops
				})
				stops++
				// Ctrl-C twice: the running job is stopped now and released.
				_ = local.Process.Signal(syscall.SIGINT)
				select {
				case <-done:
				case <-time.After(40 * time.Second):
					_ = syscall.Kill(-local.Process.Pid, syscall.SIGKILL)
					t.Error("worker local did not stop after Ctrl-C twice")
				}
			})
		}
		t.Cleanup(stop)
		wait.For(t, 60*time.Second, "worker local to say it is running", func() bool {
			return strings.Contains(out.String(), "worker local is running")
		})
		return stop
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker local logged:\n%s", logs.String())
		}
	})
	send := func(args ...string) *exec.Cmd {
		cmd := exec.Command(workerBin, append([]string{"send", "-local-state", filepath.Join(dir, "local.json")}, args...)...)
		cmd.Dir, cmd.Env = repoRoot, []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
		return cmd
	}

	stop := start()
	out, err := send("-type", "init", "-client", "acme", "-user", "alice", "-thread", "t1", "-job-id", "restart-1", "-wait", "3m").Output()
	var before jobs.Response
	if err != nil || json.Unmarshal(out, &before) != nil || before.PreviewURL == "" {
		t.Fatalf("init: %v\n%s", err, out)
	}

	// An execute, waited for; the worker is stopped with Ctrl-C twice while
	// the agent runs (the job is released, not answered) and starts again:
	// the job runs again and the send gets its answer.
	waiting := send("-type", "execute", "-client", "acme", "-user", "alice", "-thread", "t1", "-job-id", "restart-2",
		"-instruction", "Hello after a restart", "-wait", "4m")
	var stdout, stderr bytes.Buffer
	waiting.Stdout, waiting.Stderr = &stdout, &stderr
	if err := waiting.Start(); err != nil {
		t.Fatal(err)
	}
	sent := make(chan error, 1)
	go func() { sent <- waiting.Wait() }()
	wait.For(t, 60*time.Second, "the execute's agent to start", func() bool {
		return strings.Contains(logs.String(), `"agent started"`)
	})
	stop()
	start()
	select {
	case err := <-sent:
		var r jobs.Response
		if err != nil || json.Unmarshal(stdout.Bytes(), &r) != nil || r.Status != jobs.StatusSucceeded || r.JobID != "restart-2" {
			t.Fatalf("send -wait across the restart: %v\n%s\n%s", err, stdout.String(), stderr.String())
		}
	case <-time.After(4 * time.Minute):
		t.Fatal("send -wait did not end")
	}
	// The link of the first run opens the preview of the second.
	if !strings.Contains(logs.String(), "messages kept from the last run are back on the queues") {
		t.Error("worker local did not say it restored the queues")
	}
	if page := openLocalPreview(t, httpAddr, before.PreviewURL); !strings.Contains(page, "Hello after a restart") {
		t.Errorf("the preview through the link issued before the restart shows:\n%.500s", page)
	}
}
