package systemtest

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/webordinary/claude-code-astro/internal/testkit/browser"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/preview"
)

// viteConnected is what Vite's client logs once its HMR socket is open, on
// every page load.
const viteConnected = "[vite] connected"

// testPreviewSecret is PREVIEW_SECRET in these tests: tokens the test signs
// with it open previews, as the worker's do.
const testPreviewSecret = "the preview secret of a system test"

// TestPreviewsPerUser runs two customers on one worker, as the issue that
// asked for per-user previews tried it: both previews open in Chromium at
// once, each shows its own user's site, and an edit reaches only its own
// user's page. Requests without a valid token for the host get 401, reach
// no dev server and do not hold the idle shutdown off. Restarted with room
// for one dev server, the worker stops the older one and starts it again
// for its viewer.
func TestPreviewsPerUser(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	hosts := h.useExampleSite(t)
	h.env["PREVIEW_SECRET"] = testPreviewSecret
	h.env["AUTO_SHUTDOWN_MINUTES"] = "5"
	p := h.start(nil)
	h.api.SetDecider(headingDecider)

	users := []string{"alice", "bob"}
	links := map[string]string{}
	for _, u := range users {
		h.send(initJob("init-"+u, u, "t-"+u))
	}
	for _, u := range users {
		r := h.final("init-"+u, 3*time.Minute)
		if r.Status != jobs.StatusSucceeded {
			t.Fatalf("init %s: %+v", u, r.Error)
		}
		links[u] = h.checkPreviewURL(t, r, u)
	}
	for _, u := range users {
		p.waitPreviewReady(t, u)
	}
	a, b := p.previewOf("alice"), p.previewOf("bob")
	if a["port"] == b["port"] || a["preview"] == b["preview"] || a["clientId"] != "acme" {
		t.Fatalf("/health previews: alice %v, bob %v: want two dev servers on their own ports", a, b)
	}

	t.Run("refused without a valid token", func(t *testing.T) {
		checkRefusals(t, h, p, links)
	})

	// Both customers open their previewUrl, each in their own browser.
	pages := map[string]*browser.Browser{}
	for _, u := range users {
		pages[u] = browser.Start(t, browser.MapHost(hosts))
		openPreview(t, pages[u], links[u])
		pages[u].WaitText("#title", "Welcome to Example Site", 30*time.Second)
		pages[u].WaitConsole(viteConnected, 1, 15*time.Second)
	}
	heading := map[string]string{"alice": "Welcome to Example Site", "bob": "Welcome to Example Site"}
	for _, turn := range [][2]string{{"alice", "bob"}, {"bob", "alice"}} {
		u, other := turn[0], turn[1]
		to := u + "'s own heading"
		loadsBefore := pages[other].CountConsole(viteConnected)
		h.send(headingJob("edit-"+u, u, "t-"+u, h.projectDir(u)+"/src/pages/index.astro", heading[u], to))
		if r := h.final("edit-"+u, 3*time.Minute); r.Status != jobs.StatusSucceeded || r.Commit == "" {
			t.Fatalf("execute for %s: %+v %+v", u, r, r.Error)
		}
		took := pages[u].WaitText("#title", to, 30*time.Second)
		t.Logf("%s's open page showed the edit %s after the job's answer", u, took.Round(time.Millisecond))
		heading[u] = to
		// The other page neither changes nor reloads.
		if _, seen, err := pages[other].PollText("#title", to, 2*time.Second); err == nil {
			t.Errorf("%s's page shows %s's edit", other, u)
		} else if seen != heading[other] {
			t.Errorf("%s's page shows %q, want %q", other, seen, heading[other])
		}
		if n := pages[other].CountConsole(viteConnected); n != loadsBefore {
			t.Errorf("%s's page reloaded (%d HMR connections, was %d) for %s's edit", other, n, loadsBefore, u)
		}
	}

	// Restart with room for one dev server. The browsers' cookies still open
	// their previews (PREVIEW_SECRET is the same), and no dev server runs.
	for _, u := range users {
		pages[u].Open("about:blank")
	}
	if code, _ := p.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("worker exited with %d on SIGTERM", code)
	}
	p = h.start(map[string]string{"PREVIEW_MAX_SERVERS": "1"})
	if body := p.workerStatus(); len(body["previews"].([]any)) != 0 {
		t.Fatalf("previews running after a restart with no job: %v", body["previews"])
	}
	for i, u := range []string{"alice", "bob", "alice"} {
		// A page load with a valid cookie starts the user's dev server from
		// their workspace on the root; the "starting" page reloads itself.
		pages[u].Open("http://" + h.previewHost(u) + "/")
		took := pages[u].WaitText("#title", heading[u], 90*time.Second)
		t.Logf("load %d: %s's stopped preview served after %s", i+1, u, took.Round(time.Millisecond))
		other := "bob"
		if u == "bob" {
			other = "alice"
		}
		wait.For(t, 30*time.Second, other+"'s dev server to stop for "+u+"'s", func() bool {
			return p.previewOf(other) == nil
		})
		if e := p.previewOf(u); e == nil || e["state"] != "ready" {
			t.Errorf("/health: %s's preview %v, want ready", u, e)
		}
	}
}

// checkRefusals sends what a stranger would to the previews: nothing gets
// further than 401 and the short page, and none of it moves idleShutdownAt.
// A request with a token the test signs with PREVIEW_SECRET then gets in and
// moves it.
func checkRefusals(t *testing.T, h *harness, p *proc, links map[string]string) {
	aliceID, bobID := preview.ID("acme", "alice"), preview.ID("acme", "bob")
	aliceToken := tokenOf(t, links["alice"])
	signer := preview.NewTokens([]byte(testPreviewSecret), time.Nanosecond)
	expired := signer.Issue(aliceID)
	forged := aliceToken[:len(aliceToken)-2] + "xx"
	if strings.HasSuffix(aliceToken, "xx") {
		forged = aliceToken[:len(aliceToken)-2] + "yy"
	}
	otherKey := preview.NewTokens([]byte("not the worker's secret"), time.Hour).Issue(aliceID)
	wait.For(t, 5*time.Second, "the expired token's second to pass", func() bool { // expiries are whole seconds
		_, _, ok := signer.Verify(expired)
		return !ok
	})

	_, body := p.health()
	idleBefore, _ := body["idleShutdownAt"].(string)
	if idleBefore == "" {
		t.Fatalf("no idleShutdownAt while the worker is idle: %v", body)
	}

	cases := []struct {
		name, user, path, query, cookie string
	}{
		{name: "no token", user: "alice", path: "/"},
		{name: "no token, a source file", user: "alice", path: "/src/pages/index.astro"},
		{name: "no token, a file by its path", user: "alice", path: "/@fs/etc/passwd"},
		{name: "forged token", user: "alice", path: "/", query: forged},
		{name: "expired token", user: "alice", path: "/", query: expired},
		{name: "token signed with another key", user: "alice", path: "/", query: otherKey},
		{name: "alice's token on bob's host", user: "bob", path: "/", query: aliceToken},
		{name: "alice's cookie on bob's host", user: "bob", path: "/", cookie: aliceToken},
		{name: "forged cookie", user: "alice", path: "/", cookie: forged},
	}
	for _, c := range cases {
		u := url.URL{Scheme: "http", Host: h.previewHost(c.user), Path: c.path}
		if c.query != "" {
			u.RawQuery = preview.TokenParam + "=" + url.QueryEscape(c.query)
		}
		code, page := getPreview(t, h, u.String(), c.cookie)
		if code != http.StatusUnauthorized || !strings.Contains(page, "preview-unauthorized") || strings.Contains(page, "Example Site") {
			t.Errorf("%s: %d, want 401 and the short page:\n%.300s", c.name, code, page)
		}
	}
	for _, c := range []struct{ name, user, cookie string }{
		{name: "HMR socket without a token", user: "alice"},
		{name: "HMR socket with alice's cookie on bob's host", user: "bob", cookie: aliceToken},
		{name: "HMR socket with an expired cookie", user: "alice", cookie: expired},
	} {
		if code := dialHMR(t, h, c.user, c.cookie); code != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", c.name, code)
		}
	}
	if _, body := p.health(); body["idleShutdownAt"] != idleBefore {
		t.Errorf("refused requests moved idleShutdownAt from %s to %v", idleBefore, body["idleShutdownAt"])
	}

	// What the worker signs opens the preview, and counts as activity.
	valid := preview.NewTokens([]byte(testPreviewSecret), time.Hour).Issue(bobID)
	code, page := getPreview(t, h, "http://"+h.previewHost("bob")+"/", valid)
	if code != http.StatusOK || !strings.Contains(page, "Welcome to Example Site") {
		t.Errorf("bob's preview with a cookie signed with PREVIEW_SECRET: %d\n%.300s", code, page)
	}
	if _, body := p.health(); body["idleShutdownAt"] == idleBefore {
		t.Errorf("an authenticated request did not move idleShutdownAt (%s)", idleBefore)
	}
}

// tokenOf returns the token in a previewUrl.
func tokenOf(t *testing.T, previewURL string) string {
	t.Helper()
	u, err := url.Parse(previewURL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get(preview.TokenParam)
}

// previewClient sends requests for any preview host to the worker's port,
// as the browsers' host mapping does, without following redirects.
func previewClient(h *harness) *http.Client {
	addr := h.env["HTTP_ADDR"]
	dialer := &net.Dialer{}
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, addr)
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// getPreview GETs a preview URL, with the preview cookie when cookie is set.
func getPreview(t *testing.T, h *harness, target, cookie string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: preview.CookieName, Value: cookie})
	}
	resp, err := previewClient(h).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", target, err)
	}
	return resp.StatusCode, string(b)
}

// dialHMR opens Vite's HMR socket on user's preview host, as the page's
// client does, and returns the status of the answer (101 when it opened).
func dialHMR(t *testing.T, h *harness, user, cookie string) int {
	t.Helper()
	addr := h.env["HTTP_ADDR"]
	d := websocket.Dialer{
		NetDialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		Subprotocols:     []string{"vite-hmr"},
		HandshakeTimeout: 10 * time.Second,
	}
	header := http.Header{"Origin": {"http://" + h.previewHost(user)}}
	if cookie != "" {
		header.Set("Cookie", preview.CookieName+"="+cookie)
	}
	conn, resp, err := d.Dial("ws://"+h.previewHost(user)+"/", header)
	if conn != nil {
		conn.Close()
	}
	if resp == nil {
		if err != nil && !errors.Is(err, websocket.ErrBadHandshake) {
			t.Fatalf("dial the HMR socket of %s: %v", user, err)
		}
		return 0
	}
	return resp.StatusCode
}
