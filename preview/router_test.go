package preview_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/webordinary/claude-code-astro/internal/lease"
	"github.com/webordinary/claude-code-astro/internal/testkit/sqstest"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/preview"
)

// countingLeases counts the router's reads of the lease table.
type countingLeases struct {
	*lease.Table
	reads atomic.Int64
}

func (c *countingLeases) Get(ctx context.Context, id string) (lease.Lease, bool, error) {
	c.reads.Add(1)
	return c.Table.Get(ctx, id)
}

// routerEnv is a router in front of one "worker": its real Gate with the
// fleet's key in front of a handler that echoes what reached it, WebSocket
// included.
type routerEnv struct {
	tokens *preview.Tokens
	table  *lease.Table
	leases *countingLeases
	router *httptest.Server
	worker *httptest.Server
	wakes  chan string
	seen   chan *http.Request

	mu       sync.Mutex
	observed []observed      // what the router told Observe
	woke     []time.Duration // what it told Woke
}

// observed is one Observe call.
type observed struct {
	status   int
	upstream time.Duration
}

const routerDomain = ".preview.test"

func newRouterEnv(t *testing.T) *routerEnv {
	t.Helper()
	emu := sqstest.Start(t)
	e := &routerEnv{tokens: preview.NewTokens([]byte("fleet key"), time.Hour), wakes: make(chan string, 10), seen: make(chan *http.Request, 100)}
	e.table = lease.NewTable(emu.DynamoDB(), emu.CreateLeaseTable(t, "router"))
	e.leases = &countingLeases{Table: e.table}
	upgrader := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }, Subprotocols: []string{"vite-hmr"}}
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.seen <- r
		if r.Header.Get("Upgrade") != "" {
			c, err := upgrader.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			_ = c.WriteMessage(websocket.TextMessage, []byte("hello from "+r.Host))
			return
		}
		io.WriteString(w, "worker page for "+r.Host)
	})
	e.worker = httptest.NewServer(preview.NewGate(preview.GateConfig{Tokens: e.tokens, PerHost: true, Next: echo}))
	t.Cleanup(e.worker.Close)
	rt := preview.NewRouter(preview.RouterConfig{
		Tokens: e.tokens, Domain: routerDomain, Leases: e.leases, Logger: testLogger(t),
		Wake: func(_ context.Context, client, user string) error { e.wakes <- client + "/" + user; return nil },
		Observe: func(status int, upstream time.Duration) {
			e.mu.Lock()
			e.observed = append(e.observed, observed{status, upstream})
			e.mu.Unlock()
		},
		Woke: func(took time.Duration) {
			e.mu.Lock()
			e.woke = append(e.woke, took)
			e.mu.Unlock()
		},
		Health: func(ctx context.Context) error {
			_, _, err := e.table.Get(ctx, "-")
			return err
		},
	})
	e.router = httptest.NewServer(rt)
	t.Cleanup(e.router.Close)
	return e
}

// do sends a request for preview id's host (Host header) to the router.
func (e *routerEnv) do(t *testing.T, id, path string, cookie *http.Cookie, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.router.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = id + routerDomain
	for k, v := range header {
		req.Header[k] = v
	}
	if cookie != nil {
		req.AddCookie(cookie)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// dialThroughRouter opens an HMR socket for preview id's host through the router at
// routerURL, with cookie.
func dialThroughRouter(routerURL, id string, cookie *http.Cookie) (*websocket.Conn, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, Subprotocols: []string{"vite-hmr"},
		NetDialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, strings.TrimPrefix(routerURL, "http://"))
		}}
	conn, _, err := d.Dial("ws://"+id+routerDomain+"/", http.Header{"Cookie": {cookie.String()}})
	return conn, err
}

func (e *routerEnv) lease(t *testing.T, client, user string) lease.Lease {
	t.Helper()
	l, err := e.table.Take(context.Background(), lease.Lease{Preview: preview.ID(client, user), ClientID: client, UserID: user,
		Owner: "worker-1", Addr: strings.TrimPrefix(e.worker.URL, "http://")}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestRouterRefusesBeforeAnyLookup(t *testing.T) {
	e := newRouterEnv(t)
	alice, bob := preview.ID("acme", "alice"), preview.ID("acme", "bob")
	e.lease(t, "acme", "alice")
	forged := strings.Replace(e.tokens.Issue(bob), bob, alice, 1)
	tests := []struct {
		name   string
		path   string
		cookie *http.Cookie
		header http.Header
	}{
		{"no token", "/", nil, nil},
		{"a forged token", "/?preview_token=" + forged, nil, nil},
		{"another user's token", "/?preview_token=" + e.tokens.Issue(bob), nil, nil},
		{"another key's token", "/?preview_token=" + preview.NewTokens([]byte("other"), time.Hour).Issue(alice), nil, nil},
		{"another user's cookie", "/", &http.Cookie{Name: preview.CookieName, Value: e.tokens.Issue(bob)}, nil},
		{"an HMR socket without a cookie", "/", nil, http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"},
			"Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}, "Sec-Websocket-Protocol": {"vite-hmr"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.leases.reads.Load()
			resp := e.do(t, alice, tt.path, tt.cookie, tt.header)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("status %d, want 401", resp.StatusCode)
			}
			if n := e.leases.reads.Load() - before; n != 0 {
				t.Errorf("%d lease reads for a refused request, want none", n)
			}
		})
	}
	select {
	case r := <-e.seen:
		t.Errorf("a refused request reached the worker: %s %s", r.Method, r.URL)
	default:
	}
}

func TestRouterForwardsToTheOwner(t *testing.T) {
	e := newRouterEnv(t)
	alice := preview.ID("acme", "alice")
	e.lease(t, "acme", "alice")

	// The token becomes the cookie, at the router.
	resp := e.do(t, alice, "/about?x=1&preview_token="+e.tokens.Issue(alice), nil, nil)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/about?x=1" {
		t.Fatalf("token: status %d to %q, want 302 to /about?x=1", resp.StatusCode, resp.Header.Get("Location"))
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == preview.CookieName {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly {
		t.Fatalf("no HttpOnly preview cookie in %v", resp.Cookies())
	}
	reads := e.leases.reads.Load()
	for range 3 {
		resp = e.do(t, alice, "/about?x=1", cookie, nil)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || string(body) != "worker page for "+alice+routerDomain {
			t.Fatalf("status %d %q, want the worker's page under the preview's host", resp.StatusCode, body)
		}
		r := <-e.seen
		if r.URL.RequestURI() != "/about?x=1" {
			t.Errorf("the worker got %s", r.URL.RequestURI())
		}
	}
	if n := e.leases.reads.Load() - reads; n != 1 {
		t.Errorf("%d lease reads for three requests in a row, want 1 (cached)", n)
	}

	// The HMR socket, through the router and the worker's gate.
	conn, err := dialThroughRouter(e.router.URL, alice, cookie)
	if err != nil {
		t.Fatalf("HMR socket through the router: %v", err)
	}
	defer conn.Close()
	_, msg, err := conn.ReadMessage()
	if err != nil || string(msg) != "hello from "+alice+routerDomain {
		t.Fatalf("HMR message %q %v", msg, err)
	}
}

func TestRouterWakesAPreviewWithNoLiveLease(t *testing.T) {
	e := newRouterEnv(t)
	bob := preview.ID("acme", "bob")
	l := e.lease(t, "acme", "bob")
	if err := e.table.End(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	cookie := &http.Cookie{Name: preview.CookieName, Value: e.tokens.Issue(bob)}
	page := http.Header{"Sec-Fetch-Dest": {"document"}}
	for i := range 3 {
		resp := e.do(t, bob, "/", cookie, page)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "location.reload") {
			t.Fatalf("load %d: status %d, want 503 with the page that retries", i, resp.StatusCode)
		}
	}
	// An asset request the page makes by itself wakes nothing.
	e.do(t, bob, "/src/x.js", cookie, http.Header{"Sec-Fetch-Dest": {"script"}})
	select {
	case who := <-e.wakes:
		if who != "acme/bob" {
			t.Fatalf("woke %q, want acme/bob", who)
		}
	default:
		t.Fatal("no preview job sent")
	}
	select {
	case who := <-e.wakes:
		t.Fatalf("a second wake (%s) within 30 s", who)
	default:
	}
	// A preview with no item (never served, or its ended item deleted by
	// the table's TTL) and a token that names no user: nothing to wake.
	carol := preview.ID("acme", "carol")
	e.do(t, carol, "/", &http.Cookie{Name: preview.CookieName, Value: e.tokens.Issue(carol)}, page)
	select {
	case who := <-e.wakes:
		t.Fatalf("woke %q without an item or a token naming the user", who)
	default:
	}
	// The same with the cookie a worker's previewUrl gives, which names
	// the user: woken from the cookie.
	dave := preview.ID("acme", "dave")
	e.do(t, dave, "/", &http.Cookie{Name: preview.CookieName, Value: e.tokens.IssueFor("acme", "dave")}, page)
	select {
	case who := <-e.wakes:
		if who != "acme/dave" {
			t.Fatalf("woke %q, want acme/dave (from the signed cookie)", who)
		}
	default:
		t.Fatal("no preview job sent for a preview whose cookie names its user")
	}
}

func TestRouterHealth(t *testing.T) {
	e := newRouterEnv(t)
	for _, host := range []string{"", "router.internal", "10.0.0.5:8080"} {
		req, _ := http.NewRequest(http.MethodGet, e.router.URL+"/health", nil)
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"status":"ok"`) {
			t.Errorf("host %q: /health %d %s", host, resp.StatusCode, body)
		}
	}
	// A preview host's /health is the preview's (behind the gate).
	if resp := e.do(t, preview.ID("acme", "alice"), "/health", nil, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a preview host's /health without a token: %d, want 401", resp.StatusCode)
	}
}

func TestRouterHealthWithoutTheTable(t *testing.T) {
	emu := sqstest.Start(t)
	missing := lease.NewTable(emu.DynamoDB(), "no-such-lease-table")
	rt := httptest.NewServer(preview.NewRouter(preview.RouterConfig{
		Tokens: preview.NewTokens([]byte("k"), time.Hour), Domain: routerDomain, Leases: missing,
		Health: func(ctx context.Context) error { _, _, err := missing.Get(ctx, "-"); return err },
	}))
	defer rt.Close()
	resp, err := http.Get(rt.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "unhealthy") {
		t.Errorf("/health with no lease table: %d %s, want 503", resp.StatusCode, body)
	}
}

// TestRouterObservesRequestsAndWakes: every answered request reaches
// Observe with its status, a proxied one with the owner's time; a woken
// preview's first proxied request reaches Woke once.
func TestRouterObservesRequestsAndWakes(t *testing.T) {
	e := newRouterEnv(t)
	bob := preview.ID("acme", "bob")
	l := e.lease(t, "acme", "bob")
	if err := e.table.End(context.Background(), l); err != nil {
		t.Fatal(err)
	}
	cookie := &http.Cookie{Name: preview.CookieName, Value: e.tokens.Issue(bob)}
	page := http.Header{"Sec-Fetch-Dest": {"document"}}
	e.do(t, bob, "/", nil, page)    // 401
	e.do(t, bob, "/", cookie, page) // 503, woken
	<-e.wakes
	e.lease(t, "acme", "bob") // a worker took the job
	// Until the router's cache of the ended lease runs out: 503s.
	wait.For(t, 10*time.Second, "the router to proxy to the new owner", func() bool {
		return e.do(t, bob, "/", cookie, page).StatusCode == http.StatusOK
	})
	e.do(t, bob, "/", cookie, page) // proxied again: no second wake time
	e.mu.Lock()
	defer e.mu.Unlock()
	n := len(e.observed)
	if n < 4 || e.observed[0].status != http.StatusUnauthorized {
		t.Fatalf("observed %+v, want a 401 first and at least 4 requests", e.observed)
	}
	for i, o := range e.observed[1 : n-2] {
		if o.status != http.StatusServiceUnavailable || o.upstream != 0 {
			t.Errorf("request %d before the owner served observed as %+v, want 503 and no upstream time", i+1, o)
		}
	}
	for _, o := range e.observed[n-2:] {
		if o.status != http.StatusOK || o.upstream <= 0 {
			t.Errorf("a proxied request observed as %+v, want 200 with the owner's time", o)
		}
	}
	if len(e.woke) != 1 || e.woke[0] <= 0 {
		t.Errorf("Woke told %v, want one wake time", e.woke)
	}
}

// TestRouterClosesSocketsWhenTheLeaseMoves: an HMR socket open through the
// router to worker one is closed once alice's lease moves to worker two
// (within a lease read or two), and the page's next socket reaches worker
// two; a socket of bob's, whose lease stays, stays open.
func TestRouterClosesSocketsWhenTheLeaseMoves(t *testing.T) {
	emu := sqstest.Start(t)
	table := lease.NewTable(emu.DynamoDB(), emu.CreateLeaseTable(t, "moves"))
	tokens := preview.NewTokens([]byte("fleet key"), time.Hour)
	upgrader := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }, Subprotocols: []string{"vite-hmr"}}
	holdOpen := func(name string) http.Handler {
		return preview.NewGate(preview.GateConfig{Tokens: tokens, PerHost: true, Next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, err := upgrader.Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			_ = c.WriteMessage(websocket.TextMessage, []byte(name))
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					return
				}
			}
		})})
	}
	one, two := httptest.NewServer(holdOpen("one")), httptest.NewServer(holdOpen("two"))
	t.Cleanup(one.Close)
	t.Cleanup(two.Close)
	const ttl = 200 * time.Millisecond
	router := httptest.NewServer(preview.NewRouter(preview.RouterConfig{Tokens: tokens, Domain: routerDomain, Leases: table,
		CacheTTL: ttl, Logger: testLogger(t)}))
	t.Cleanup(router.Close)
	take := func(user string, to *httptest.Server, owner string) {
		t.Helper()
		if _, err := table.Take(context.Background(), lease.Lease{Preview: preview.ID("acme", user), ClientID: "acme", UserID: user,
			Owner: owner, Addr: strings.TrimPrefix(to.URL, "http://")}, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	dial := func(user string) (*websocket.Conn, string) {
		t.Helper()
		cookie := &http.Cookie{Name: preview.CookieName, Value: tokens.IssueFor("acme", user)}
		conn, err := dialThroughRouter(router.URL, preview.ID("acme", user), cookie)
		if err != nil {
			t.Fatalf("%s's socket through the router: %v", user, err)
		}
		t.Cleanup(func() { conn.Close() })
		_, msg, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("%s's socket: first message: %v", user, err)
		}
		return conn, string(msg)
	}
	take("alice", one, "worker-1")
	take("bob", one, "worker-1")
	alice, at := dial("alice")
	bob, _ := dial("bob")
	if at != "one" {
		t.Fatalf("alice's socket reached worker %s, want one", at)
	}

	take("alice", two, "worker-2")
	moved := time.Now()
	_ = alice.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := alice.ReadMessage(); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("alice's socket to worker one still open 5 s after her lease moved (read: %v)", err)
	}
	t.Logf("alice's socket closed %s after her lease moved", time.Since(moved).Round(time.Millisecond))
	if _, at := dial("alice"); at != "two" {
		t.Errorf("alice's next socket reached worker %s, want two", at)
	}
	_ = bob.SetReadDeadline(time.Now().Add(3 * ttl))
	if _, _, err := bob.ReadMessage(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("bob's socket, whose lease stayed, ended: %v", err)
	}
}
