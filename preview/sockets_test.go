package preview_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/webordinary/claude-code-astro/internal/testkit/browser"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/preview"
	"github.com/webordinary/claude-code-astro/preview/previewtest"
)

// TestSocketsCloseWith1012 opens a WebSocket through the gate and the proxy
// to a backend that keeps it open, as Vite does, and closes the preview's
// sockets: the client gets a close frame with 1012 (Vite's client then
// polls and reloads), and another preview's socket stays open.
func TestSocketsCloseWith1012(t *testing.T) {
	upgrader := websocket.Upgrader{Subprotocols: []string{"vite-hmr"}, CheckOrigin: func(*http.Request) bool { return true }}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.WriteMessage(websocket.TextMessage, []byte(`{"type":"connected"}`))
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}))
	defer backend.Close()
	up, _ := url.Parse(backend.URL)
	servers, _ := newServers(t, preview.ServersConfig{})
	for _, user := range []string{"alice", "bob"} {
		preview.ServeStandIn(t, servers, preview.ID("acme", user), up)
	}
	tokens := preview.NewTokens([]byte("k"), time.Hour)
	var sockets preview.Sockets
	proxy := preview.NewProxy(preview.ProxyConfig{Servers: servers})
	srv := httptest.NewServer(preview.NewGate(preview.GateConfig{Tokens: tokens, PerHost: true, Next: sockets.Wrap(proxy)}))
	defer srv.Close()

	dial := func(user string) *websocket.Conn {
		id := preview.ID("acme", user)
		d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, Subprotocols: []string{"vite-hmr"}}
		h := http.Header{"Cookie": {preview.CookieName + "=" + tokens.Issue(id)}, "Host": {id + ".preview.test"}}
		u := "ws" + strings.TrimPrefix(srv.URL, "http") + "/"
		c, resp, err := d.Dial(u, h)
		if err != nil {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			t.Fatalf("dial %s's socket: %v (%d)", user, err, status)
		}
		if _, msg, err := c.ReadMessage(); err != nil || !strings.Contains(string(msg), "connected") {
			t.Fatalf("first message %q %v", msg, err)
		}
		return c
	}
	alice, bob := dial("alice"), dial("bob")
	defer bob.Close()
	defer alice.Close()
	if n := sockets.Close(preview.ID("acme", "alice"), websocket.CloseServiceRestart, "preview moved"); n != 1 {
		t.Fatalf("closed %d sockets of alice's preview, want 1", n)
	}
	_ = alice.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err := alice.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseServiceRestart {
		t.Fatalf("alice's socket ended with %v, want a close frame with 1012", err)
	}
	// Bob's socket is untouched.
	if err := bob.WriteMessage(websocket.TextMessage, []byte("ping")); err != nil {
		t.Errorf("bob's socket: %v", err)
	}
	if n := sockets.Close(preview.ID("acme", "alice"), websocket.CloseServiceRestart, ""); n != 0 {
		t.Errorf("closed %d sockets again", n)
	}
}

// TestBrowserReloadsAfter1012 checks what a takeover relies on, on Astro 5
// (Vite 6) and Astro 7 (Vite 8): a page open in Chromium whose HMR socket
// the worker closes with 1012 reconnects by itself (Vite's client polls,
// then reloads the page), with no reload by the test.
func TestBrowserReloadsAfter1012(t *testing.T) {
	for _, s := range previewtest.Sites() {
		t.Run(s.Name, func(t *testing.T) {
			site := s.Prepare(t)
			b := browser.Start(t)
			var sockets preview.Sockets
			servers, _ := newServers(t, preview.ServersConfig{PATH: s.PATH(t)})
			tokens := preview.NewTokens([]byte("k"), time.Hour)
			proxy := preview.NewProxy(preview.ProxyConfig{Servers: servers, Logger: testLogger(t)})
			base := serveProxy(t, preview.NewGate(preview.GateConfig{Tokens: tokens, Next: sockets.Wrap(proxy)}))
			target := preview.Target{ID: preview.ID("acme", "alice"), Key: "acme/alice", Dir: site}
			targetServers(t, servers, target)
			b.Open(base.String() + "/?" + preview.TokenParam + "=" + tokens.Issue(target.ID))
			b.WaitText("#title", heading, 30*time.Second)
			b.WaitConsole(viteConnected, 1, 15*time.Second)
			wait.For(t, 10*time.Second, "the page's HMR socket to be recorded", func() bool {
				return sockets.Close(target.ID, websocket.CloseServiceRestart, "the preview moved") == 1
			})
			took := time.Now()
			b.WaitConsole(viteConnected, 2, 30*time.Second)
			t.Logf("the page reconnected %s after the 1012 close", time.Since(took).Round(time.Millisecond))
			setHeading(t, site, "Edited after the move")
			b.WaitText("#title", "Edited after the move", 30*time.Second)
		})
	}
}
