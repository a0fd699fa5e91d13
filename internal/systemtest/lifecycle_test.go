package systemtest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/preview"
)

func TestIdleStopsItsECSTask(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	cluster, task := h.emu.RunTask(t, queueName(t))
	var metadataCalls int
	meta := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v4/container-1/task" {
			http.NotFound(w, r)
			return
		}
		metadataCalls++
		json.NewEncoder(w).Encode(map[string]any{"Cluster": cluster, "TaskARN": task, "Family": "worker", "DesiredStatus": "RUNNING"})
	}))
	t.Cleanup(meta.Close)

	p := h.start(map[string]string{"AUTO_SHUTDOWN_MINUTES": "0.05", "ECS_CONTAINER_METADATA_URI_V4": meta.URL + "/v4/container-1"})
	_, body := p.health()
	if body["idleShutdownAt"] == nil {
		t.Errorf("/health has no idleShutdownAt while idle: %v", body)
	}
	if code := p.wait(60 * time.Second); code != 0 {
		t.Errorf("exit code %d after the idle stop", code)
	}
	status, reason := h.emu.DescribeTask(t, cluster, task)
	if status != "STOPPED" || reason != "idle for 0.05 minutes" {
		t.Errorf("task %s, reason %q; want STOPPED, \"idle for 0.05 minutes\"", status, reason)
	}
	if metadataCalls == 0 {
		t.Error("the task metadata endpoint was never asked")
	}
}

func TestIdleExitsEvenWhenStopTaskFails(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	meta := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"Cluster": "arn:aws:ecs:us-east-1:000000000000:cluster/no-such-cluster",
			"TaskARN": "arn:aws:ecs:us-east-1:000000000000:task/no-such-cluster/0123456789abcdef",
		})
	}))
	t.Cleanup(meta.Close)
	p := h.start(map[string]string{"AUTO_SHUTDOWN_MINUTES": "0.05", "ECS_CONTAINER_METADATA_URI_V4": meta.URL + "/v4/c"})
	if code := p.wait(60 * time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
	if !strings.Contains(p.logs.String(), "cannot stop the ECS task; exiting anyway") {
		t.Error("the failed StopTask was not logged")
	}
}

func TestIdleOffECSExits(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	p := h.start(map[string]string{"AUTO_SHUTDOWN_MINUTES": "0.05"})
	if code := p.wait(60 * time.Second); code != 0 {
		t.Errorf("exit code %d after idling off ECS", code)
	}
	if !strings.Contains(p.logs.String(), "idle: shutting down") {
		t.Error("the log does not say why it stopped")
	}
}

func TestActivityPushesIdleShutdownBack(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	// The preview is on but serves nothing yet: its authenticated requests
	// still count, the others do not.
	p := h.start(map[string]string{"AUTO_SHUTDOWN_MINUTES": "0.1", "ASTRO_DEV_MODE": "true", "ASTRO_PORT": "1",
		"PREVIEW_SECRET": testPreviewSecret, "PREVIEW_BASE_URL": "http://{preview}." + previewDomain + "/"})
	deadline := func() time.Time {
		_, body := p.health()
		s, _ := body["idleShutdownAt"].(string)
		d, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatalf("idleShutdownAt %v: %v", body["idleShutdownAt"], err)
		}
		return d
	}
	first := deadline()
	viewer := func(cookie string) int {
		req, err := http.NewRequest(http.MethodGet, "http://"+p.addr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = preview.ID("acme", "gus") + "." + previewDomain
		if cookie != "" {
			req.AddCookie(&http.Cookie{Name: preview.CookieName, Value: cookie})
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := viewer(""); code != http.StatusUnauthorized {
		t.Errorf("preview without a token: %d, want 401", code)
	}
	if second := deadline(); !second.Equal(first) {
		t.Errorf("a refused preview request moved the deadline: %s then %s", first, second)
	}
	token := preview.NewTokens([]byte(testPreviewSecret), time.Hour).Issue(preview.ID("acme", "gus"))
	if code := viewer(token); code != http.StatusNotFound {
		t.Errorf("preview of a user with no workspace yet: %d, want 404", code)
	}
	if second := deadline(); !second.After(first) {
		t.Errorf("an authenticated preview request did not push the deadline back: %s then %s", first, second)
	}

	// A job during the countdown: the worker is still there for it and
	// answers it, and the countdown starts again after it.
	h.send(initJob("i1", "gus", "t1"))
	r := h.final("i1", 60*time.Second)
	if r.Status != jobs.StatusSucceeded {
		t.Fatalf("init: %+v", r.Error)
	}
	finished, _ := time.Parse(time.RFC3339Nano, r.FinishedAt)
	if code := p.wait(60 * time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
	if stoppedAfter := time.Since(finished); stoppedAfter < 5*time.Second {
		t.Errorf("stopped %s after the job finished, want the full 6s idle time", stoppedAfter)
	}
}

func TestSecretsFromSecretsManager(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	name := queueName(t)
	h.emu.CreateSecret(t, name+"/anthropic", testAPIKey)
	h.emu.CreateSecret(t, name+"/github", `{"token":"`+testToken+`","user":"bot"}`)
	h.start(map[string]string{
		"ANTHROPIC_API_KEY": "", "ANTHROPIC_API_KEY_SECRET_ID": name + "/anthropic",
		"GITHUB_TOKEN_SECRET_ID": name + "/github#token",
	})
	h.send(initJob("i1", "hal", "t1"))
	h.final("i1", 60*time.Second)
	h.api.SetScript(editScript(h, "hal")...)
	h.send(execJob("e1", "hal", "t1", "Change the heading"))
	if r := h.final("e1", 60*time.Second); r.Status != jobs.StatusSucceeded {
		t.Fatalf("execute: %+v", r.Error)
	}
	last, _ := h.api.LastMessageRequest()
	if got := last.Header.Get("x-api-key"); got != testAPIKey {
		t.Errorf("the agent called the API with key %q, want the secret's value", got)
	}

	// A missing secret, or a JSON key that is not there: a clear start-up error.
	tests := []struct{ variable, ref string }{
		{"ANTHROPIC_API_KEY_SECRET_ID", name + "/absent"},
		{"GITHUB_TOKEN_SECRET_ID", name + "/github#nokey"},
	}
	for _, tt := range tests {
		cmd := exec.Command(workerBin, "run")
		for k, v := range h.env {
			if k != "ANTHROPIC_API_KEY" {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
		}
		cmd.Env = append(cmd.Env, tt.variable+"="+tt.ref, "HTTP_ADDR=127.0.0.1:0")
		if tt.variable == "GITHUB_TOKEN_SECRET_ID" {
			cmd.Env = append(cmd.Env, "ANTHROPIC_API_KEY_SECRET_ID="+name+"/anthropic")
		}
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("started with %s=%s", tt.variable, tt.ref)
			continue
		}
		// Log records (JSON) may come first, such as the CLI's copy when the
		// checkout is out of tenants' reach; the error is one line.
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if !strings.HasPrefix(l, "{") {
				lines = append(lines, l)
			}
		}
		text := strings.Join(lines, "\n")
		if len(lines) != 1 || !strings.Contains(text, tt.variable) {
			t.Errorf("want one line naming %s, got:\n%s", tt.variable, text)
		}
		if strings.Contains(text, testToken) || strings.Contains(text, testAPIKey) {
			t.Errorf("the error shows a secret: %s", text)
		}
	}
}

// editScript returns an agent script that edits the test site's heading.
func editScript(h *harness, user string) []fakeStep {
	return editHeading(h.projectDir(user) + "/src/pages/index.astro")
}
