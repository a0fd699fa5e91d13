package systemtest

import (
	"encoding/json"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/fakeanthropic"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// TestSecretsNeverLeak runs init and execute with a recognisable key and
// token against a remote that demands the token, then looks for them in the
// logs, every response, the workspace (.git included), the remote, and the
// environment of every process the worker started.
func TestSecretsNeverLeak(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	gitRoot := filepath.Dir(h.remote.Dir)
	srv := workspacetest.ServeHTTP(t, h.git, gitRoot, testToken)
	repoURL := srv.URL + "/" + filepath.Base(h.remote.Dir)
	const awsSecret, awsURI = "SYSTEMTEST-aws-secret-key-0123456789", "/v2/credentials/SYSTEMTEST-credentials-id"
	p := h.start(map[string]string{"GITHUB_TOKEN": testToken, "REPO_URL": repoURL, "JOB_TIMEOUT": "20s",
		"GIT_TOKEN_HOSTS": strings.TrimPrefix(srv.URL, "http://"), "AWS_SECRET_ACCESS_KEY": awsSecret,
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": awsURI})
	h.api.RequireKey(testAPIKey) // the real key, or 401: what the API does

	h.send(initJob("i1", "ivy", "t1"))
	if r := h.final("i1", 60*time.Second); r.Status != jobs.StatusSucceeded {
		t.Fatalf("init over authenticated http: %+v", r.Error)
	}
	h.api.SetScript(editHeading(h.projectDir("ivy") + "/src/pages/index.astro")...)
	before := h.api.Reported()
	h.send(execJob("e1", "ivy", "t1", "Change the heading"))
	r := h.final("e1", 60*time.Second)
	if r.Status != jobs.StatusSucceeded || r.Pushed == nil || !*r.Pushed {
		t.Fatalf("execute: %+v %+v (%s)", r, r.Error, r.PushError)
	}
	// The usage in the answer is what the API reported for the job, as the
	// gateway counted it.
	after := h.api.Reported()
	if u := r.Claude.Usage; u == nil || u.InputTokens != after.InputTokens-before.InputTokens || u.OutputTokens != after.OutputTokens-before.OutputTokens ||
		u.CacheReadTokens != after.CacheReadTokens-before.CacheReadTokens || u.CacheWriteTokens != after.CacheWriteTokens-before.CacheWriteTokens {
		t.Errorf("usage answered %+v, the API reported %+v then %+v", r.Claude.Usage, before, after)
	}
	for _, req := range h.api.Requests() {
		if got := req.Header.Get("X-Api-Key"); got != testAPIKey {
			t.Errorf("the API got %s %s with key %q, not the real one through the gateway", req.Method, req.Path, got)
		}
	}
	if len(srv.Authorizations()) == 0 {
		t.Fatal("the git server saw no credentials: the token was not used")
	}

	// While an agent runs, read the environment of every process below the worker.
	h.api.SetScript(fakeanthropic.Hang())
	h.send(execJob("e2", "ivy", "t1", "Take your time"))
	wait.For(t, 30*time.Second, "the agent to call the API", func() bool {
		for _, req := range h.api.MessageRequests() {
			for _, m := range req.Messages {
				if m.IsPrompt() && strings.Contains(m.Text(), "Take your time") {
					return true
				}
			}
		}
		return false
	})
	var jobKey, gatewayURL string
	for _, pid := range descendants(p.cmd.Process.Pid) {
		env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		name := strings.ReplaceAll(string(cmdline), "\x00", " ")
		for secret, what := range map[string]string{testToken: "the git token", testAPIKey: "the API key", awsSecret: "the AWS secret", awsURI: "the ECS credentials URI"} {
			if strings.Contains(string(env), secret) {
				t.Errorf("process %d (%s) has %s in its environment", pid, name, what)
			}
		}
		for _, v := range strings.Split(string(env), "\x00") {
			if strings.HasPrefix(v, "AWS_") || strings.HasPrefix(v, "ECS_") || strings.HasPrefix(v, "GITHUB_TOKEN") {
				t.Errorf("process %d (%s) has %s", pid, name, strings.SplitN(v, "=", 2)[0])
			}
			if k, ok := strings.CutPrefix(v, "ANTHROPIC_API_KEY="); ok {
				jobKey = k // the CLI's: its job's own credential
			}
			if u, ok := strings.CutPrefix(v, "ANTHROPIC_BASE_URL="); ok {
				gatewayURL = u
			}
		}
	}
	if jobKey == "" || gatewayURL == "" || strings.Contains(gatewayURL, h.api.URL) {
		t.Fatalf("the CLI's environment names key %q and API %q: want a job credential and the gateway", jobKey, gatewayURL)
	}
	h.final("e2", 60*time.Second)
	// The job is over: its credential no longer opens the gateway.
	requests := len(h.api.Requests())
	req, _ := http.NewRequest(http.MethodPost, gatewayURL+"/v1/messages", strings.NewReader(`{"model":"x","max_tokens":1,"messages":[]}`))
	req.Header.Set("X-Api-Key", jobKey)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the ended job's credential, replayed: %v %v, want 401", resp, err)
	} else {
		resp.Body.Close()
	}
	if len(h.api.Requests()) != requests {
		t.Error("the replayed credential's request reached the API")
	}
	p.stop(15, 25*time.Second) // SIGTERM

	// Logs and responses.
	for _, secret := range []string{testAPIKey, testToken, awsSecret, awsURI} {
		if strings.Contains(p.logs.String(), secret) {
			t.Errorf("the log holds a secret")
		}
		for _, resp := range h.responses.All {
			b, _ := json.Marshal(resp)
			if strings.Contains(string(b), secret) {
				t.Errorf("response %s holds a secret", resp.JobID)
			}
		}
	}
	// Every file of the workspace and of the remote, .git included.
	for _, dir := range []string{h.root, gitRoot, h.home} {
		filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !d.Type().IsRegular() {
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return nil
			}
			for _, secret := range []string{testToken, awsSecret, awsURI} {
				if strings.Contains(string(b), secret) {
					t.Errorf("%s holds a secret", path)
				}
			}
			if strings.Contains(string(b), testAPIKey) {
				t.Errorf("%s holds the API key", path)
			}
			return nil
		})
	}
	cfg, _ := os.ReadFile(filepath.Join(h.projectDir("ivy"), ".git", "config"))
	if strings.Contains(string(cfg), "@") && strings.Contains(string(cfg), "x-access-token") {
		t.Errorf(".git/config holds credentials:\n%s", cfg)
	}
	if _, err := os.Stat(filepath.Join(h.home, ".git-credentials")); err == nil {
		t.Error("~/.git-credentials was written")
	}
}
