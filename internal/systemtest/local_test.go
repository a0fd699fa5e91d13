package systemtest

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/logbuf"
	"github.com/webordinary/claude-code-astro/internal/testkit/sandboxtest"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/preview"
	"github.com/webordinary/claude-code-astro/preview/previewtest"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// TestLocalModeRunsJobsFromSend runs the README's "run it" command, `worker
// local`, from the repository root and sends it an init job with `worker
// send`, as the README shows.
func TestLocalModeRunsJobsFromSend(t *testing.T) {
	t.Parallel()
	dir := workspacetest.Reachable(t) // tenant uids pass through it to their workspaces
	httpAddr := "127.0.0.1:" + strconv.Itoa(previewtest.FreePort(t))
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "NPM_CACHE_DIR=" + seededNpmCache(t), "WORKER_CACHE_DIR=" + cliCache,
		"ASTRO_PORT=" + strconv.Itoa(previewtest.FreePort(t)), "LOG_FORMAT=json",
		"TENANT_UIDS=" + uidRange(sandboxtest.ClaimUIDs(t)),
		"STATUS_SOCKET=" + filepath.Join(t.TempDir(), "status", "status.sock"),
	}
	local := exec.Command(workerBin, "local", "-dir", dir, "-http", httpAddr, "-aws-addr", "127.0.0.1:0")
	local.Dir = repoRoot
	local.Env = env
	out, _, done := startLocal(t, local, 25*time.Second)
	wait.For(t, 60*time.Second, "worker local to say it is running", func() bool {
		return strings.Contains(out.String(), "worker local is running")
	})
	for _, want := range []string{"job queue", "response queue", "preview", "worker send"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the welcome does not mention %q:\n%s", want, out.String())
		}
	}

	send := exec.Command(workerBin, "send", "-local-state", filepath.Join(dir, "local.json"),
		"-type", "init", "-client", "acme", "-user", "alice", "-thread", "t1", "-job-id", "local-1", "-wait", "3m")
	send.Dir = repoRoot
	send.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	stdout, err := send.Output()
	if err != nil {
		t.Fatalf("worker send: %v\n%s", err, stdout)
	}
	var r jobs.Response
	if err := json.Unmarshal(stdout, &r); err != nil {
		t.Fatalf("worker send printed %q: %v", stdout, err)
	}
	if r.JobID != "local-1" || r.Status != jobs.StatusSucceeded || r.Branch != "thread-t1" {
		t.Errorf("response %+v %+v", r, r.Error)
	}
	// Alice's preview is her own host under localhost, signed in by its link.
	_, port, _ := strings.Cut(httpAddr, ":")
	wantPrefix := "http://" + preview.ID("acme", "alice") + ".localhost:" + port + "/?" + preview.TokenParam + "="
	if !strings.HasPrefix(r.PreviewURL, wantPrefix) {
		t.Fatalf("previewUrl %q, want %s...", r.PreviewURL, wantPrefix)
	}
	page := openLocalPreview(t, httpAddr, r.PreviewURL)
	if !strings.Contains(page, "Welcome to Example Site") {
		t.Errorf("alice's preview shows:\n%.500s", page)
	}
	for _, want := range []string{"DEMO AGENT", "-demo-agent=false"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("without ANTHROPIC_API_KEY the welcome does not say %q:\n%s", want, out.String())
		}
	}

	// Without a key the demo agent answers: the whole loop, an edit on the
	// page included, works on a fresh machine.
	send = exec.Command(workerBin, "send", "-local-state", filepath.Join(dir, "local.json"),
		"-type", "execute", "-client", "acme", "-user", "alice", "-thread", "t1", "-job-id", "local-2",
		"-instruction", "Hello from the demo agent", "-wait", "3m")
	send.Dir = repoRoot
	send.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	if stdout, err = send.Output(); err != nil {
		t.Fatalf("worker send execute: %v\n%s", err, stdout)
	}
	if err := json.Unmarshal(stdout, &r); err != nil || r.Status != jobs.StatusSucceeded || r.Commit == "" ||
		r.Claude == nil || !strings.Contains(r.Claude.Result, "demo agent") {
		t.Fatalf("execute with the demo agent: %s", stdout)
	}
	if page := openLocalPreview(t, httpAddr, r.PreviewURL); !strings.Contains(page, "Hello from the demo agent") {
		t.Errorf("the preview does not show the demo agent's edit:\n%.500s", page)
	}
	// The example site was cloned into the local workspace.
	if _, err := os.Stat(filepath.Join(dir, "workspace", "acme", "alice", "project", "src", "pages", "index.astro")); err != nil {
		t.Errorf("the example site is not in the workspace: %v", err)
	}
	_ = local.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("worker local exited with %v after SIGTERM", err)
		}
	case <-time.After(25 * time.Second):
		t.Error("worker local did not stop within 25s of SIGTERM")
	}
	if _, err := os.Stat(filepath.Join(dir, "local.json")); err == nil {
		t.Error("the state file outlived worker local")
	}
}

// openLocalPreview follows a previewUrl under *.localhost as a browser does
// (the name resolves to this machine; the cookie the link sets signs the
// next requests in) until the dev server serves the page, and returns it.
func openLocalPreview(t *testing.T, httpAddr, previewURL string) string {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	dialer := &net.Dialer{}
	client := &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, httpAddr)
		},
	}}
	var page string
	wait.For(t, 90*time.Second, "the preview to serve the page", func() bool {
		resp, err := client.Get(previewURL)
		if err != nil {
			t.Logf("GET the preview: %v", err)
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		page = string(b)
		if resp.Request.URL.Query().Has(preview.TokenParam) {
			t.Errorf("the preview did not redirect away from its token: %s", resp.Request.URL)
		}
		return resp.StatusCode == http.StatusOK
	})
	return page
}

// startLocal starts `worker local` (cmd, its arguments and environment
// set) in a process group of its own, and stops it when the test ends:
// SIGTERM, then SIGKILL of the group after stopWait. Its output and logs
// are printed when the test failed. done receives its exit.
func startLocal(t *testing.T, local *exec.Cmd, stopWait time.Duration) (out, logs *logbuf.Buffer, done <-chan error) {
	t.Helper()
	out, logs = &logbuf.Buffer{}, &logbuf.Buffer{}
	local.Stdout, local.Stderr = out, logs
	local.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := local.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- local.Wait() }()
	t.Cleanup(func() {
		_ = local.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(stopWait):
			_ = syscall.Kill(-local.Process.Pid, syscall.SIGKILL)
		}
		if t.Failed() {
			t.Logf("worker local printed:\n%s\nlogs:\n%s", out.String(), logs.String())
		}
	})
	return out, logs, exited
}
