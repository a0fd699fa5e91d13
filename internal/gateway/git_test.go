package gateway_test

import (
	"context"
	"encoding/base64"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/gateway"
	"github.com/webordinary/claude-code-astro/internal/redact"
	"github.com/webordinary/claude-code-astro/internal/secrets"
	"github.com/webordinary/claude-code-astro/internal/testkit/fakeanthropic"
	"github.com/webordinary/claude-code-astro/internal/testkit/sandboxtest"
	"github.com/webordinary/claude-code-astro/workspace"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

const gitToken = "ghp_GWTESTtoken_0123456789_never_leaks"

// gitWorld is a tenant's workspace, a git server on loopback that demands
// gitToken, and a gateway holding the token.
type gitWorld struct {
	t       *testing.T
	g       *workspacetest.Git
	remote  *workspacetest.Remote
	srv     *workspacetest.HTTPServer
	repoURL string
	gw      *gateway.Gateway
	ws      *workspace.Workspaces
	user    *workspace.User
	lease   *gateway.Lease
}

func newGitWorld(t *testing.T, hosts []string) *gitWorld {
	t.Helper()
	g := workspacetest.NewGit(t)
	remote := workspacetest.NewRemote(t, g, map[string]string{"index.html": "<h1>Hello</h1>\n"})
	srv := workspacetest.ServeHTTP(t, g, filepath.Dir(remote.Dir), gitToken)
	w := &gitWorld{t: t, g: g, remote: remote, srv: srv, repoURL: srv.URL + "/" + filepath.Base(remote.Dir)}
	red := redact.New(gitToken)
	w.gw = newGateway(t, fakeanthropic.New(t), func(c *gateway.Config) {
		c.GitToken = secrets.Static("GITHUB_TOKEN", gitToken, red)
		c.TokenHosts = hosts
	})
	ws, err := workspace.Open(workspace.Config{Root: sandboxtest.Root(t), Sandbox: sandboxtest.New(t), PATH: os.Getenv("PATH"), Redactor: red})
	if err != nil {
		t.Fatal(err)
	}
	w.ws = ws
	w.user, w.lease = w.job()
	return w
}

// job returns the user for a new job, reaching git through a new lease.
func (w *gitWorld) job() (*workspace.User, *gateway.Lease) {
	u, err := w.ws.User("acme", "alice")
	if err != nil {
		w.t.Fatal(err)
	}
	lease := w.gw.Lease(gateway.LeaseOptions{Tenant: "acme/alice", ThreadID: "t1"})
	w.t.Cleanup(lease.Close)
	u.Remote = func(repoURL string) (workspace.RemoteAccess, error) {
		url, env, err := lease.GitRemote(repoURL)
		return workspace.RemoteAccess{URL: url, Env: env}, err
	}
	return u, lease
}

func (w *gitWorld) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	w.t.Cleanup(cancel)
	return ctx
}

var basicToken = "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+gitToken))

// TestGitGatewayAddsTheTokenForTheRecordedRepository: clone, fetch and
// push, run as the tenant, go through the gateway, which adds the token; the
// token is in no file, config or error of the tenant's, and credential
// helpers and hooks planted in the repository do not run.
func TestGitGatewayAddsTheTokenForTheRecordedRepository(t *testing.T) {
	w := newGitWorld(t, []string{"127.0.0.1"})
	u := w.user
	if res, err := u.Init(w.ctx(), workspace.InitOptions{RepoURL: w.repoURL, ThreadID: "t1"}); err != nil || !res.Cloned {
		t.Fatalf("init = %+v, %v", res, err)
	}
	u, _ = w.job()
	if _, err := u.Init(w.ctx(), workspace.InitOptions{ThreadID: "t1"}); err != nil { // fetch, with the next job's lease
		t.Fatal(err)
	}
	workspacetest.WriteOwned(t, filepath.Join(u.ProjectDir, "index.html"), "<h1>Over HTTP</h1>\n")
	c, err := u.Commit(w.ctx(), "t1", "job-1", "edit over http")
	if err != nil {
		t.Fatal(err)
	}
	planted := workspacetest.Reachable(t)
	w.g.Run(u.ProjectDir, "config", "credential.helper", "store --file="+filepath.Join(planted, "stored"))
	w.g.Run(u.ProjectDir, "config", "credential.http://127.0.0.1.helper", "store --file="+filepath.Join(planted, "stored-scoped"))
	workspacetest.WriteOwned(t, filepath.Join(u.ProjectDir, ".git", "hooks", "pre-push"), "#!/bin/sh\nenv > "+filepath.Join(planted, "hook-env")+"\n")
	if err := os.Chmod(filepath.Join(u.ProjectDir, ".git", "hooks", "pre-push"), 0o755); err != nil {
		t.Fatal(err)
	}
	if pushed, reason, err := u.Push(w.ctx(), "t1"); err != nil || !pushed {
		t.Fatalf("push = %v %q %v", pushed, reason, err)
	}
	if entries, _ := os.ReadDir(planted); len(entries) != 0 {
		t.Errorf("a planted helper or hook ran: %v", entries)
	}
	if got := w.remote.Rev("refs/heads/thread-t1"); got != c.SHA {
		t.Errorf("remote thread-t1 = %q, want %q", got, c.SHA)
	}
	if !slices.Contains(w.srv.Authorizations(), basicToken) {
		t.Errorf("the server never received the token; saw %q", w.srv.Authorizations())
	}
	for _, s := range []string{gitToken, base64.StdEncoding.EncodeToString([]byte("x-access-token:" + gitToken)), "x-access-token"} {
		if hits := filesContaining(t, s, w.ws.Root()); len(hits) > 0 {
			t.Errorf("%q written to %v", s, hits)
		}
	}
	cfg, _ := os.ReadFile(filepath.Join(u.ProjectDir, ".git", "config"))
	if !strings.Contains(string(cfg), "url = "+w.repoURL+"\n") {
		t.Errorf("origin is not the repository itself:\n%s", cfg)
	}

	// A rejected push: the reason holds no token.
	w.remote.SetHook(t, "pre-receive", "#!/bin/sh\necho rejected-by-hook >&2\nexit 1\n")
	workspacetest.WriteOwned(t, filepath.Join(u.ProjectDir, "index.html"), "<h1>Again</h1>\n")
	if _, err := u.Commit(w.ctx(), "t1", "job-2", "again"); err != nil {
		t.Fatal(err)
	}
	pushed, reason, err := u.Push(w.ctx(), "t1")
	if err != nil || pushed || !strings.Contains(reason, "rejected-by-hook") || strings.Contains(reason, gitToken) {
		t.Errorf("rejected push = %v %q %v", pushed, reason, err)
	}
}

// TestGitTokenGoesOnlyToItsHosts: in GIT_TOKEN_HOSTS a bare host matches
// every port of that host and host:port that port only; a host not listed
// never gets the token. Each case clones from the git server through the
// gateway.
func TestGitTokenGoesOnlyToItsHosts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		hosts     []string // "PORT" stands for the git server's port, "OTHER" for another
		sendToken bool
	}{
		{"bare host, any port", []string{"127.0.0.1"}, true},
		{"host and its port", []string{"127.0.0.1:PORT"}, true},
		{"listed among others", []string{"github.com", "127.0.0.1"}, true},
		{"host with another port", []string{"127.0.0.1:OTHER"}, false},
		{"another host", []string{"github.com"}, false},
		{"another name of the same machine", []string{"localhost"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var hosts []string
			w := newGitWorld(t, nil)
			u, _ := url.Parse(w.srv.URL)
			other := "1"
			if u.Port() == other {
				other = "2"
			}
			for _, h := range tc.hosts {
				hosts = append(hosts, strings.NewReplacer("PORT", u.Port(), "OTHER", other).Replace(h))
			}
			w.gw = newGateway(t, fakeanthropic.New(t), func(c *gateway.Config) {
				c.GitToken = secrets.Static("GITHUB_TOKEN", gitToken, redact.New())
				c.TokenHosts = hosts
			})
			w.user, w.lease = w.job()
			tc.hosts = hosts
			_, err := w.user.Init(w.ctx(), workspace.InitOptions{RepoURL: w.repoURL, ThreadID: "t1"})
			sent := slices.Contains(w.srv.Authorizations(), basicToken)
			if sent != tc.sendToken {
				t.Errorf("GIT_TOKEN_HOSTS=%v: token sent = %v, want %v", tc.hosts, sent, tc.sendToken)
			}
			if tc.sendToken && err != nil {
				t.Errorf("clone with the token: %v", err)
			}
			if !tc.sendToken && err == nil {
				t.Error("clone from a server that demands the token succeeded without it")
			}
		})
	}
}

func TestTokenHostMatches(t *testing.T) {
	for _, tc := range []struct {
		hosts []string
		url   string
		want  bool
	}{
		{[]string{"github.com"}, "https://github.com/o/r.git", true},
		{[]string{"GitHub.com"}, "https://github.com/o/r.git", true},
		{[]string{"github.com"}, "https://github.com:8443/o/r.git", true},
		{[]string{"github.com:443"}, "https://github.com/o/r.git", true},
		{[]string{"github.com:8443"}, "https://github.com/o/r.git", false},
		{[]string{"github.com"}, "https://github.com.evil.example/o/r.git", false},
		{[]string{"127.0.0.1"}, "http://127.0.0.1:8081/x.git", true},
		{[]string{"127.0.0.1:8081"}, "http://127.0.0.1:8081/x.git", true},
		{[]string{"127.0.0.1:8082"}, "http://127.0.0.1:8081/x.git", false},
		{[]string{"::1"}, "http://[::1]:8081/x.git", true},
		{[]string{"[::1]:8081"}, "http://[::1]:8081/x.git", true},
		{[]string{"[::1]:8082"}, "http://[::1]:8081/x.git", false},
		{nil, "https://github.com/o/r.git", false},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		if got := gateway.TokenHostMatches(tc.hosts, u); got != tc.want {
			t.Errorf("TokenHostMatches(%v, %s) = %v, want %v", tc.hosts, tc.url, got, tc.want)
		}
	}
}

// TestTenantCannotSendTheTokenElsewhere: the tenant's repository config
// points origin at another server, rewrites the gateway's URL to it
// (insteadOf) and sends git through a proxy (a URL-scoped http.proxy, which
// outranks the worker's -c http.proxy=). The push goes where the tenant
// says, but the real token never leaves the worker: the other server sees
// at most the job's own credential, which is good for this repository only,
// through the gateway, until the job ends.
func TestTenantCannotSendTheTokenElsewhere(t *testing.T) {
	w := newGitWorld(t, []string{"127.0.0.1"})
	if _, err := w.user.Init(w.ctx(), workspace.InitOptions{RepoURL: w.repoURL, ThreadID: "t1"}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	evil := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization")+" "+r.Header.Get("Proxy-Authorization")+" "+r.URL.String())
		mu.Unlock()
		http.Error(rw, "nope", http.StatusForbidden)
	}))
	t.Cleanup(evil.Close)
	u := w.user
	gw := w.gw.BaseURL()
	for _, kv := range [][2]string{
		{"remote.origin.url", evil.URL + "/x.git"},
		{"remote.origin.pushurl", evil.URL + "/x.git"},
		{"url." + evil.URL + "/.insteadOf", gw + "/"},
		{"http.proxy", evil.URL},
		{"http." + gw + "/.proxy", evil.URL},
		{"http.https://github.com/.proxy", evil.URL},
	} {
		w.g.Run(u.ProjectDir, "config", kv[0], kv[1])
	}
	workspacetest.WriteOwned(t, filepath.Join(u.ProjectDir, "index.html"), "<h1>Redirected?</h1>\n")
	if _, err := u.Commit(w.ctx(), "t1", "job-1", "try to redirect"); err != nil {
		t.Fatal(err)
	}
	_, _, _ = u.Push(w.ctx(), "t1") // fails or not: what matters is where the token went
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 {
		t.Fatal("the planted config was not used at all: the test proves nothing")
	}
	for _, s := range seen {
		if strings.Contains(s, gitToken) || strings.Contains(s, strings.TrimPrefix(basicToken, "Basic ")) {
			t.Errorf("the other server saw the token: %s", s)
		}
	}
}

// TestGitGatewayRefusesOtherRepositoriesAndEndedJobs: a lease reaches the
// one repository it first named; paths other than a repository's three
// smart-HTTP endpoints are refused; an ended lease's credential gets 401.
func TestGitGatewayRefusesOtherRepositoriesAndEndedJobs(t *testing.T) {
	w := newGitWorld(t, []string{"127.0.0.1"})
	gwURL, env, err := w.lease.GitRemote(w.repoURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.lease.GitRemote(w.srv.URL + "/other.git"); !errors.Is(err, gateway.ErrOtherRepository) {
		t.Errorf("a second repository: %v, want ErrOtherRepository", err)
	}
	cred := strings.TrimPrefix(env[len(env)-1], "GIT_CONFIG_VALUE_0=")
	get := func(path, header string) int {
		req, _ := http.NewRequest(http.MethodGet, w.gw.BaseURL()+path, nil)
		req.Header.Set("Authorization", header)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	refs := strings.TrimPrefix(gwURL, w.gw.BaseURL()) + "/info/refs?service=git-upload-pack"
	before := len(w.srv.Authorizations())
	for _, tc := range []struct {
		name, path, header string
		want               int
	}{
		{"the job's repository", refs, cred, http.StatusOK},
		{"another path", "/git/other.git/info/refs?service=git-upload-pack", cred, http.StatusNotFound},
		{"not a git endpoint", "/git/repo.git/objects/info/packs", cred, http.StatusNotFound},
		{"no credential", refs, "", http.StatusUnauthorized},
		{"the real token as a credential", refs, "Bearer " + gitToken, http.StatusUnauthorized},
	} {
		if got := get(tc.path, strings.TrimPrefix(tc.header, "Authorization: ")); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
	w.lease.Close()
	if got := get(refs, strings.TrimPrefix(cred, "Authorization: ")); got != http.StatusUnauthorized {
		t.Errorf("an ended job's credential: status %d, want 401", got)
	}
	if n := len(w.srv.Authorizations()) - before; n != 1 {
		t.Errorf("the git server got %d requests, want 1 (only the job's own)", n)
	}
}

// TestTokenNeverInATenantProcess: a process of the tenant's uid reads every
// /proc/*/environ and cmdline it can, over and over, while the tenant's git
// clones, fetches and pushes through the gateway: it never sees the token.
func TestTokenNeverInATenantProcess(t *testing.T) {
	w := newGitWorld(t, []string{"127.0.0.1"})
	found := filepath.Join(workspacetest.Reachable(t), "found")
	// The pattern does not match itself ([T]), so the watcher's own
	// command line is no false alarm.
	pattern := strings.Replace(gitToken, "GWTEST", "GWTES[T]", 1)
	watch := exec.Command("/bin/sh", "-c", `while [ ! -e "$1.stop" ]; do grep -a -l -e "$2" /proc/[0-9]*/environ /proc/[0-9]*/cmdline >> "$1" 2>/dev/null || :; done`, "watch", found, pattern)
	w.user.Tenant.Apply(watch)
	watch.Env = []string{"PATH=/usr/bin:/bin"}
	if err := watch.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = watch.Process.Kill(); _ = watch.Wait() }()

	u := w.user
	if _, err := u.Init(w.ctx(), workspace.InitOptions{RepoURL: w.repoURL, ThreadID: "t1"}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		workspacetest.WriteOwned(t, filepath.Join(u.ProjectDir, "index.html"), strings.Repeat("<p>edit</p>\n", i+1))
		if _, err := u.Commit(w.ctx(), "t1", "job-"+string(rune('a'+i)), "edit"); err != nil {
			t.Fatal(err)
		}
		if pushed, reason, err := u.Push(w.ctx(), "t1"); err != nil || !pushed {
			t.Fatalf("push: %v %q %v", pushed, reason, err)
		}
	}
	workspacetest.WriteOwned(t, found+".stop", "")
	if err := watch.Wait(); err != nil {
		t.Fatalf("watcher: %v", err)
	}
	b, err := os.ReadFile(found)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	if len(b) > 0 {
		t.Errorf("a tenant process saw the token in %s", b)
	}
	if !slices.Contains(w.srv.Authorizations(), basicToken) {
		t.Error("the pushes did not use the token at all: the test proves nothing")
	}
}

// filesContaining returns every regular file under dirs whose content holds s.
func filesContaining(t *testing.T, s string, dirs ...string) []string {
	t.Helper()
	var hits []string
	for _, dir := range dirs {
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), s) {
				hits = append(hits, p)
			}
			return nil
		})
	}
	return hits
}
