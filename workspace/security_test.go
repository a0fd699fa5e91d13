package workspace_test

import (
	"encoding/base64"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/webordinary/claude-code-astro/workspace"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

func TestValidateID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"a", true},
		{"Client_01-x", true},
		{strings.Repeat("a", 64), true},
		{"", false},
		{"..", false},
		{".", false},
		{"a/b", false},
		{`a\b`, false},
		{"-rf", false},
		{"_x", false},
		{"a b", false},
		{"a\x00b", false},
		{"a\n", false},
		{"é", false},
		{strings.Repeat("a", 65), false},
	}
	for _, tt := range tests {
		if err := workspace.ValidateID(tt.id); (err == nil) != tt.ok || (err != nil && !errors.Is(err, workspace.ErrInvalidID)) {
			t.Errorf("ValidateID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
		}
	}
}

func TestValidateRepoURL(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://github.com/acme/site.git", true},
		{"ssh://git@github.com/acme/site.git", true},
		{"git@github.com:acme/site.git", true},
		{"file:///srv/git/site.git", true},
		{"/srv/git/site.git", true},
		{"http://127.0.0.1:8080/site.git", true},
		{"http://localhost/site.git", true},
		{"http://[::1]:9000/site.git", true},
		{"", false},
		{"https://user:secret-pass@github.com/acme/site.git", false},
		{"https://ghp_abcdef123456@github.com/acme/site.git", false},
		{"ssh://git:secret-pass@github.com/acme/site.git", false},
		{"http://github.com/acme/site.git", false},
		{"http://10.0.0.1/site.git", false},
		{"git://github.com/acme/site.git", false},
		{"ext::sh -c touch% /tmp/pwned", false},
		{"-uhello", false},
		{"--upload-pack=touch /tmp/x", false},
		{"relative/path", false},
		{"file://evil.example/srv/site.git", false},
		{"https://github.com/a b", false},
		{"https:///nohost", false},
	}
	for _, tt := range tests {
		err := workspace.ValidateRepoURL(tt.url)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, workspace.ErrInvalidRepoURL)) {
			t.Errorf("ValidateRepoURL(%q) = %v, want ok=%v", tt.url, err, tt.ok)
		}
		if err != nil && strings.Contains(err.Error(), "secret-pass") {
			t.Errorf("error echoes the credentials: %v", err)
		}
	}
}

func TestPathsRefusedBeforeDisk(t *testing.T) {
	g := workspacetest.NewGit(t)
	remote := workspacetest.NewRemote(t, g, plainSite())
	ws := newWorkspaces(t)
	bad := []string{"..", ".", "a/b", "../etc", "-rf", "", strings.Repeat("x", 65), "_a", "a b"}
	for _, id := range bad {
		if _, err := ws.User(id, "u"); !errors.Is(err, workspace.ErrInvalidID) {
			t.Errorf("User(%q, u) = %v, want ErrInvalidID", id, err)
		}
		if _, err := ws.User("c", id); !errors.Is(err, workspace.ErrInvalidID) {
			t.Errorf("User(c, %q) = %v, want ErrInvalidID", id, err)
		}
	}
	u := mustUser(t, ws, "c", "u")
	for _, id := range bad {
		if _, err := u.Init(ctx(t), workspace.InitOptions{RepoURL: remote.URL, ThreadID: id}); !errors.Is(err, workspace.ErrInvalidID) {
			t.Errorf("Init(thread %q) = %v, want ErrInvalidID", id, err)
		}
		if _, err := u.SwitchThread(ctx(t), id); !errors.Is(err, workspace.ErrInvalidID) {
			t.Errorf("SwitchThread(%q) = %v, want ErrInvalidID", id, err)
		}
		if _, err := u.LoadThread(id); !errors.Is(err, workspace.ErrInvalidID) {
			t.Errorf("LoadThread(%q) = %v, want ErrInvalidID", id, err)
		}
	}
	if _, err := u.Init(ctx(t), workspace.InitOptions{RepoURL: "https://u:secret-pass@example.com/r.git", ThreadID: "t"}); !errors.Is(err, workspace.ErrInvalidRepoURL) ||
		strings.Contains(err.Error(), "secret-pass") {
		t.Errorf("Init with credentials in url = %v", err)
	}
	entries, err := os.ReadDir(ws.Root())
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("refused ids touched the disk: root holds %v", entries)
	}
}

func TestSymlinksOutsideRootRefused(t *testing.T) {
	outside := t.TempDir()
	tests := []struct {
		name  string
		setup func(t *testing.T, root string)
	}{
		{"user dir symlink", func(t *testing.T, root string) {
			if err := os.MkdirAll(filepath.Join(root, "c"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, filepath.Join(root, "c", "u")); err != nil {
				t.Fatal(err)
			}
		}},
		{"client dir symlink", func(t *testing.T, root string) {
			if err := os.Symlink(outside, filepath.Join(root, "c")); err != nil {
				t.Fatal(err)
			}
		}},
		{"project dir symlink", func(t *testing.T, root string) {
			if err := os.MkdirAll(filepath.Join(root, "c", "u"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, filepath.Join(root, "c", "u", "project")); err != nil {
				t.Fatal(err)
			}
		}},
		{"dangling symlink", func(t *testing.T, root string) {
			if err := os.MkdirAll(filepath.Join(root, "c"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(filepath.Join(outside, "missing"), filepath.Join(root, "c", "u")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws := newWorkspaces(t)
			tt.setup(t, ws.Root())
			if _, err := ws.User("c", "u"); !errors.Is(err, workspace.ErrOutsideRoot) {
				t.Errorf("User = %v, want ErrOutsideRoot", err)
			}
			entries, err := os.ReadDir(outside)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 0 {
				t.Errorf("outside dir written: %v", entries)
			}
		})
	}

	// A symlink inside the root is followed.
	ws := newWorkspaces(t)
	if err := os.MkdirAll(filepath.Join(ws.Root(), "real"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(ws.Root(), "real"), filepath.Join(ws.Root(), "alias")); err != nil {
		t.Fatal(err)
	}
	if _, err := ws.User("alias", "u"); err != nil {
		t.Errorf("symlink inside root refused: %v", err)
	}

	// A user whose directory is swapped for a symlink after User() is
	// refused by the next operation.
	u := mustUser(t, ws, "c2", "u")
	if err := os.MkdirAll(filepath.Join(ws.Root(), "c2"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, u.Dir); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Init(ctx(t), workspace.InitOptions{RepoURL: "/nonexistent", ThreadID: "t"}); !errors.Is(err, workspace.ErrOutsideRoot) {
		t.Errorf("Init through a swapped symlink = %v, want ErrOutsideRoot", err)
	}
}

// TestTokenReachesOnlyTheServer runs clone, fetch and push against a git
// HTTP server on loopback that demands the token, then looks for the token
// in every file and error.
func TestTokenReachesOnlyTheServer(t *testing.T) {
	g := workspacetest.NewGit(t)
	remote := workspacetest.NewRemote(t, g, plainSite())
	srv := workspacetest.ServeHTTP(t, g, filepath.Dir(remote.Dir), testToken)
	repoURL := srv.URL + "/" + filepath.Base(remote.Dir)
	home := t.TempDir()
	host := strings.TrimPrefix(srv.URL, "http://")
	ws := newWorkspaces(t, func(c *workspace.Config) { c.Home = home; c.TokenHosts = []string{host} })
	u := mustUser(t, ws, "c", "u")

	res := mustInit(t, u, workspace.InitOptions{RepoURL: repoURL, ThreadID: "t1"})
	if !res.Cloned {
		t.Fatalf("init = %+v", res)
	}
	mustInit(t, u, workspace.InitOptions{ThreadID: "t1"}) // fetch
	writeFile(t, filepath.Join(u.ProjectDir, "index.html"), "<h1>Over HTTP</h1>\n")
	c, err := u.Commit(ctx(t), "t1", "job-1", "edit over http")
	if err != nil {
		t.Fatal(err)
	}
	// Config and hooks planted in the repository (the agent can write
	// there) must not see the token: other credential helpers are reset
	// and hooks are off.
	planted := t.TempDir()
	g.Run(u.ProjectDir, "config", "credential.helper", "store --file="+filepath.Join(planted, "stored"))
	g.Run(u.ProjectDir, "config", "credential.http://127.0.0.1.helper", "store --file="+filepath.Join(planted, "stored-scoped"))
	writeFile(t, filepath.Join(u.ProjectDir, ".git", "hooks", "pre-push"), "#!/bin/sh\nenv > "+filepath.Join(planted, "hook-env")+"\n")
	if err := os.Chmod(filepath.Join(u.ProjectDir, ".git", "hooks", "pre-push"), 0o755); err != nil {
		t.Fatal(err)
	}
	pushed, reason, err := u.Push(ctx(t), "t1")
	if err != nil || !pushed {
		t.Fatalf("push = %v %q %v", pushed, reason, err)
	}
	if entries, err := os.ReadDir(planted); err != nil || len(entries) != 0 {
		t.Errorf("planted helper or hook ran: %v %v", entries, err)
	}
	if got := remote.Rev("refs/heads/thread-t1"); got != c.SHA {
		t.Errorf("remote thread-t1 = %q, want %q", got, c.SHA)
	}
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+testToken))
	if !slices.Contains(srv.Authorizations(), want) {
		t.Errorf("the server never received the token; saw %q", srv.Authorizations())
	}

	// A rejected push over HTTP: the reason holds no token.
	remote.SetHook(t, "pre-receive", "#!/bin/sh\necho rejected-by-hook >&2\nexit 1\n")
	writeFile(t, filepath.Join(u.ProjectDir, "index.html"), "<h1>Again</h1>\n")
	if _, err := u.Commit(ctx(t), "t1", "job-2", "again"); err != nil {
		t.Fatal(err)
	}
	pushed, reason, err = u.Push(ctx(t), "t1")
	if err != nil || pushed || !strings.Contains(reason, "rejected-by-hook") {
		t.Errorf("rejected push = %v %q %v", pushed, reason, err)
	}
	var texts []string
	texts = append(texts, reason)

	// A wrong token fails the clone with a GitError that holds no token.
	wrong := "ghp_WRONGtoken_9876543210_also_secret"
	ws2 := newWorkspaces(t, func(c *workspace.Config) { c.Token = wrong })
	u2 := mustUser(t, ws2, "c", "u")
	_, err = u2.Init(ctx(t), workspace.InitOptions{RepoURL: repoURL, ThreadID: "t1"})
	var ge *workspace.GitError
	if !errors.As(err, &ge) || ge.Op != "clone" {
		t.Fatalf("clone with a wrong token = %v, want GitError from clone", err)
	}
	texts = append(texts, err.Error())

	// Token-scoped helper: a token for one host is never offered to
	// another (here the file:// remote needs none and gets none).
	for _, s := range texts {
		for _, tok := range []string{testToken, wrong} {
			if strings.Contains(s, tok) {
				t.Errorf("token in error text %q", s)
			}
		}
	}
	for _, tok := range []string{testToken, wrong, base64.StdEncoding.EncodeToString([]byte("x-access-token:" + testToken))} {
		if hits := filesContaining(t, tok, ws.Root(), ws2.Root(), remote.Dir, home); len(hits) > 0 {
			t.Errorf("token written to %v", hits)
		}
	}
	if hits := filesContaining(t, "x-access-token", u.ProjectDir); len(hits) > 0 {
		t.Errorf("credential helper written to %v", hits)
	}
	cfg := readFile(t, filepath.Join(u.ProjectDir, ".git", "config"))
	if strings.Contains(cfg, "x-access-token") || strings.Contains(cfg, "@127.0.0.1") {
		t.Errorf(".git/config holds credentials:\n%s", cfg)
	}
}

// TestTokenGoesOnlyToItsHosts: a job naming another server as its
// repository does not get the token sent there.
func TestTokenGoesOnlyToItsHosts(t *testing.T) {
	g := workspacetest.NewGit(t)
	remote := workspacetest.NewRemote(t, g, plainSite())
	srv := workspacetest.ServeHTTP(t, g, filepath.Dir(remote.Dir), testToken)
	repoURL := srv.URL + "/" + filepath.Base(remote.Dir)
	ws := newWorkspaces(t, func(c *workspace.Config) { c.TokenHosts = []string{"github.com"} })
	u := mustUser(t, ws, "c", "u")
	if _, err := u.Init(ctx(t), workspace.InitOptions{RepoURL: repoURL, ThreadID: "t1"}); err == nil {
		t.Fatal("clone from a server that demands the token succeeded without it")
	}
	for _, auth := range srv.Authorizations() {
		if strings.Contains(auth, base64.StdEncoding.EncodeToString([]byte("x-access-token:"+testToken))) {
			t.Errorf("the token went to %s, which is not one of its hosts", srv.URL)
		}
	}
}

// TestTokenHostsMatchPorts: in GIT_TOKEN_HOSTS a bare host matches every
// port of that host and host:port that port only; a host not listed never
// gets the token. Each case clones from a real git server on loopback that
// demands the token.
func TestTokenHostsMatchPorts(t *testing.T) {
	g := workspacetest.NewGit(t)
	remote := workspacetest.NewRemote(t, g, plainSite())
	srv := workspacetest.ServeHTTP(t, g, filepath.Dir(remote.Dir), testToken)
	repoURL := srv.URL + "/" + filepath.Base(remote.Dir)
	hostPort := strings.TrimPrefix(srv.URL, "http://")
	_, port, _ := strings.Cut(hostPort, ":")
	otherPort := "1"
	if port == otherPort {
		otherPort = "2"
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+testToken))
	for _, tc := range []struct {
		name      string
		hosts     []string
		sendToken bool
	}{
		{"bare host, any port", []string{"127.0.0.1"}, true},
		{"host and its port", []string{"127.0.0.1:" + port}, true},
		{"listed among others", []string{"github.com", "127.0.0.1"}, true},
		{"host with another port", []string{"127.0.0.1:" + otherPort}, false},
		{"another host", []string{"github.com"}, false},
		{"another name of the same machine", []string{"localhost"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(srv.Authorizations())
			ws := newWorkspaces(t, func(c *workspace.Config) { c.TokenHosts = tc.hosts })
			u := mustUser(t, ws, "c", "u")
			_, err := u.Init(ctx(t), workspace.InitOptions{RepoURL: repoURL, ThreadID: "t1"})
			sent := slices.Contains(srv.Authorizations()[before:], basic)
			if sent != tc.sendToken {
				t.Errorf("GIT_TOKEN_HOSTS=%v, repository %s: token sent = %v, want %v", tc.hosts, repoURL, sent, tc.sendToken)
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
		if got := workspace.TokenHostMatches(tc.hosts, u); got != tc.want {
			t.Errorf("TokenHostMatches(%v, %s) = %v, want %v", tc.hosts, tc.url, got, tc.want)
		}
	}
}

// TestLocalRepositoryInsideTheRootIsRefused: a job cannot clone another
// user's workspace by naming its path.
func TestLocalRepositoryInsideTheRootIsRefused(t *testing.T) {
	g := workspacetest.NewGit(t)
	remote := workspacetest.NewRemote(t, g, plainSite())
	ws := newWorkspaces(t)
	victim := mustUser(t, ws, "c", "victim")
	mustInit(t, victim, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "t1"})
	thief := mustUser(t, ws, "c", "thief")
	for _, repo := range []string{victim.ProjectDir, "file://" + victim.ProjectDir, ws.Root() + "/c/../c/victim/project"} {
		if _, err := thief.Init(ctx(t), workspace.InitOptions{RepoURL: repo, ThreadID: "t1"}); !errors.Is(err, workspace.ErrInvalidRepoURL) {
			t.Errorf("Init from %s = %v, want ErrInvalidRepoURL", repo, err)
		}
	}
}

// TestNodeModulesLinkIsRefused: a repository holding node_modules as a link
// is not installed (npm ci would empty the link's target).
func TestNodeModulesLinkIsRefused(t *testing.T) {
	g := workspacetest.NewGit(t)
	victim := t.TempDir()
	if err := os.WriteFile(filepath.Join(victim, "precious.txt"), []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	remote := workspacetest.NewRemote(t, g, workspacetest.SiteFiles())
	work := t.TempDir()
	g.Run(work, "clone", "-q", remote.Dir, "w")
	w := filepath.Join(work, "w")
	if err := os.Symlink(victim, filepath.Join(w, "node_modules")); err != nil {
		t.Fatal(err)
	}
	g.Run(w, "add", "-f", "node_modules")
	g.Run(w, "commit", "-q", "-m", "link node_modules")
	g.Run(w, "push", "-q", "origin", "HEAD")

	u := mustUser(t, newWorkspaces(t), "c", "u")
	_, err := u.Init(ctx(t), workspace.InitOptions{RepoURL: remote.URL, ThreadID: "t1"})
	var ie *workspace.InstallError
	if !errors.As(err, &ie) || !strings.Contains(ie.Output, "node_modules is not a directory") {
		t.Fatalf("Init with a node_modules link = %v, want an InstallError about node_modules", err)
	}
	if b, err := os.ReadFile(filepath.Join(victim, "precious.txt")); err != nil || string(b) != "keep me" {
		t.Errorf("the link's target was touched: %q, %v", b, err)
	}
}
