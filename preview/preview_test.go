package preview_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/preview"
	"github.com/webordinary/claude-code-astro/preview/previewtest"
)

// TestProxyStartingPage: while a preview's dev server is not ready, or does
// not answer, every request gets the "starting" page that retries by
// itself, and Vite's HMR socket is closed with 1012.
func TestProxyStartingPage(t *testing.T) {
	deadPort := previewtest.FreePort(t) // nothing listens there
	dead := &url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(deadPort))}

	tests := []struct {
		name  string
		setup func(t *testing.T, p *sitePreview) // before the requests
	}{
		// The page load starts it (Lookup finds it), in the background.
		{"dev server not started", func(*testing.T, *sitePreview) {}},
		{"dev server failed to start", func(t *testing.T, p *sitePreview) {
			if err := p.Target(context.Background(), p.target); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("Target of a project without astro = %v, want os.ErrNotExist", err)
			}
		}},
		{"dev server unreachable", func(t *testing.T, p *sitePreview) {
			preview.ServeStandIn(t, p.Servers, p.target.ID, dead)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var act counter
			p := newSitePreview(t, previewtest.Default(), t.TempDir(), preview.ServersConfig{}, &act) // no astro there
			tt.setup(t, p)

			status, h, body := p.get(t, "/some/page", "preview.example.com")
			if status != http.StatusServiceUnavailable {
				t.Errorf("status = %d, want 503", status)
			}
			if got := h.Get("Retry-After"); got != "2" {
				t.Errorf("Retry-After = %q, want 2", got)
			}
			if got := h.Get("Content-Type"); !strings.HasPrefix(got, "text/html") {
				t.Errorf("Content-Type = %q, want text/html", got)
			}
			for _, want := range []string{`http-equiv="refresh" content="2"`, "location.reload()"} {
				if !strings.Contains(body, want) {
					t.Errorf("starting page lacks the self-retry %q:\n%s", want, body)
				}
			}

			// Vite's HMR socket is opened and closed at once with 1012
			// (service restart): the page's client polls and reloads when
			// the dev server answers, instead of never updating again.
			conn, _, err := previewtest.DialWSWith(p.base, p.header(""), "vite-hmr", "")
			if err != nil {
				t.Fatalf("HMR socket with no dev server: %v, want it opened and closed", err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, _, err := conn.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseServiceRestart) {
				t.Errorf("HMR socket with no dev server: %v, want a close with 1012", err)
			}
			conn.Close()

			if got := act.begun.Load(); got != 2 {
				t.Errorf("Activity.Begin called %d times, want 2", got)
			}
			wait.For(t, 5*time.Second, "every request to end its activity", func() bool { return act.open.Load() == 0 })
		})
	}
}

func TestServersStartFailures(t *testing.T) {
	tests := []struct {
		name    string
		cfg     func(t *testing.T, held *int) preview.ServersConfig
		dir     func(t *testing.T) string
		wantErr error
	}{
		{
			// Another process takes every port a dev server finds free before
			// it listens there: it moves to another port, up to a bound, then
			// fails.
			name: "port in use",
			cfg: func(t *testing.T, held *int) preview.ServersConfig {
				return preview.ServersConfig{BeforeStart: func(port int) {
					l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
					if err != nil {
						t.Errorf("take port %d: %v", port, err)
						return
					}
					t.Cleanup(func() { l.Close() })
					go func() { // hang up on the readiness probe at once
						for {
							c, err := l.Accept()
							if err != nil {
								return
							}
							c.Close()
						}
					}()
					*held = port
				}}
			},
			dir:     portBoundSite,
			wantErr: preview.ErrPortInUse,
		},
		{
			name:    "no astro executable",
			cfg:     func(*testing.T, *int) preview.ServersConfig { return preview.ServersConfig{} },
			dir:     func(t *testing.T) string { return t.TempDir() },
			wantErr: os.ErrNotExist,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var held int
			p := newSitePreview(t, previewtest.Default(), tt.dir(t), tt.cfg(t, &held), nil)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			err := p.Target(ctx, p.target)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Target error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == preview.ErrPortInUse && !strings.Contains(err.Error(), strconv.Itoa(held)) {
				t.Errorf("error %q does not name port %d", err, held)
			}
			if got := p.state(); got != preview.StateFailed {
				t.Errorf("State = %q, want %q", got, preview.StateFailed)
			}
			if _, ok := p.upstream(); ok {
				t.Error("View reports ready after a failed start")
			}
		})
	}
}

// portBoundSite returns a project whose astro only listens where the
// launcher asks, and fails as Vite with strictPort does when it cannot: it
// says the port is in use and exits. (Each of the attempts of the port-in-use
// test would otherwise start a real Astro.)
func portBoundSite(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"package.json":                    `{"name":"site","private":true,"type":"module"}`,
		"node_modules/astro/package.json": `{"name":"astro","version":"0.0.0","type":"module","main":"./index.js"}`,
		"node_modules/astro/index.js": `import http from 'node:http';
export async function dev({ server: { host, port } }) {
  const srv = http.createServer((req, res) => res.end('stand-in'));
  srv.on('error', () => { console.error('Error: Port ' + port + ' is already in use'); process.exit(1); });
  srv.listen(port, host);
}
`,
	}
	for name, content := range files {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestServersClosed(t *testing.T) {
	p := newSitePreview(t, previewtest.Default(), t.TempDir(), preview.ServersConfig{}, nil)
	if got := p.state(); got != preview.StateStopped {
		t.Errorf("State before Target = %q, want stopped", got)
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := p.Target(context.Background(), p.target); !errors.Is(err, preview.ErrClosed) {
		t.Errorf("Target after Close = %v, want ErrClosed", err)
	}
	if err := p.Ensure(context.Background(), p.target.ID); !errors.Is(err, preview.ErrClosed) {
		t.Errorf("Ensure after Close = %v, want ErrClosed", err)
	}
}

// TestDevServerProxy runs one real Astro dev server behind the Gate and the
// Proxy and checks, in order, what the live preview needs.
func TestDevServerProxy(t *testing.T) {
	for _, s := range previewtest.Sites() {
		t.Run(s.Name, func(t *testing.T) {
			site := s.Prepare(t)
			var act counter
			p := newSitePreview(t, s, site, preview.ServersConfig{}, &act)

			// Before Target: the starting page.
			if status, _, _ := p.fetch(t, "/"); status != http.StatusServiceUnavailable {
				t.Fatalf("before Target: status %d, want 503", status)
			}

			p.start(t)

			t.Run("ready", func(t *testing.T) {
				if got := p.state(); got != preview.StateReady {
					t.Errorf("State = %q, want ready", got)
				}
				up, ok := p.upstream()
				if !ok || up.URL.Hostname() != "127.0.0.1" {
					t.Errorf("View = %v, %v; want a loopback URL", up.URL, ok)
				}
				if info, _ := p.info(); info.Dir != site {
					t.Errorf("Dir = %q, want %q", info.Dir, site)
				}
				if p.pid() <= 0 {
					t.Errorf("PID = %d", p.pid())
				}
			})

			t.Run("page through the proxy", func(t *testing.T) {
				status, _, body := p.get(t, "/", "")
				if status != http.StatusOK || !strings.Contains(body, heading) {
					t.Fatalf("status %d, heading found %v", status, strings.Contains(body, heading))
				}
			})

			t.Run("public host name", func(t *testing.T) {
				const host = "preview.example.com"
				status, _, body := p.get(t, "/", host)
				if status != http.StatusOK || !strings.Contains(body, heading) {
					t.Errorf("through the proxy with Host %s: status %d, heading found %v", host, status, strings.Contains(body, heading))
				}
				// Vite itself refuses that host (even with the dev server's secret):
				// the proxy's Host rewrite is what works.
				up, _ := p.upstream()
				h := up.Header()
				h.Set("Host", host)
				status, _, body = previewtest.GetWith(t, up.URL.String(), h)
				if status != http.StatusForbidden {
					t.Errorf("direct with Host %s: status %d, want 403 (%s)", host, status, body)
				}
			})

			t.Run("target same dir is a no-op", func(t *testing.T) {
				pid := p.pid()
				p.start(t)
				if got := p.pid(); got != pid {
					t.Errorf("PID changed from %d to %d", pid, got)
				}
			})

			t.Run("hmr websocket through the proxy", func(t *testing.T) {
				// A browser-like socket: Origin and token (so the query string must
				// reach Vite), subprotocol vite-hmr, public Host.
				sock := previewtest.DialHMRWith(t, p.base, p.header("preview.example.com"))
				sock.Next(t, 10*time.Second, "connected")

				wait.For(t, 5*time.Second, "only the socket to be open", func() bool { return act.open.Load() == 1 })

				setHeading(t, site, "Edited over HMR")
				m := sock.Next(t, 15*time.Second, "update", "full-reload")
				t.Logf("HMR message after the edit: %s", m.Raw)

				status, _, body := p.get(t, "/", "")
				if status != http.StatusOK || !strings.Contains(body, "Edited over HMR") {
					t.Errorf("page after the edit: status %d, new heading found %v", status, strings.Contains(body, "Edited over HMR"))
				}
				if got := act.open.Load(); got != 1 {
					t.Errorf("open activities with the socket open = %d, want 1", got)
				}
				sock.Close()
				wait.For(t, 10*time.Second, "the closed socket to end its activity", func() bool { return act.open.Load() == 0 })
			})

			t.Run("hmr websocket without token is refused", func(t *testing.T) {
				// Vite refuses a browser's socket without its token; the proxy
				// answers such a socket by closing it with 1012, as for a page of
				// a dev server that restarted (whose token is stale): never with
				// Vite's "connected".
				conn, _, err := previewtest.DialWSWith(p.base, p.header(""), "vite-hmr", "")
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				defer conn.Close()
				_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, msg, err := conn.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseServiceRestart) {
					t.Errorf("socket without the token: message %q, error %v; want a close with 1012, the token test above proves nothing otherwise", msg, err)
				}
			})

			t.Run("restart after the dev server is killed", func(t *testing.T) {
				old := p.pid()
				if err := syscall.Kill(-old, syscall.SIGKILL); err != nil {
					t.Fatalf("kill process group %d: %v", old, err)
				}
				wait.For(t, 60*time.Second, "a new dev server to be ready", func() bool {
					pid := p.pid()
					return pid != 0 && pid != old && p.state() == preview.StateReady
				})
				if groupAlive(old) {
					t.Errorf("old process group %d still alive", old)
				}
				status, _, body := p.get(t, "/", "")
				if status != http.StatusOK || !strings.Contains(body, "Edited over HMR") {
					t.Errorf("after the restart: status %d, heading found %v", status, strings.Contains(body, "Edited over HMR"))
				}
			})

			t.Run("stop leaves no process", func(t *testing.T) {
				pid := p.pid()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if err := p.Stop(ctx, p.target.ID); err != nil {
					t.Fatal(err)
				}
				if groupAlive(pid) {
					t.Errorf("process group %d alive after Stop", pid)
				}
				if got := p.state(); got != preview.StateStopped {
					t.Errorf("State = %q, want stopped", got)
				}
				if status, _, _ := p.fetch(t, "/"); status != http.StatusServiceUnavailable {
					t.Errorf("after Stop: status %d, want 503", status)
				}
			})
		})
	}
}

func TestDevServerRetarget(t *testing.T) {
	first := previewtest.PrepareSite(t)
	second := previewtest.PrepareSite(t)
	setHeading(t, second, "Second Site")
	p := newSitePreview(t, previewtest.Default(), first, preview.ServersConfig{}, nil)

	p.start(t)
	firstPID := p.pid()
	if _, _, body := p.get(t, "/", ""); !strings.Contains(body, heading) {
		t.Fatal("first site not served")
	}

	p.startIn(t, second)
	if groupAlive(firstPID) {
		t.Errorf("first dev server's group %d still alive after re-target", firstPID)
	}
	if info, _ := p.info(); info.Dir != second {
		t.Errorf("Dir = %q, want %q", info.Dir, second)
	}
	status, _, body := p.get(t, "/", "")
	if status != http.StatusOK || !strings.Contains(body, "Second Site") {
		t.Errorf("after re-target: status %d, second heading found %v", status, strings.Contains(body, "Second Site"))
	}
	if strings.Contains(body, first+string(filepath.Separator)) {
		t.Error("page still refers to the first site's directory")
	}
}

// TestHMRSocketThatCannotReachItsDevServerMakesThePageReload: Vite's
// client opens its HMR socket once and never again if it fails to open, so a
// page whose socket is refused would never update. The proxy opens such a
// socket itself and closes it with 1012 (service restart), after which the
// client polls with vite-ping and reloads the page: while the dev server is
// not ready, and when a re-targeted dev server (a new process, with a new
// token) refuses the old page's token. A ping fails at once when no dev
// server runs; one sent while the dev server starts is held and answered
// once it is ready, as is the starting page's poll, so the page reloads as
// soon as it can load, and only then.
func TestHMRSocketThatCannotReachItsDevServerMakesThePageReload(t *testing.T) {
	first := previewtest.PrepareSite(t)
	second := previewtest.PrepareSite(t)
	setHeading(t, second, "Second Site")
	p := newSitePreview(t, previewtest.Default(), first, preview.ServersConfig{}, nil)

	wantRestart := func(what, token string) {
		t.Helper()
		conn, resp, err := previewtest.DialWSWith(p.base, p.header(""), "vite-hmr", token)
		if err != nil {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			t.Fatalf("%s: HMR socket refused (%v, status %d): the page would never update", what, err, status)
		}
		defer conn.Close()
		if conn.Subprotocol() != "vite-hmr" {
			t.Errorf("%s: subprotocol %q", what, conn.Subprotocol())
		}
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, _, err = conn.ReadMessage()
		if !websocket.IsCloseError(err, websocket.CloseServiceRestart) {
			t.Errorf("%s: read = %v, want a close with 1012 (service restart)", what, err)
		}
	}
	wantPing := func(what string, ok bool) {
		t.Helper()
		conn, resp, err := previewtest.DialWSWith(p.base, p.header(""), "vite-ping", "")
		if err == nil {
			conn.Close()
		}
		if (err == nil) != ok {
			status := 0
			if resp != nil {
				status = resp.StatusCode
			}
			t.Errorf("%s: ping answered = %v (%v, status %d), want %v", what, err == nil, err, status, ok)
		}
	}

	wantRestart("no dev server yet", "any-token")
	wantPing("no dev server yet", false)

	// A ping while the dev server starts: held, then answered once it is
	// ready.
	started := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		started <- p.Target(ctx, p.target)
	}()
	wait.For(t, 30*time.Second, "the dev server to be starting", func() bool { return p.state() == preview.StateStarting })
	// The starting page's poll, at the same time: held too.
	polled := make(chan int, 1)
	go func() {
		req, err := http.NewRequest(http.MethodHead, p.base.String()+"/", nil)
		if err != nil {
			polled <- 0
			return
		}
		req.Header = p.header("")
		req.Header.Set(preview.WaitHeader, "ready")
		req.Header.Set("Sec-Fetch-Dest", "empty") // a fetch, not a page load
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			polled <- 0
			return
		}
		resp.Body.Close()
		polled <- resp.StatusCode
	}()
	wantPing("dev server starting", true)
	if _, ready := p.upstream(); !ready {
		t.Error("a ping sent while the dev server started was answered before it was ready: the page would reload onto the starting page")
	}
	if code := <-polled; code != http.StatusOK {
		t.Errorf("the starting page's poll sent while the dev server started: status %d, want 200 once it is ready", code)
	}
	if err := <-started; err != nil {
		t.Fatalf("start the dev server: %v", err)
	}

	p.start(t)
	firstToken := previewtest.WSTokenWith(t, p.base, p.header(""))
	live := previewtest.DialHMRWith(t, p.base, p.header(""))
	if m := live.Next(t, 15*time.Second, "connected"); m.Type != "connected" {
		t.Fatalf("first HMR socket: %+v", m)
	}
	wantPing("first dev server ready", true)

	p.startIn(t, second)
	wantRestart("the first page's token at the second dev server", firstToken)
	wantPing("second dev server ready", true)
	fresh := previewtest.DialHMRWith(t, p.base, p.header(""))
	if m := fresh.Next(t, 15*time.Second, "connected"); m.Type != "connected" {
		t.Fatalf("HMR socket with the second dev server's token: %+v", m)
	}
}

// TestDevServerCrashLoop: a dev server that dies before it is ready is
// restarted with backoff, Target reports why it is not ready, and once the
// project is fixed a Target on the same directory starts it at once instead
// of waiting out the backoff.
func TestDevServerCrashLoop(t *testing.T) {
	site := previewtest.PrepareSite(t)
	configPath := filepath.Join(site, "astro.config.mjs")
	good, err := os.ReadFile(configPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(configPath, []byte("throw new Error('broken config for the test');\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := newSitePreview(t, previewtest.Default(), site, preview.ServersConfig{
		ReadyTimeout: 90 * time.Second,
		MinBackoff:   time.Hour, // only a Target can cut it short
		MaxBackoff:   time.Hour,
	}, nil)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Target(ctx, p.target) }()
	wait.For(t, 60*time.Second, "the broken dev server to die and wait for a restart", func() bool {
		return p.state() == preview.StateRestarting && p.pid() == 0
	})
	// A ping of the page's Vite client is held for a restarting dev
	// server only up to PollHold, then refused (the client pings again).
	held, _ := serveGated(t, preview.ProxyConfig{Servers: p.Servers, Logger: testLogger(t), PollHold: 300 * time.Millisecond}, false)
	if conn, resp, err := previewtest.DialWSWith(held, p.header(""), "vite-ping", ""); err == nil {
		conn.Close()
		t.Error("a ping of a crash-looping dev server was answered")
	} else if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a ping of a crash-looping dev server: %v, want 503 after PollHold", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Target on a crashing project = %v, want context.Canceled", err)
	}
	if _, ok := p.upstream(); ok {
		t.Error("View ready while the dev server crashes")
	}

	if err := os.WriteFile(configPath, good, 0o644); err != nil {
		t.Fatal(err)
	}
	p.start(t) // would wait an hour without the kick
	if got := p.state(); got != preview.StateReady {
		t.Errorf("State = %q, want ready", got)
	}
}
