package preview

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Activity is told about every request the Proxy serves, so that an idle
// timer can tell when nobody watches the preview. Begin is called when a
// request starts and the returned end func when its handler returns; for a
// WebSocket upgrade (Vite's HMR socket) that is when the socket closes, or
// ViewMax after its browser's last page load if that comes first: a tab left
// open is no activity for ever. Implementations must be safe for concurrent
// use.
type Activity interface {
	Begin() (end func())
}

// DefaultRetryAfter is the pause the "starting" page asks the browser for.
const DefaultRetryAfter = 2 * time.Second

// ProxyConfig configures a Proxy.
type ProxyConfig struct {
	// Servers runs the dev servers: each request goes to the one of its
	// preview (PreviewID in the request's context, as a Gate sets it), and a
	// page load of a preview whose dev server does not run starts it.
	// Required.
	Servers *Servers
	// Activity, if not nil, is told about every request.
	Activity Activity
	// ViewMax (PREVIEW_VIEW_MAX) is how long after its browser's last page
	// load an open WebSocket still counts as a view, for Activity and for
	// the dev server's idle stop. Zero means config.Default()'s. Whatever it
	// is, a socket is closed when the token or cookie that opened it
	// expires.
	ViewMax time.Duration
	// Logger receives proxy errors. Nil discards them.
	Logger *slog.Logger
	// RetryAfter is how long the "starting" page waits before it retries.
	// Zero means DefaultRetryAfter.
	RetryAfter time.Duration
	// PollHold is how long a poll that waits for the preview (see
	// waitsForReady) is held for a dev server that is starting before it
	// gets 503. Zero means DefaultPollHold.
	PollHold time.Duration
}

// DefaultPollHold bounds how long the proxy holds a poll for a starting
// dev server (ProxyConfig.PollHold).
const DefaultPollHold = 10 * time.Second

// WaitHeader, with the value "ready", marks the starting page's poll (a
// HEAD of the page), which the proxy holds while the dev server starts.
const WaitHeader = "X-Preview-Wait"

// Proxy is the live preview: an http.Handler that forwards every request,
// WebSocket upgrades included, to the dev server of its preview. It
// rewrites the Host header to the dev server's own address, which Vite
// requires, so the preview works under any public host name; it keeps the
// path, query string and WebSocket subprotocol. While no dev server is ready
// it answers 503 with a small page that reloads itself.
//
// Mount it at the root of its own port or host: Vite's pages and HMR socket
// use absolute paths. Create it with NewProxy; it is safe for concurrent use.
type Proxy struct {
	servers    *Servers
	activity   Activity
	views      *views
	log        *slog.Logger
	retryAfter time.Duration
	pollHold   time.Duration
	page       []byte
	rp         *httputil.ReverseProxy
}

// upstreamKey is the request context key under which ServeHTTP hands the
// upstream it checked to the rewrite.
type upstreamKey struct{}

// NewProxy returns a Proxy.
func NewProxy(cfg ProxyConfig) *Proxy {
	p := &Proxy{
		servers:    cfg.Servers,
		activity:   cfg.Activity,
		views:      newViews(cfg.ViewMax),
		log:        cfg.Logger,
		retryAfter: cfg.RetryAfter,
		pollHold:   cfg.PollHold,
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.retryAfter <= 0 {
		p.retryAfter = DefaultRetryAfter
	}
	if p.pollHold <= 0 {
		p.pollHold = DefaultPollHold
	}
	p.page = startingPage(p.retryAfter)
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			up := pr.In.Context().Value(upstreamKey{}).(Upstream)
			pr.SetURL(up.URL) // also sets Host to the dev server's, which Vite requires
			pr.SetXForwarded()
			dropPreviewCookie(pr.Out) // the worker's business, not the site's
			// Only the worker's proxy knows the dev server's secret; whatever
			// the client sent under that name goes.
			pr.Out.Header.Del(SecretHeader)
			pr.Out.Header.Del(WaitHeader)
			if up.guard != nil {
				pr.Out.Header.Set(SecretHeader, up.guard.secret)
			}
		},
		Transport: &http.Transport{
			Proxy:                 nil,         // loopback only, never through an environment proxy
			DialContext:           dialChecked, // only to a socket of the dev server's uid
			MaxIdleConns:          64,
			MaxIdleConnsPerHost:   64, // a dev page loads dozens of modules at once
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
			DisableCompression:    true, // pass encodings through untouched
		},
		ModifyResponse: refuseFailedHMR,
		ErrorHandler:   p.proxyError,
	}
	return p
}

// HMR sockets. Vite's client in a page opens its HMR socket (subprotocol
// vite-hmr, with the page's token) once, and never tries again if that socket
// fails to open: such a page never updates. A socket that opens and then
// closes is different: the client polls the server (subprotocol vite-ping)
// and reloads the page once it answers, and the reloaded page gets the
// current dev server's token. A page can reach a dev server that is starting
// (after a restart or a re-target), or one that refuses its token (each dev
// server process has its own), so the proxy opens such a socket itself and
// closes it at once, with code 1012 (service restart): the page reloads when
// the dev server is back.
//
// The client pings once a second, and the starting page polls every
// startingPoll. Such a poll that reaches a dev server that is starting (a
// takeover or a wake on this worker, a restart) is held until the dev
// server is ready, up to PollHold, rather than refused: the page reloads
// the moment it can load, not up to a poll later.

// errHMRRefused reports a vite-hmr upgrade the dev server did not accept.
var errHMRRefused = errors.New("the dev server refused the HMR socket")

// route returns the dev server of the request's preview, and the function
// that ends the view.
func (p *Proxy) route(r *http.Request) (Upstream, bool, func()) {
	id, ok := PreviewID(r.Context())
	if !ok {
		return Upstream{}, false, func() {}
	}
	return p.servers.View(id)
}

// isPageLoad reports whether r loads a page in a tab or a frame (what a
// person does), not a request the page makes by itself: a WebSocket (Vite's
// HMR socket and its pings), a script, a style, a fetch.
func isPageLoad(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead || r.Header.Get("Upgrade") != "" {
		return false
	}
	switch r.Header.Get("Sec-Fetch-Dest") {
	case "", "document", "iframe", "frame":
		return true // "" is a client that does not say: curl, an old browser
	}
	return false
}

// dropPreviewCookie removes the preview cookies from a request to the dev
// server, keeping the site's own cookies.
func dropPreviewCookie(r *http.Request) {
	cookies := r.Cookies()
	r.Header.Del("Cookie")
	for _, c := range cookies {
		if !isPreviewCookie(c.Name) {
			r.AddCookie(c)
		}
	}
}

// isViteHMR reports whether r opens Vite's HMR socket.
func isViteHMR(r *http.Request) bool { return isViteSocket(r, "vite-hmr") }

// waitsForReady reports whether r is a poll that waits for the preview to
// serve, and reloads the page once it is answered: a ping of Vite's client
// after its HMR socket closed (a WebSocket with the subprotocol vite-ping;
// Vite 5.1 and later, and Astro 5 has Vite 6), or the starting page's HEAD
// with WaitHeader.
func waitsForReady(r *http.Request) bool {
	return isViteSocket(r, "vite-ping") || r.Method == http.MethodHead && r.Header.Get(WaitHeader) == "ready"
}

// isViteSocket reports whether r opens a WebSocket with the subprotocol
// protocol.
func isViteSocket(r *http.Request, protocol string) bool {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return false
	}
	for _, v := range r.Header.Values("Sec-Websocket-Protocol") {
		for _, p := range strings.Split(v, ",") {
			if strings.TrimSpace(p) == protocol {
				return true
			}
		}
	}
	return false
}

// refuseFailedHMR turns the dev server's refusal of an HMR socket into an
// error, so that proxyError answers it.
func refuseFailedHMR(resp *http.Response) error {
	if resp.StatusCode != http.StatusSwitchingProtocols && isViteHMR(resp.Request) {
		return fmt.Errorf("%w: status %d", errHMRRefused, resp.StatusCode)
	}
	return nil
}

// hmrUpgrader accepts an HMR socket only to close it. The origin needs no
// check: nothing is read from the socket, and nothing but a close is sent.
var hmrUpgrader = websocket.Upgrader{
	HandshakeTimeout: 5 * time.Second,
	Subprotocols:     []string{"vite-hmr"},
	CheckOrigin:      func(*http.Request) bool { return true },
}

// restartHMR opens r's HMR socket and closes it at once with code 1012
// (service restart), so the page's client polls and reloads.
func (p *Proxy) restartHMR(w http.ResponseWriter, r *http.Request, why string) {
	conn, err := hmrUpgrader.Upgrade(w, r, nil)
	if err != nil {
		p.log.DebugContext(r.Context(), "cannot answer an HMR socket", "error", err)
		return // the upgrader answered the client already
	}
	defer conn.Close()
	msg := websocket.FormatCloseMessage(websocket.CloseServiceRestart, "dev server restarting")
	if err := conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second)); err != nil {
		p.log.DebugContext(r.Context(), "close an HMR socket", "error", err)
	}
	p.log.InfoContext(r.Context(), "closed an HMR socket that cannot reach its dev server: the page reloads when the dev server answers", "reason", why)
}

// ServeHTTP forwards r to the dev server, or serves the "starting" page.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	end := func() {}
	if p.activity != nil {
		end = p.activity.Begin()
	}
	up, ok, viewed := p.route(r)
	var once sync.Once
	release := func() { once.Do(func() { end(); viewed() }) }
	defer release()
	if isPageLoad(r) {
		p.views.loaded(browserOf(r.Context()))
	} else if r.Header.Get("Upgrade") != "" {
		// A socket counts as a view up to ViewMax after its browser's last
		// page load, and lives no longer than its token.
		stop := p.views.hold(browserOf(r.Context()), release)
		defer stop()
		if exp, ok := CredentialExpiry(r.Context()); ok {
			ctx, cancel := context.WithDeadline(r.Context(), exp)
			defer cancel()
			r = r.WithContext(ctx)
		}
	}
	if (!ok || up.URL == nil) && waitsForReady(r) {
		up, ok = p.holdPoll(r)
	}
	if !ok || up.URL == nil {
		if isPageLoad(r) {
			id, _ := PreviewID(r.Context())
			if err := p.servers.Ensure(r.Context(), id); err != nil {
				p.log.DebugContext(r.Context(), "no preview to start", "preview", id, "error", err)
				http.Error(w, "This preview has no workspace on this worker.", http.StatusNotFound)
				return
			}
		}
		if isViteHMR(r) {
			p.restartHMR(w, r, "the dev server is not ready")
			return
		}
		p.serveStarting(w)
		return
	}
	ctx := withGuard(context.WithValue(r.Context(), upstreamKey{}, up), up.guard)
	p.rp.ServeHTTP(w, r.WithContext(ctx))
}

// holdPoll waits, up to PollHold, for the dev server of r's preview to be
// ready when one is starting or restarting, and returns it. It returns at
// once when none runs: a poll starts nothing.
func (p *Proxy) holdPoll(r *http.Request) (Upstream, bool) {
	id, ok := PreviewID(r.Context())
	if !ok {
		return Upstream{}, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), p.pollHold)
	defer cancel()
	if !p.servers.AwaitReady(ctx, id) {
		return Upstream{}, false
	}
	up, ok, viewed := p.servers.View(id)
	viewed() // the request's first View counts it until it ends
	return up, ok
}

// proxyError logs a failed round trip and answers with the "starting" page:
// the dev server is restarting or gone.
func (p *Proxy) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	level := slog.LevelWarn
	if errors.Is(err, context.Canceled) {
		level = slog.LevelDebug // the client went away
	}
	if isViteHMR(r) && !errors.Is(err, context.Canceled) {
		p.restartHMR(w, r, err.Error())
		return
	}
	p.log.LogAttrs(r.Context(), level, "preview proxy error",
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("error", err))
	p.serveStarting(w)
}

// serveStarting answers 503 with the page that retries by itself.
func (p *Proxy) serveStarting(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Retry-After", strconv.Itoa(int((p.retryAfter+time.Second-1)/time.Second)))
	h.Set("Content-Length", strconv.Itoa(len(p.page)))
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write(p.page) // a client that went away needs no answer
}

// startingPage is the 503 page. Its script asks for the page again (HEAD,
// which starts and wakes nothing, with WaitHeader: a worker holds it while
// the dev server starts) every startingPoll and reloads as soon as the
// answer is not 503, and reloads anyway after 5 x retryAfter (that
// load may wake the preview again); without scripts, a meta refresh
// reloads it after retryAfter.
func startingPage(retryAfter time.Duration) []byte {
	secs := strconv.Itoa(int((retryAfter + time.Second - 1) / time.Second))
	poll := strconv.FormatInt(startingPoll.Milliseconds(), 10)
	giveUp := strconv.FormatInt(5*retryAfter.Milliseconds(), 10)
	return []byte(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<noscript><meta http-equiv="refresh" content="` + secs + `"></noscript>
<meta name="viewport" content="width=device-width">
<title>Preview starting…</title>
<style>body{font-family:system-ui,sans-serif;display:grid;place-items:center;min-height:90vh;color:#444}</style>
</head>
<body>
<main id="preview-starting"><h1>Preview starting…</h1><p>The site is starting. This page reloads by itself.</p></main>
<script>
(function () {
  var start = Date.now();
  function poll() {
    if (Date.now() - start > ` + giveUp + `) { location.reload(); return; }
    fetch(location.href, { method: 'HEAD', cache: 'no-store', credentials: 'same-origin', headers: { '` + WaitHeader + `': 'ready' } })
      .then(function (r) { if (r.status !== 503) location.reload(); else setTimeout(poll, ` + poll + `); })
      .catch(function () { setTimeout(poll, ` + poll + `); });
  }
  setTimeout(poll, ` + poll + `);
})();
</script>
</body>
</html>
`)
}

// startingPoll is how often the starting page asks whether the preview
// serves.
const startingPoll = 500 * time.Millisecond
