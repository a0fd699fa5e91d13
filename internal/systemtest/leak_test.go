package systemtest

import (
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/fakeanthropic"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// TestSecretsNeverLeak runs init and execute with a recognisable key and
// token against a remote that demands the token, then looks for them in the
// logs, every response, the workspace (.git included), the remote, and the
// environment of every process the worker started.
func TestSecretsNeverLeak(t *testing.T) {
	h := newHarness(t, harnessOptions{})
	gitRoot := filepath.Dir(h.remote.Dir)
	srv := workspacetest.ServeHTTP(t, h.git, gitRoot, testToken)
	repoURL := srv.URL + "/" + filepath.Base(h.remote.Dir)
	p := h.start(map[string]string{"GITHUB_TOKEN": testToken, "REPO_URL": repoURL, "JOB_TIMEOUT": "20s",
		"GIT_TOKEN_HOSTS": strings.TrimPrefix(srv.URL, "http://")})

	h.send(initJob("i1", "ivy", "t1"))
	if r := h.final("i1", 60*time.Second); r.Status != jobs.StatusSucceeded {
		t.Fatalf("init over authenticated http: %+v", r.Error)
	}
	h.api.SetScript(editHeading(h.projectDir("ivy") + "/src/pages/index.astro")...)
	h.send(execJob("e1", "ivy", "t1", "Change the heading"))
	r := h.final("e1", 60*time.Second)
	if r.Status != jobs.StatusSucceeded || r.Pushed == nil || !*r.Pushed {
		t.Fatalf("execute: %+v %+v (%s)", r, r.Error, r.PushError)
	}
	if len(srv.Authorizations()) == 0 {
		t.Fatal("the git server saw no credentials: the token was not used")
	}

	// While an agent runs, read the environment of every process below the worker.
	h.api.SetScript(fakeanthropic.Hang())
	h.send(execJob("e2", "ivy", "t1", "Take your time"))
	waitFor(t, 30*time.Second, "the agent to call the API", func() bool {
		for _, req := range h.api.MessageRequests() {
			for _, m := range req.Messages {
				if m.IsPrompt() && strings.Contains(m.Text(), "Take your time") {
					return true
				}
			}
		}
		return false
	})
	sawCLI := false
	for _, pid := range descendants(p.cmd.Process.Pid) {
		env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		name := strings.ReplaceAll(string(cmdline), "\x00", " ")
		if strings.Contains(string(env), testToken) {
			t.Errorf("process %d (%s) has the git token in its environment", pid, name)
		}
		for _, v := range strings.Split(string(env), "\x00") {
			if strings.HasPrefix(v, "AWS_") {
				t.Errorf("process %d (%s) has %s", pid, name, strings.SplitN(v, "=", 2)[0])
			}
		}
		if strings.Contains(string(env), "ANTHROPIC_API_KEY="+testAPIKey) {
			sawCLI = true // the CLI's own environment: the one allowed place
		}
	}
	if !sawCLI {
		t.Error("no child process had the API key: the environment check saw no CLI")
	}
	h.final("e2", 60*time.Second)
	p.stop(15, 25*time.Second) // SIGTERM

	// Logs and responses.
	for _, secret := range []string{testAPIKey, testToken} {
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
			for _, secret := range []string{testToken} {
				if strings.Contains(string(b), secret) {
					t.Errorf("%s holds the git token", path)
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
