package preview_test

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/webordinary/claude-code-astro/internal/idle"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/preview"
)

// gatedEcho serves a Proxy to up behind a Gate, with tokens of ttl, and
// returns its URL, the preview id and a cookie for it.
func gatedEcho(t *testing.T, up *url.URL, ttl, viewMax time.Duration, activity preview.Activity) (base *url.URL, cookie string) {
	t.Helper()
	id := preview.ID("acme", "u1")
	servers, _ := newServers(t, preview.ServersConfig{})
	preview.ServeStandIn(t, servers, id, up)
	tokens := preview.NewTokens([]byte("views-test-secret"), ttl)
	proxy := preview.NewProxy(preview.ProxyConfig{Servers: servers, Activity: activity, ViewMax: viewMax, Logger: testLogger(t)})
	base = serveProxy(t, preview.NewGate(preview.GateConfig{Tokens: tokens, Next: proxy}))
	return base, tokens.Issue(id)
}

// dialHMR opens an HMR socket through base with cookie, and checks it
// carries messages.
func dialHMR(t *testing.T, base *url.URL, cookie string) *websocket.Conn {
	t.Helper()
	dialer := websocket.Dialer{HandshakeTimeout: 5 * time.Second, Subprotocols: []string{"vite-hmr"}}
	conn, _, err := dialer.Dial("ws://"+base.Host+"/", http.Header{"Cookie": {preview.CookieName + "=" + cookie}})
	if err != nil {
		t.Fatalf("open the HMR socket: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	var s seen
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := conn.ReadJSON(&s); err != nil {
		t.Fatalf("read the upstream's greeting: %v", err)
	}
	return conn
}

// alive reports whether conn still echoes.
func alive(conn *websocket.Conn) bool {
	if err := conn.WriteMessage(websocket.TextMessage, []byte("ping")); err != nil {
		return false
	}
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return false
	}
	_, data, err := conn.ReadMessage()
	return err == nil && string(data) == "ping"
}

// TestSocketPastViewMaxNoLongerHoldsTheIdleTimer: a page load, then its
// HMR socket left open: the worker is busy at first, and idle (the idle
// timer runs) once PREVIEW_VIEW_MAX has passed since the page load, while
// the socket stays open.
func TestSocketPastViewMaxNoLongerHoldsTheIdleTimer(t *testing.T) {
	tracker := idle.New(time.Hour)
	base, cookie := gatedEcho(t, echoUpstream(t), time.Hour, 2*time.Second, tracker)

	req, err := http.NewRequest(http.MethodGet, base.String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Sec-Fetch-Dest", "document")
	req.AddCookie(&http.Cookie{Name: preview.CookieName, Value: cookie})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("page load: %d", resp.StatusCode)
	}
	conn := dialHMR(t, base, cookie)
	if _, idleNow := tracker.Deadline(); idleNow {
		t.Error("an HMR socket just opened does not count as activity")
	}
	wait.For(t, 20*time.Second, "the idle timer to run again, PREVIEW_VIEW_MAX after the page load", func() bool {
		_, ok := tracker.Deadline()
		return ok
	})
	if !alive(conn) {
		t.Error("the socket was closed at PREVIEW_VIEW_MAX: only its count as activity should end")
	}
}

// TestSocketClosedWhenItsTokenExpires: an HMR socket opened with a cookie
// closes when the token in it expires.
func TestSocketClosedWhenItsTokenExpires(t *testing.T) {
	base, cookie := gatedEcho(t, echoUpstream(t), 3*time.Second, 0, nil)
	conn := dialHMR(t, base, cookie)
	if !alive(conn) {
		t.Fatal("the socket does not carry messages")
	}
	start := time.Now()
	if err := conn.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	for {
		if _, _, err := conn.ReadMessage(); err != nil {
			if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
				t.Fatal("the socket is still open 20 s after it was opened with a 3 s token")
			}
			break
		}
	}
	t.Logf("closed %s after the check", time.Since(start).Round(10*time.Millisecond))
}
