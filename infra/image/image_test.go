//go:build imagetest

package image_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/webordinary/claude-code-astro/internal/testkit/fakeanthropic"
	"github.com/webordinary/claude-code-astro/internal/testkit/imagekit"
	"github.com/webordinary/claude-code-astro/internal/testkit/sqstest"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/preview/previewtest"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// Secrets of the test, to be found nowhere a tenant can look.
const (
	apiKey   = "sk-ant-api03-IMAGETEST-KEY-0123456789abcdef"
	gitToken = "ghp_IMAGETESTTOKEN0123456789abcdefABCD"
)

// Tag is the image the test builds and runs.
const Tag = imagekit.WorkerTag

// probeSite is a repository whose install script reports, from inside the
// container, what its tenant can reach.
func probeSite() map[string]string {
	return map[string]string{
		"package.json": `{"name":"probe","version":"1.0.0","private":true,"scripts":{"postinstall":"node probe.cjs"}}` + "\n",
		"probe.cjs": `const fs = require("fs");
function tryRead(p) { try { fs.readFileSync(p); return "READ"; } catch (e) { return e.code; } }
let worker = null;
for (const d of fs.readdirSync("/proc")) {
  if (!/^\d+$/.test(d)) continue;
  try { if (fs.readFileSync("/proc/" + d + "/cmdline", "utf8").startsWith("/usr/local/bin/worker\0run")) worker = d; } catch (e) {}
}
const out = {
  uid: process.getuid(),
  secretsInEnv: Object.keys(process.env).filter(k => /ANTHROPIC_API_KEY|GITHUB_TOKEN|AWS_SECRET|PREVIEW_SECRET/.test(k)),
  otherTenant: tryRead("/workspace/acme/alice/project/src/pages/index.astro"),
  workerPid: worker,
  workerEnviron: worker ? tryRead("/proc/" + worker + "/environ") : "NOT FOUND",
  initEnviron: tryRead("/proc/1/environ"),
  workspaceRoot: (() => { try { fs.readdirSync("/workspace"); return "LISTED"; } catch (e) { return e.code; } })(),
};
fs.writeFileSync("probe.json", JSON.stringify(out));
`,
		"index.html": "<h1>Probe</h1>\n",
	}
}

// seededNpmCache returns an npm cache holding the example site's packages,
// readable by every uid and writable by none but root. It is filled by the
// image's own npm, in a throwaway container: as root, which trusts what the
// machine trusts (the tenants need not: they install from the cache).
func seededNpmCache(t *testing.T, k *imagekit.Kit) string {
	t.Helper()
	scratch := workspacetest.Reachable(t)
	site := filepath.Join(scratch, "site")
	workspacetest.WriteFiles(t, site, previewtest.SiteFiles(t))
	cache := filepath.Join(scratch, "npm-cache")
	if err := os.Mkdir(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	args := append(imagekit.RunArgs(""), "--rm", "--entrypoint", "/bin/sh", "-v", site+":/site", "-v", cache+":/cache", Tag,
		"-c", "cd /site && npm ci --ignore-scripts --no-audit --no-fund --cache /cache")
	if out, err := k.Podman(context.Background(), args...); err != nil {
		t.Fatalf("seed the npm cache: %v\n%s", err, out)
	}
	if out, err := exec.Command("chmod", "-R", "a+rX,go-w", cache).CombinedOutput(); err != nil {
		t.Fatalf("chmod the npm cache: %v\n%s", err, out)
	}
	return cache
}

// container is the worker running in the image.
type container struct {
	k    *imagekit.Kit
	name string
	addr string // HTTP_ADDR on the host's loopback
}

func (c *container) logs(t *testing.T) string {
	cmd := exec.Command("podman", "logs", c.name)
	out, err := cmd.CombinedOutput() // the worker logs to stderr
	if err != nil {
		t.Logf("podman logs: %v", err)
	}
	return string(out)
}

// health returns GET /health's status, or 0 when it does not answer.
func (c *container) health() int {
	resp, err := http.Get("http://" + c.addr + "/health")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestImage builds the image and runs the worker in it, as Docker would
// run it: its own user (root, which confines itself), Docker's default
// capabilities only, tini as PID 1, /workspace on a volume. It answers
// jobs against the emulator, pushes through its git gateway, serves the
// preview with a token, keeps tenants apart inside the container, and
// stops cleanly.
func TestImage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 35*time.Minute)
	defer cancel()
	k := imagekit.New(t)
	k.EnsureBases(ctx)
	built := k.BuildImage(ctx, Tag)
	size, layers := k.Size(ctx, Tag)
	var biggest []string
	for _, l := range layers[:min(4, len(layers))] {
		biggest = append(biggest, l.String())
	}
	t.Logf("image %s: %.0f MiB, built in %s; largest layers:\n  %s", Tag, float64(size)/(1<<20), built.Round(time.Second), strings.Join(biggest, "\n  "))
	if size > 1<<30 {
		t.Errorf("the image is %.0f MiB, over the 1 GB goal", float64(size)/(1<<20))
	}

	// The world, on the host's loopback.
	emu := sqstest.Start(t)
	// A visibility timeout far past the test: a message that comes back
	// during it was released by the worker, not timed out.
	jobsQ := emu.CreateQueue(t, "image-jobs", sqstest.QueueOptions{FIFO: true, VisibilityTimeout: 10 * time.Minute})
	respQ := emu.CreateQueue(t, "image-responses", sqstest.QueueOptions{FIFO: true})
	responses := sqstest.NewResponses(respQ)
	g := workspacetest.NewGit(t)
	site := workspacetest.NewRemote(t, g, previewtest.SiteFiles(t))
	siteGit := workspacetest.ServeHTTP(t, g, filepath.Dir(site.Dir), gitToken)
	probe := workspacetest.NewRemote(t, g, probeSite())
	probeGit := workspacetest.ServeHTTP(t, g, filepath.Dir(probe.Dir), gitToken)
	api := fakeanthropic.New(t)
	api.RequireKey(apiKey)
	httpPort := previewtest.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(httpPort)
	c := &container{k: k, name: fmt.Sprintf("claude-code-astro-image-test-%d", time.Now().UnixNano()), addr: addr}

	env := map[string]string{
		"JOB_QUEUE_URL": jobsQ.URL, "RESPONSE_QUEUE_URL": respQ.URL,
		"AWS_ENDPOINT_URL": emu.URL, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
		"ANTHROPIC_API_KEY": apiKey, "ANTHROPIC_BASE_URL": api.URL,
		"GITHUB_TOKEN": gitToken, "GIT_TOKEN_HOSTS": "127.0.0.1",
		"REPO_URL":  siteGit.URL + "/remote.git",
		"HTTP_ADDR": addr, "ASTRO_PORT": strconv.Itoa(previewtest.FreePort(t)),
		"PREVIEW_BASE_URL": "http://{preview}.preview.test:" + strconv.Itoa(httpPort) + "/", "PREVIEW_SECRET": "image test preview secret",
		"AUTO_SHUTDOWN_MINUTES": "0",
		"NPM_CACHE_DIR":         "/npm-seed",
	}
	args := imagekit.RunArgs(c.name)
	for k, v := range env {
		args = append(args, "-e", k+"="+v)
	}
	volume := c.name + "-workspace"
	k.MustPodman(ctx, "volume", "create", volume)
	// The tenants' npm installs start from a cache of the example site's
	// packages, filled on the host (the registry is behind TLS the
	// container's tenants need not trust).
	args = append(args, "--stop-timeout", "30", "-v", volume+":/workspace", "-v", seededNpmCache(t, k)+":/npm-seed:ro", Tag)
	started := time.Now()
	k.MustPodman(ctx, args...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("container logs:\n%s", c.logs(t))
		}
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		_, _ = k.Podman(cctx, "rm", "-f", "-t", "0", c.name)
		_, _ = k.Podman(cctx, "volume", "rm", "-f", volume)
	})
	wait.For(t, 60*time.Second, "/health to answer 200", func() bool { return c.health() == http.StatusOK })
	t.Logf("container start (podman run) to healthy: %s", time.Since(started).Round(time.Millisecond))
	if out, err := k.Podman(ctx, "healthcheck", "run", c.name); err != nil {
		t.Errorf("podman healthcheck run: %v %s", err, out)
	}
	if caps := k.MustPodman(ctx, "exec", c.name, "grep", "CapEff", "/proc/1/status"); !strings.Contains(caps, "00000000a80425fb") {
		t.Errorf("the container's capabilities are not Docker's default set: %s", caps)
	}

	// Jobs: alice's init and an execute, pushed through the worker's git gateway.
	send := func(j jobs.Job) jobs.Response {
		t.Helper()
		jobsQ.SendJob(t, j)
		for deadline := time.Now().Add(5 * time.Minute); time.Now().Before(deadline); {
			responses.Poll(t, time.Second)
			for _, r := range responses.Final() {
				if r.JobID == j.JobID {
					return r
				}
			}
		}
		t.Fatalf("no answer to %s", j.JobID)
		return jobs.Response{}
	}
	initResp := send(jobs.Job{Type: jobs.TypeInit, JobID: "init-alice", ClientID: "acme", UserID: "alice", ThreadID: "t1"})
	if initResp.Status != jobs.StatusSucceeded {
		t.Fatalf("init: %+v", initResp.Error)
	}
	page := "/workspace/acme/alice/project/src/pages/index.astro"
	api.SetScript(fakeanthropic.EditFile(page, `<h1 id="title">Welcome to Example Site</h1>`, `<h1 id="title">Edited in the container</h1>`, "Done.")...)
	exec := send(jobs.Job{Type: jobs.TypeExecute, JobID: "exec-alice", ClientID: "acme", UserID: "alice", ThreadID: "t1",
		Instruction: "Change the heading"})
	if exec.Status != jobs.StatusSucceeded || exec.Commit == "" || exec.Pushed == nil || !*exec.Pushed {
		t.Fatalf("execute: %+v %+v", exec, exec.Error)
	}
	if head := g.Run(site.Dir, "rev-parse", "thread-t1"); head != exec.Commit {
		t.Errorf("the remote's thread-t1 is %s, want the job's commit %s", head, exec.Commit)
	}

	// The preview, with the answer's token, shows the edit.
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}}
	var pageBody string
	wait.For(t, 90*time.Second, "the preview to show the edit", func() bool {
		resp, err := client.Get(exec.PreviewURL)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		pageBody = string(b)
		return resp.StatusCode == http.StatusOK && strings.Contains(pageBody, "Edited in the container")
	})
	if resp, err := http.Get("http://" + addr + "/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("the preview without a token: %d, want 401", resp.StatusCode)
		}
	}

	// The sandbox inside the container: bob's repository probes from its
	// install script, under his own uid.
	bobInit := send(jobs.Job{Type: jobs.TypeInit, JobID: "init-bob", ClientID: "acme", UserID: "bob", ThreadID: "t1",
		RepoURL: probeGit.URL + "/remote.git"})
	if bobInit.Status != jobs.StatusSucceeded {
		t.Fatalf("bob's init: %+v %+v", bobInit, bobInit.Error)
	}
	var got struct {
		UID                                                               int
		SecretsInEnv                                                      []string
		OtherTenant, WorkerPid, WorkerEnviron, InitEnviron, WorkspaceRoot string
	}
	raw := k.MustPodman(ctx, "exec", c.name, "cat", "/workspace/acme/bob/project/probe.json")
	if err := json.Unmarshal([]byte(raw), &got); err != nil {
		t.Fatalf("probe.json %q: %v", raw, err)
	}
	t.Logf("bob's install script saw: %s", raw)
	if got.UID < 100000 || len(got.SecretsInEnv) > 0 || got.OtherTenant != "EACCES" || got.WorkerPid == "" ||
		got.WorkerEnviron != "EACCES" || got.InitEnviron != "EACCES" || got.WorkspaceRoot != "EACCES" {
		t.Errorf("a tenant inside the container reached too far: %+v", got)
	}
	top := k.MustPodman(ctx, "top", c.name, "user", "pid", "args")
	astro := 0
	for _, line := range strings.Split(top, "\n") {
		// The dev server is node running the worker's launcher, which
		// starts Astro in process (preview/devserver.mjs).
		if strings.Contains(line, "devserver.mjs") || strings.Contains(line, "astro") {
			astro++
			if f := strings.Fields(line); len(f) > 0 && (f[0] == "root" || f[0] == "0") {
				t.Errorf("a dev server runs as root in the container: %s", line)
			}
		}
	}
	if astro == 0 {
		t.Errorf("no dev server in the container's processes:\n%s", top)
	}
	if logs := c.logs(t); strings.Contains(logs, apiKey) || strings.Contains(logs, gitToken) {
		t.Error("the container's logs show a secret")
	}

	// Stop while a job runs: exit 0 within the stop timeout, the job's
	// message back on the queue for another worker.
	api.SetScript(fakeanthropic.Hang())
	jobsQ.SendJob(t, jobs.Job{Type: jobs.TypeExecute, JobID: "exec-long", ClientID: "acme", UserID: "alice", ThreadID: "t1", Instruction: "Think long"})
	wait.For(t, 2*time.Minute, "the long job to reach the API", func() bool {
		for _, r := range api.MessageRequests() {
			if r.Contains("Think long") {
				return true
			}
		}
		return false
	})
	stopStart := time.Now()
	k.MustPodman(ctx, "stop", "-t", "30", c.name)
	stopped := time.Since(stopStart)
	code := strings.TrimSpace(k.MustPodman(ctx, "inspect", "--format", "{{.State.ExitCode}}", c.name))
	t.Logf("podman stop took %s, exit code %s", stopped.Round(time.Millisecond), code)
	if code != "0" || stopped > 30*time.Second {
		t.Errorf("podman stop: exit code %s after %s, want 0 within the 30 s stop timeout", code, stopped)
	}
	// Another worker can take it (only a release makes it receivable
	// before the 10 minutes' visibility timeout). The worker makes it
	// visible once its last long poll has surely ended (up to the 20 s
	// poll and a second after that poll began): a poll it gave up may
	// still be served, and would hide the message.
	received := 0
	if !wait.Until(45*time.Second, func() bool {
		out, err := jobsQ.Client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(jobsQ.URL), WaitTimeSeconds: 5, MaxNumberOfMessages: 10})
		if err != nil {
			t.Fatal(err)
		}
		received += len(out.Messages)
		for _, m := range out.Messages {
			if strings.Contains(aws.ToString(m.Body), `"exec-long"`) {
				return true
			}
		}
		return false
	}) {
		t.Errorf("the running job's message was not released on stop (received %d other messages in 45 s)", received)
	}
	t.Logf("the running job's message came back %s after podman stop returned", (time.Since(stopStart) - stopped).Round(100*time.Millisecond))
}
