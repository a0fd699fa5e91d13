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

func TestProxyStartingPage(t *testing.T) {
	deadPort := previewtest.FreePort(t) // nothing listens there
	dead := &url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(deadPort))}
	idle := preview.NewDevServer(preview.DevServerConfig{Port: previewtest.FreePort(t)})

	tests := []struct {
		name     string
		upstream func() (preview.Upstream, bool)
	}{
		{"no upstream", nil},
		{"upstream not ready", func() (preview.Upstream, bool) { return preview.Upstream{}, false }},
		{"dev server never targeted", idle.Upstream},
		{"upstream unreachable", func() (preview.Upstream, bool) { return preview.Upstream{URL: dead}, true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var act counter
			base := serveProxy(t, preview.NewProxy(preview.ProxyConfig{
				Upstream: tt.upstream, Activity: &act, Logger: testLogger(t),
			}))

			status, h, body := previewtest.Get(t, base.JoinPath("/some/page").String(), "preview.example.com")
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
			wsURL := *base
			wsURL.Scheme = "ws"
			dialer := websocket.Dialer{HandshakeTimeout: 5 * time.Second, Subprotocols: []string{"vite-hmr"}}
			conn, _, err := dialer.Dial(wsURL.String(), nil)
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

func TestDevServerStartFailures(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T) (port int, dir string)
		wantErr error
	}{
		{
			name: "port in use",
			setup: func(t *testing.T) (int, string) {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { l.Close() })
				return l.Addr().(*net.TCPAddr).Port, t.TempDir()
			},
			wantErr: preview.ErrPortInUse,
		},
		{
			name: "no astro executable",
			setup: func(t *testing.T) (int, string) {
				return previewtest.FreePort(t), t.TempDir()
			},
			wantErr: os.ErrNotExist,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port, dir := tt.setup(t)
			ds := preview.NewDevServer(preview.DevServerConfig{Port: port, Home: t.TempDir(), Logger: testLogger(t)})
			t.Cleanup(func() {
				if err := ds.Close(context.Background()); err != nil {
					t.Errorf("close: %v", err)
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := ds.Target(ctx, dir)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Target error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == preview.ErrPortInUse && !strings.Contains(err.Error(), strconv.Itoa(port)) {
				t.Errorf("error %q does not name port %d", err, port)
			}
			if got := ds.State(); got != preview.StateFailed {
				t.Errorf("State = %q, want %q", got, preview.StateFailed)
			}
			if _, ok := ds.URL(); ok {
				t.Error("URL reports ready after a failed start")
			}
		})
	}
}

func TestDevServerClosed(t *testing.T) {
	ds := preview.NewDevServer(preview.DevServerConfig{Port: previewtest.FreePort(t)})
	if got := ds.State(); got != preview.StateStopped {
		t.Errorf("State before Target = %q, want stopped", got)
	}
	if err := ds.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := ds.Target(context.Background(), t.TempDir()); !errors.Is(err, preview.ErrClosed) {
		t.Errorf("Target after Close = %v, want ErrClosed", err)
	}
}

// TestDevServerProxy runs one real Astro dev server behind the Proxy and
// checks, in order, what the live preview needs.
func TestDevServerProxy(t *testing.T) {
	for _, s := range previewtest.Sites() {
		t.Run(s.Name, func(t *testing.T) {
			site := s.Prepare(t)
			ds := newDevServerFor(t, s)
			var act counter
			base := serveProxy(t, preview.NewProxy(preview.ProxyConfig{Upstream: ds.Upstream, Activity: &act, Logger: testLogger(t)}))

			// Before Target: the starting page.
			if status, _, _ := previewtest.Get(t, base.String(), ""); status != http.StatusServiceUnavailable {
				t.Fatalf("before Target: status %d, want 503", status)
			}

			target(t, ds, site)

			t.Run("ready", func(t *testing.T) {
				if got := ds.State(); got != preview.StateReady {
					t.Errorf("State = %q, want ready", got)
				}
				u, ok := ds.URL()
				if !ok || u.Hostname() != "127.0.0.1" {
					t.Errorf("URL = %v, %v; want a loopback URL", u, ok)
				}
				if got := ds.ProjectDir(); got != site {
					t.Errorf("ProjectDir = %q, want %q", got, site)
				}
				if ds.PID() <= 0 {
					t.Errorf("PID = %d", ds.PID())
				}
			})

			t.Run("page through the proxy", func(t *testing.T) {
				status, _, body := previewtest.Get(t, base.String(), "")
				if status != http.StatusOK || !strings.Contains(body, heading) {
					t.Fatalf("status %d, heading found %v", status, strings.Contains(body, heading))
				}
			})

			t.Run("public host name", func(t *testing.T) {
				const host = "preview.example.com"
				status, _, body := previewtest.Get(t, base.String(), host)
				if status != http.StatusOK || !strings.Contains(body, heading) {
					t.Errorf("through the proxy with Host %s: status %d, heading found %v", host, status, strings.Contains(body, heading))
				}
				// Vite itself refuses that host (even with the dev server's secret):
				// the proxy's Host rewrite is what works.
				up, _ := ds.Upstream()
				h := up.Header()
				h.Set("Host", host)
				status, _, body = previewtest.GetWith(t, up.URL.String(), h)
				if status != http.StatusForbidden {
					t.Errorf("direct with Host %s: status %d, want 403 (%s)", host, status, body)
				}
			})

			t.Run("target same dir is a no-op", func(t *testing.T) {
				pid := ds.PID()
				target(t, ds, site)
				if got := ds.PID(); got != pid {
					t.Errorf("PID changed from %d to %d", pid, got)
				}
			})

			t.Run("hmr websocket through the proxy", func(t *testing.T) {
				// A browser-like socket: Origin and token (so the query string must
				// reach Vite), subprotocol vite-hmr, public Host.
				sock := previewtest.DialHMR(t, base, "preview.example.com")
				sock.Next(t, 10*time.Second, "connected")

				wait.For(t, 5*time.Second, "only the socket to be open", func() bool { return act.open.Load() == 1 })

				setHeading(t, site, "Edited over HMR")
				m := sock.Next(t, 15*time.Second, "update", "full-reload")
				t.Logf("HMR message after the edit: %s", m.Raw)

				status, _, body := previewtest.Get(t, base.String(), "")
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
				conn, _, err := previewtest.DialWS(base, "", "vite-hmr", "")
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
				old := ds.PID()
				if err := syscall.Kill(-old, syscall.SIGKILL); err != nil {
					t.Fatalf("kill process group %d: %v", old, err)
				}
				wait.For(t, 60*time.Second, "a new dev server to be ready", func() bool {
					pid := ds.PID()
					return pid != 0 && pid != old && ds.State() == preview.StateReady
				})
				if groupAlive(old) {
					t.Errorf("old process group %d still alive", old)
				}
				status, _, body := previewtest.Get(t, base.String(), "")
				if status != http.StatusOK || !strings.Contains(body, "Edited over HMR") {
					t.Errorf("after the restart: status %d, heading found %v", status, strings.Contains(body, "Edited over HMR"))
				}
			})

			t.Run("close leaves no process", func(t *testing.T) {
				pid := ds.PID()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if err := ds.Close(ctx); err != nil {
					t.Fatal(err)
				}
				if groupAlive(pid) {
					t.Errorf("process group %d alive after Close", pid)
				}
				if got := ds.State(); got != preview.StateStopped {
					t.Errorf("State = %q, want stopped", got)
				}
				if status, _, _ := previewtest.Get(t, base.String(), ""); status != http.StatusServiceUnavailable {
					t.Errorf("after Close: status %d, want 503", status)
				}
			})
		})
	}
}

func TestDevServerRetarget(t *testing.T) {
	first := previewtest.PrepareSite(t)
	second := previewtest.PrepareSite(t)
	setHeading(t, second, "Second Site")
	ds := newDevServer(t)
	base := serveProxy(t, preview.NewProxy(preview.ProxyConfig{Upstream: ds.Upstream, Logger: testLogger(t)}))

	target(t, ds, first)
	firstPID := ds.PID()
	if _, _, body := previewtest.Get(t, base.String(), ""); !strings.Contains(body, heading) {
		t.Fatal("first site not served")
	}

	target(t, ds, second)
	if groupAlive(firstPID) {
		t.Errorf("first dev server's group %d still alive after re-target", firstPID)
	}
	if got := ds.ProjectDir(); got != second {
		t.Errorf("ProjectDir = %q, want %q", got, second)
	}
	status, _, body := previewtest.Get(t, base.String(), "")
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
// token) refuses the old page's token. Pings fail until the dev server is
// ready, so the page reloads only once it can load.
func TestHMRSocketThatCannotReachItsDevServerMakesThePageReload(t *testing.T) {
	first := previewtest.PrepareSite(t)
	second := previewtest.PrepareSite(t)
	setHeading(t, second, "Second Site")
	ds := newDevServer(t)
	base := serveProxy(t, preview.NewProxy(preview.ProxyConfig{Upstream: ds.Upstream, Logger: testLogger(t)}))

	wantRestart := func(what, token string) {
		t.Helper()
		conn, resp, err := previewtest.DialWS(base, "", "vite-hmr", token)
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
		conn, resp, err := previewtest.DialWS(base, "", "vite-ping", "")
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

	target(t, ds, first)
	firstToken := previewtest.WSToken(t, base)
	live := previewtest.DialHMR(t, base, "")
	if m := live.Next(t, 15*time.Second, "connected"); m.Type != "connected" {
		t.Fatalf("first HMR socket: %+v", m)
	}
	wantPing("first dev server ready", true)

	target(t, ds, second)
	wantRestart("the first page's token at the second dev server", firstToken)
	wantPing("second dev server ready", true)
	fresh := previewtest.DialHMR(t, base, "")
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
	ds := preview.NewDevServer(preview.DevServerConfig{
		Port:         previewtest.FreePort(t),
		PATH:         previewtest.NodePATH(t),
		Home:         t.TempDir(),
		Logger:       testLogger(t),
		ReadyTimeout: 90 * time.Second,
		MinBackoff:   time.Hour, // only a Target can cut it short
		MaxBackoff:   time.Hour,
	})
	t.Cleanup(func() {
		if err := ds.Close(context.Background()); err != nil {
			t.Errorf("close: %v", err)
		}
	})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ds.Target(ctx, site) }()
	wait.For(t, 60*time.Second, "the broken dev server to die and wait for a restart", func() bool {
		return ds.State() == preview.StateRestarting && ds.PID() == 0
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Target on a crashing project = %v, want context.Canceled", err)
	}
	if _, ok := ds.URL(); ok {
		t.Error("URL ready while the dev server crashes")
	}

	if err := os.WriteFile(configPath, good, 0o644); err != nil {
		t.Fatal(err)
	}
	target(t, ds, site) // would wait an hour without the kick
	if got := ds.State(); got != preview.StateReady {
		t.Errorf("State = %q, want ready", got)
	}
}
