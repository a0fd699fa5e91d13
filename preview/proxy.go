package preview

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"time"
)

// Activity is told about every request the Proxy serves, so that an idle
// timer can tell when nobody watches the preview. Begin is called when a
// request starts and the returned end func when its handler returns; for a
// WebSocket upgrade (Vite's HMR socket) that is when the socket closes, so an
// open preview counts as activity for its whole life. Implementations must be
// safe for concurrent use.
type Activity interface {
	Begin() (end func())
}

// DefaultRetryAfter is the pause the "starting" page asks the browser for.
const DefaultRetryAfter = 2 * time.Second

// ProxyConfig configures a Proxy.
type ProxyConfig struct {
	// Upstream returns the dev server to proxy to and whether it is ready;
	// DevServer.URL fits. Nil, or not ready, serves the "starting" page.
	Upstream func() (*url.URL, bool)
	// Activity, if not nil, is told about every request.
	Activity Activity
	// Logger receives proxy errors. Nil discards them.
	Logger *slog.Logger
	// RetryAfter is how long the "starting" page waits before it retries.
	// Zero means DefaultRetryAfter.
	RetryAfter time.Duration
}

// Proxy is the live preview: an http.Handler that forwards every request,
// WebSocket upgrades included, to the dev server that Upstream names. It
// rewrites the Host header to the dev server's own address, which Vite
// requires, so the preview works under any public host name; it keeps the
// path, query string and WebSocket subprotocol. While no dev server is ready
// it answers 503 with a small page that reloads itself.
//
// Mount it at the root of its own port or host: Vite's pages and HMR socket
// use absolute paths. Create it with NewProxy; it is safe for concurrent use.
type Proxy struct {
	upstream   func() (*url.URL, bool)
	activity   Activity
	log        *slog.Logger
	retryAfter time.Duration
	page       []byte
	rp         *httputil.ReverseProxy
}

// upstreamKey is the request context key under which ServeHTTP hands the
// upstream it checked to the rewrite.
type upstreamKey struct{}

// NewProxy returns a Proxy.
func NewProxy(cfg ProxyConfig) *Proxy {
	p := &Proxy{
		upstream:   cfg.Upstream,
		activity:   cfg.Activity,
		log:        cfg.Logger,
		retryAfter: cfg.RetryAfter,
	}
	if p.upstream == nil {
		p.upstream = func() (*url.URL, bool) { return nil, false }
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.retryAfter <= 0 {
		p.retryAfter = DefaultRetryAfter
	}
	p.page = startingPage(p.retryAfter)
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			u := pr.In.Context().Value(upstreamKey{}).(*url.URL)
			pr.SetURL(u) // also sets Host to the dev server's, which Vite requires
			pr.SetXForwarded()
		},
		Transport: &http.Transport{
			Proxy:                 nil, // loopback only, never through an environment proxy
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          64,
			MaxIdleConnsPerHost:   64, // a dev page loads dozens of modules at once
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
			DisableCompression:    true, // pass encodings through untouched
		},
		ErrorHandler: p.proxyError,
	}
	return p
}

// ServeHTTP forwards r to the dev server, or serves the "starting" page.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.activity != nil {
		end := p.activity.Begin()
		defer end()
	}
	u, ok := p.upstream()
	if !ok || u == nil {
		p.serveStarting(w)
		return
	}
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), upstreamKey{}, u)))
}

// proxyError logs a failed round trip and answers with the "starting" page:
// the dev server is restarting or gone.
func (p *Proxy) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	level := slog.LevelWarn
	if errors.Is(err, context.Canceled) {
		level = slog.LevelDebug // the client went away
	}
	p.log.LogAttrs(r.Context(), level, "preview proxy error",
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
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

// startingPage is the 503 page: it reloads itself after retryAfter, by a
// meta refresh and by a script (whichever the browser honours first).
func startingPage(retryAfter time.Duration) []byte {
	secs := strconv.Itoa(int((retryAfter + time.Second - 1) / time.Second))
	ms := strconv.FormatInt(retryAfter.Milliseconds(), 10)
	return []byte(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="` + secs + `">
<meta name="viewport" content="width=device-width">
<title>Preview starting…</title>
<style>body{font-family:system-ui,sans-serif;display:grid;place-items:center;min-height:90vh;color:#444}</style>
</head>
<body>
<main id="preview-starting"><h1>Preview starting…</h1><p>The site is starting. This page reloads by itself.</p></main>
<script>setTimeout(function(){location.reload()},` + ms + `)</script>
</body>
</html>
`)
}
