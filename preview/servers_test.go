package preview_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/preview"
	"github.com/webordinary/claude-code-astro/preview/previewtest"
)

// user is one customer of a Servers test: their preview and their site.
type user struct {
	name, heading string
	target        preview.Target
}

// twoUsers prepares two copies of the example site, each with its user's
// heading.
func twoUsers(t *testing.T) (alice, bob user) {
	t.Helper()
	mk := func(name, heading string) user {
		dir := previewtest.Default().Prepare(t)
		setHeading(t, dir, heading)
		id := preview.ID("acme", name)
		return user{name: name, heading: heading, target: preview.Target{ID: id, Key: "acme/" + name, Dir: dir}}
	}
	return mk("alice", "Alice's draft"), mk("bob", "Bob's draft")
}

// stoppedLog records the previews Servers reports stopped, and the ones
// it looked up to start.
type stoppedLog struct {
	mu      sync.Mutex
	ids     []string
	lookups map[string]int
}

func (s *stoppedLog) lookedUp(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lookups[id]
}

func (s *stoppedLog) add(t preview.Target) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids = append(s.ids, t.ID)
}

func (s *stoppedLog) has(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.ids {
		if x == id {
			return true
		}
	}
	return false
}

// newServers returns Servers for tests, closed when the test ends, and
// what it reports stopped. users are what Lookup finds.
func newServers(t *testing.T, cfg preview.ServersConfig, users ...user) (*preview.Servers, *stoppedLog) {
	t.Helper()
	stopped := &stoppedLog{lookups: map[string]int{}}
	if cfg.BasePort == 0 {
		cfg.BasePort = previewtest.FreePort(t)
	}
	if cfg.PATH == "" {
		cfg.PATH = previewtest.Default().PATH(t)
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 60 * time.Second
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff, cfg.MaxBackoff = 100*time.Millisecond, 2*time.Second
	}
	cfg.Lookup = func(_ context.Context, id string) (preview.Target, error) {
		stopped.mu.Lock()
		stopped.lookups[id]++
		stopped.mu.Unlock()
		for _, u := range users {
			if u.target.ID == id {
				return u.target, nil
			}
		}
		return preview.Target{}, preview.ErrNoWorkspace
	}
	cfg.Stopped = stopped.add
	s := preview.NewServers(cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		running := s.List()
		if err := s.Close(ctx); err != nil {
			t.Errorf("close servers: %v", err)
		}
		for _, info := range running {
			if info.PID != 0 && groupAlive(info.PID) {
				t.Errorf("dev server of %s (group %d) alive after Close", info.ID, info.PID)
			}
		}
	})
	return s, stopped
}

// gated serves s behind a Gate, one host name per preview, and returns its
// base URL and the tokens that open it.
func gated(t *testing.T, s *preview.Servers) (*url.URL, *preview.Tokens) {
	t.Helper()
	return serveGated(t, preview.ProxyConfig{Servers: s, Logger: testLogger(t), RetryAfter: 200 * time.Millisecond}, true)
}

// getAs fetches path of u's preview with a cookie holding a valid token, as
// a browser that opened u's previewUrl does, under u's host name, with the
// header's name-value pairs.
func getAs(t *testing.T, base *url.URL, tokens *preview.Tokens, u user, path string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base.String()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	req.Host = u.target.ID + ".preview.test:" + base.Port()
	req.AddCookie(&http.Cookie{Name: preview.CookieName, Value: tokens.Issue(u.target.ID)})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s as %s: %v", path, u.name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s as %s: %v", path, u.name, err)
	}
	return resp.StatusCode, string(b)
}

// TestServersOnePerUser runs two users' dev servers at once: each on its
// own port, each preview host shows its own user's site, and an edit to one
// site reaches only that site.
func TestServersOnePerUser(t *testing.T) {
	alice, bob := twoUsers(t)
	s, _ := newServers(t, preview.ServersConfig{MaxServers: 2}, alice, bob)
	base, tokens := gated(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, u := range []user{alice, bob} {
		if err := s.Target(ctx, u.target); err != nil {
			t.Fatalf("Target(%s): %v", u.name, err)
		}
	}
	list := s.List()
	if len(list) != 2 || list[0].Port == list[1].Port || list[0].PID == list[1].PID {
		t.Fatalf("List = %+v: want two dev servers on their own ports", list)
	}
	for _, pair := range [][2]user{{alice, bob}, {bob, alice}} {
		u, other := pair[0], pair[1]
		code, body := getAs(t, base, tokens, u, "/")
		if code != http.StatusOK || !strings.Contains(body, u.heading) || strings.Contains(body, other.heading) {
			t.Errorf("%s's preview: %d, want 200 with %q and not %q:\n%.400s", u.name, code, u.heading, other.heading, body)
		}
	}
	setHeading(t, alice.target.Dir, "Alice edited")
	wait.For(t, 30*time.Second, "alice's preview to show her edit", func() bool {
		_, body := getAs(t, base, tokens, alice, "/")
		return strings.Contains(body, "Alice edited")
	})
	if _, body := getAs(t, base, tokens, bob, "/"); !strings.Contains(body, bob.heading) {
		t.Errorf("bob's preview changed with alice's edit:\n%.400s", body)
	}

	// Stopping one leaves the other serving.
	var bobPID int
	for _, info := range s.List() {
		if info.ID == bob.target.ID {
			bobPID = info.PID
		}
	}
	if err := s.Stop(ctx, bob.target.ID); err != nil {
		t.Fatalf("Stop(bob): %v", err)
	}
	if groupAlive(bobPID) || len(s.List()) != 1 {
		t.Errorf("after Stop(bob): group %d alive %v, List %+v", bobPID, groupAlive(bobPID), s.List())
	}
	if code, body := getAs(t, base, tokens, alice, "/"); code != http.StatusOK || !strings.Contains(body, "Alice edited") {
		t.Errorf("alice's preview after bob's stopped: %d", code)
	}
}

// TestServersEvictAndRestart: with room for one dev server, a second user's
// preview stops the first; a viewer of the first (with a valid cookie) gets
// the "starting" page, their dev server starts again, and the page loads.
func TestServersEvictAndRestart(t *testing.T) {
	alice, bob := twoUsers(t)
	s, stopped := newServers(t, preview.ServersConfig{MaxServers: 1}, alice, bob)
	base, tokens := gated(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := s.Target(ctx, alice.target); err != nil {
		t.Fatalf("Target(alice): %v", err)
	}
	alicePID := s.List()[0].PID
	if err := s.Target(ctx, bob.target); err != nil {
		t.Fatalf("Target(bob): %v", err)
	}
	wait.For(t, 30*time.Second, "alice's dev server to stop", func() bool {
		return stopped.has(alice.target.ID) && !groupAlive(alicePID)
	})
	if list := s.List(); len(list) != 1 || list[0].ID != bob.target.ID {
		t.Fatalf("List = %+v: want only bob's dev server", list)
	}

	// What an open page asks by itself (a script, Vite's ping socket) does not
	// start a stopped preview: a forgotten tab does not fight for the room.
	for _, dest := range []string{"script", "websocket"} {
		code, _ := getAs(t, base, tokens, alice, "/src/main.js", "Sec-Fetch-Dest", dest)
		if code != http.StatusServiceUnavailable {
			t.Errorf("a %s request for the stopped preview: %d, want 503", dest, code)
		}
	}
	// A start begins with a lookup, before the response is written.
	if n := stopped.lookedUp(alice.target.ID); n != 0 {
		t.Fatalf("background requests for alice's stopped preview looked it up %d times, to start it", n)
	}

	code, body := getAs(t, base, tokens, alice, "/")
	if code != http.StatusServiceUnavailable {
		t.Errorf("first request for alice's stopped preview: %d, want the 503 starting page:\n%.300s", code, body)
	}
	wait.For(t, 90*time.Second, "alice's preview to load again", func() bool {
		code, body := getAs(t, base, tokens, alice, "/")
		return code == http.StatusOK && strings.Contains(body, alice.heading)
	})
	wait.For(t, 30*time.Second, "bob's dev server to make room", func() bool { return stopped.has(bob.target.ID) })

	// A preview with no workspace on this worker is not found, and starts nothing.
	stranger := user{name: "mallory", target: preview.Target{ID: preview.ID("acme", "mallory")}}
	if code, _ := getAs(t, base, tokens, stranger, "/"); code != http.StatusNotFound {
		t.Errorf("preview without a workspace: %d, want 404", code)
	}
}

// TestServersIdleStop: a dev server nobody views for IdleAfter stops, and
// is reported stopped; an open view holds it.
func TestServersIdleStop(t *testing.T) {
	alice, _ := twoUsers(t)
	s, stopped := newServers(t, preview.ServersConfig{IdleAfter: 2 * time.Second}, alice)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	tctx, tcancel := context.WithTimeout(ctx, 2*time.Minute)
	defer tcancel()
	if err := s.Target(tctx, alice.target); err != nil {
		t.Fatalf("Target(alice): %v", err)
	}
	pid := s.List()[0].PID
	// A page open on it (its HMR socket) is a view for as long as it lasts.
	_, ready, done := s.View(alice.target.ID)
	if !ready {
		t.Fatal("View: the dev server is not ready after Target")
	}
	// However long ago the last request came, an open view holds it.
	if n := s.StopIdle(time.Now().Add(time.Hour)); n != 0 || len(s.List()) != 1 {
		t.Fatalf("an hour on, with a view open, StopIdle stopped %d dev servers", n)
	}
	done()
	wait.For(t, 30*time.Second, "the idle dev server to stop", func() bool {
		return len(s.List()) == 0 && stopped.has(alice.target.ID) && !groupAlive(pid)
	})
}
