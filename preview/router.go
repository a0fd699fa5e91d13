package preview

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/webordinary/claude-code-astro/internal/lease"
)

// Defaults of RouterConfig.
const (
	DefaultRouteCache = 2 * time.Second
	DefaultWakeEvery  = 30 * time.Second
)

// Leases reads the lease table; *lease.Table implements it.
type Leases interface {
	Get(ctx context.Context, preview string) (l lease.Lease, found bool, err error)
}

// RouterConfig configures a Router. Tokens, Domain and Leases are required.
type RouterConfig struct {
	// Tokens checks preview tokens, with the workers' key.
	Tokens *Tokens
	// Domain is what follows the preview id in a preview's host name:
	// ".preview.example.com" for PREVIEW_BASE_URL
	// https://{preview}.preview.example.com/. A host of that form is a
	// preview host; any other host serves /health only.
	Domain string
	// Leases says which worker serves a preview.
	Leases Leases
	// Wake, when set, asks a worker to serve the user's preview (sends a
	// preview job): called for a page load of a preview with no live
	// lease, at most once per preview per WakeEvery.
	Wake func(ctx context.Context, clientID, userID string) error
	// Health reports whether the lease table answers, for GET /health.
	// Nil: always healthy.
	Health func(ctx context.Context) error
	// CacheTTL is how long a lease read is used again, and how often the
	// lease of a preview with open WebSockets is read (they are closed
	// when it moves); zero means DefaultRouteCache (2 s). Negative: never
	// cached. A read that found no live lease is used for 500 ms at most.
	CacheTTL time.Duration
	// WakeEvery is the least time between two wakes of one preview; zero
	// means DefaultWakeEvery (30 s).
	WakeEvery time.Duration
	// RetryAfter is how long the "starting" page waits before it retries;
	// zero means DefaultRetryAfter.
	RetryAfter time.Duration
	// Observe, when set, is told of every preview request the router
	// answered: its status (101 for a WebSocket), and for a request
	// proxied to an owner the time to the owner's response headers (zero
	// for one answered here). The metrics.
	Observe func(status int, upstream time.Duration)
	// Woke, when set, is told how long a woken preview took from its wake
	// (the preview job sent) to the first request proxied to its new
	// owner. The metrics.
	Woke func(took time.Duration)
	// Version is reported by /health.
	Version string
	// Logger receives routing decisions at debug level and failures. Nil
	// discards them.
	Logger *slog.Logger
}

// Router is `worker router`: it routes each preview host to the worker that
// holds the preview's lease (CONTRACT.md section 6). A request is first
// checked by a Gate (token or cookie, 401 and nothing looked up without a
// valid one; the token turned into the cookie by a redirect here); then the
// lease is read (cached up to CacheTTL) and the request, WebSocket included,
// is proxied to the owner's address with its Host and cookie, which the
// owner's own gate checks again. With no live lease a page load wakes the
// preview (Wake) and every request gets the 503 page that retries by itself.
// Create it with NewRouter; it is safe for concurrent use.
type Router struct {
	cfg  RouterConfig
	log  *slog.Logger
	gate *Gate
	rp   *httputil.ReverseProxy
	page []byte
	now  func() time.Time

	mu      sync.Mutex
	routes  map[string]route     // lease reads by preview id
	woken   map[string]time.Time // last wake by preview id
	waking  map[string]time.Time // woken and not yet served, by preview id (Woke)
	sockets map[string]*watched  // open proxied WebSockets by preview id
}

// watched is the open WebSockets the router proxies for one preview, by
// the owner address each goes to, with what ends each. One goroutine per
// preview watches its lease while any is open.
type watched struct {
	next   int
	byAddr map[string]map[int]context.CancelFunc
}

// observation is one request's figures, for Observe.
type observation struct {
	status   int
	start    time.Time     // when the request went to the owner
	upstream time.Duration // to the owner's response headers
}

// observeKey is the request context key of its *observation.
type observeKey struct{}

// statusWriter records the status a handler answered. Unwrap keeps
// WebSocket upgrades working through http.ResponseController.
type statusWriter struct {
	http.ResponseWriter
	obs *observation
}

func (w statusWriter) WriteHeader(code int) {
	if w.obs.status == 0 {
		w.obs.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w statusWriter) Write(b []byte) (int, error) {
	if w.obs.status == 0 {
		w.obs.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// route is one cached lease read.
type route struct {
	l     lease.Lease
	found bool
	read  time.Time
}

// noLeaseCache is how long a read that found no live lease is used again:
// the pages of a preview being woken poll for it.
const noLeaseCache = 500 * time.Millisecond

// maxRemembered bounds the route cache and the wake log: past it they are
// emptied (they are caches).
const maxRemembered = 10000

// ownerKey is the request context key of the owner's address.
type ownerKey struct{}

// NewRouter returns a Router.
func NewRouter(cfg RouterConfig) *Router {
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = DefaultRouteCache
	}
	if cfg.WakeEvery <= 0 {
		cfg.WakeEvery = DefaultWakeEvery
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = DefaultRetryAfter
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	rt := &Router{cfg: cfg, log: log, page: startingPage(cfg.RetryAfter), now: time.Now,
		routes: map[string]route{}, woken: map[string]time.Time{}, waking: map[string]time.Time{}, sockets: map[string]*watched{}}
	rt.gate = NewGate(GateConfig{Tokens: cfg.Tokens, PerHost: true, Next: http.HandlerFunc(rt.forward), Logger: log})
	rt.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(pr.In.Context().Value(ownerKey{}).(*url.URL))
			pr.Out.Host = pr.In.Host // the owner's gate and proxy route by it
			// Keep what the load balancer said (the client, https), then
			// add this hop.
			if v := pr.In.Header.Values("X-Forwarded-For"); len(v) > 0 {
				pr.Out.Header["X-Forwarded-For"] = v
			}
			proto := pr.In.Header.Get("X-Forwarded-Proto")
			pr.SetXForwarded()
			if proto != "" {
				pr.Out.Header.Set("X-Forwarded-Proto", proto)
			}
		},
		Transport: &http.Transport{
			Proxy:                 nil, // workers are reached directly, never through an environment proxy
			DialContext:           (&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          512,
			MaxIdleConnsPerHost:   64, // a dev page loads dozens of modules at once
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
			DisableCompression:    true, // pass encodings through untouched
		},
		ErrorHandler: rt.ownerError,
		ModifyResponse: func(resp *http.Response) error {
			if obs, ok := resp.Request.Context().Value(observeKey{}).(*observation); ok && !obs.start.IsZero() {
				obs.upstream = time.Since(obs.start)
			}
			return nil
		},
	}
	return rt
}

// ServeHTTP routes a preview host's request, or serves /health.
func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !rt.previewHost(r.Host) {
		rt.serveHealth(w, r)
		return
	}
	if rt.cfg.Observe == nil {
		rt.gate.ServeHTTP(w, r)
		return
	}
	obs := &observation{}
	rt.gate.ServeHTTP(statusWriter{w, obs}, r.WithContext(context.WithValue(r.Context(), observeKey{}, obs)))
	rt.cfg.Observe(cmpOr(obs.status, http.StatusOK), obs.upstream)
}

// cmpOr returns a, or b when a is zero.
func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

// previewHost reports whether host is {preview}Domain.
func (rt *Router) previewHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	label, ok := strings.CutSuffix(host, strings.ToLower(rt.cfg.Domain))
	return ok && ValidID(label)
}

// serveHealth answers GET /health: 200 while the lease table answers.
func (rt *Router) serveHealth(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/health" {
		http.NotFound(w, r)
		return
	}
	status, code := "ok", http.StatusOK
	if rt.cfg.Health != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		err := rt.cfg.Health(ctx)
		cancel()
		if err != nil {
			rt.log.WarnContext(r.Context(), "the lease table does not answer", "error", err)
			status, code = "unhealthy", http.StatusServiceUnavailable
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"status": status, "role": "router", "version": rt.cfg.Version}) // a client that went away needs no answer
}

// forward proxies an authenticated request to the preview's owner.
func (rt *Router) forward(w http.ResponseWriter, r *http.Request) {
	id, _ := PreviewID(r.Context())
	l, found, err := rt.lookup(r.Context(), id)
	if err != nil {
		rt.log.WarnContext(r.Context(), "cannot read a preview lease", "preview", id, "error", err)
		rt.unavailable(w, r, "the lease table does not answer")
		return
	}
	if !found || !l.Live(rt.now()) || l.Addr == "" {
		if isPageLoad(r) {
			rt.wake(r.Context(), id, l, found)
		}
		rt.unavailable(w, r, "no worker serves this preview now")
		return
	}
	rt.served(id)
	if obs, ok := r.Context().Value(observeKey{}).(*observation); ok {
		obs.start = time.Now()
	}
	owner := &url.URL{Scheme: "http", Host: l.Addr}
	rt.log.DebugContext(r.Context(), "preview routed", "preview", id, "owner", l.Owner, "addr", l.Addr, "epoch", l.Epoch)
	ctx := context.WithValue(r.Context(), ownerKey{}, owner)
	if r.Header.Get("Upgrade") != "" {
		// A WebSocket stays open for as long as the page: it is ended
		// when the lease moves, so the page reconnects to the new owner.
		var done func()
		ctx, done = rt.watch(ctx, id, l.Addr)
		defer done()
	}
	rt.rp.ServeHTTP(w, r.WithContext(ctx))
}

// watch registers a WebSocket of preview id proxied to addr: the returned
// context ends when the preview's lease no longer names addr (read every
// CacheTTL while any of its sockets is open), which closes the socket, and
// the page's Vite client polls, through the router, until the new owner
// serves, then reloads. done unregisters it.
func (rt *Router) watch(ctx context.Context, id, addr string) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	rt.mu.Lock()
	w := rt.sockets[id]
	first := w == nil
	if first {
		w = &watched{byAddr: map[string]map[int]context.CancelFunc{}}
		rt.sockets[id] = w
	}
	n := w.next
	w.next++
	if w.byAddr[addr] == nil {
		w.byAddr[addr] = map[int]context.CancelFunc{}
	}
	w.byAddr[addr][n] = cancel
	rt.mu.Unlock()
	if first {
		go rt.watchLease(id, w)
	}
	return ctx, func() {
		cancel()
		rt.mu.Lock()
		delete(w.byAddr[addr], n)
		if len(w.byAddr[addr]) == 0 {
			delete(w.byAddr, addr)
		}
		rt.mu.Unlock()
	}
}

// watchLease reads preview id's lease every CacheTTL (from the table, not
// the cache, which it refreshes) for as long as w has an open socket, and ends the sockets that go to an address the lease no
// longer names (another owner, or none).
func (rt *Router) watchLease(id string, w *watched) {
	every := max(rt.cfg.CacheTTL, 100*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for range t.C {
		rt.mu.Lock()
		if len(w.byAddr) == 0 {
			delete(rt.sockets, id)
			rt.mu.Unlock()
			return
		}
		rt.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		l, found, err := rt.read(ctx, id)
		cancel()
		if err != nil {
			rt.log.Warn("cannot read a preview lease for its open sockets", "preview", id, "error", err)
			continue
		}
		live := found && l.Live(rt.now()) && l.Addr != ""
		var ended []context.CancelFunc
		rt.mu.Lock()
		for addr, sockets := range w.byAddr {
			if live && addr == l.Addr {
				continue
			}
			for _, end := range sockets {
				ended = append(ended, end)
			}
		}
		rt.mu.Unlock()
		if len(ended) > 0 {
			rt.log.Info("the preview's lease moved: its open sockets closed, the page reconnects to the new owner",
				"preview", id, "sockets", len(ended), "addr", l.Addr, "epoch", l.Epoch)
			for _, end := range ended {
				end()
			}
		}
	}
}

// lookup reads preview id's lease, or the read of at most CacheTTL ago.
func (rt *Router) lookup(ctx context.Context, id string) (lease.Lease, bool, error) {
	now := rt.now()
	rt.mu.Lock()
	c, ok := rt.routes[id]
	rt.mu.Unlock()
	ttl := rt.cfg.CacheTTL
	if ok && (!c.found || !c.l.Live(now)) {
		// No live lease yet: a preview being woken is served as soon as
		// its lease is taken, not up to CacheTTL later.
		ttl = min(ttl, noLeaseCache)
	}
	if ok && now.Sub(c.read) < ttl {
		return c.l, c.found, nil
	}
	return rt.read(ctx, id)
}

// read reads preview id's lease from the table, and caches what it read.
func (rt *Router) read(ctx context.Context, id string) (lease.Lease, bool, error) {
	now := rt.now()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	l, found, err := rt.cfg.Leases.Get(ctx, id)
	if err != nil {
		return lease.Lease{}, false, err
	}
	rt.mu.Lock()
	if len(rt.routes) >= maxRemembered {
		clear(rt.routes)
	}
	rt.routes[id] = route{l: l, found: found, read: now}
	rt.mu.Unlock()
	return l, found, nil
}

// forget drops preview id's cached lease: its owner did not answer.
func (rt *Router) forget(id string) {
	rt.mu.Lock()
	delete(rt.routes, id)
	rt.mu.Unlock()
}

// wake sends one preview job for the user behind preview id, at most one
// per WakeEvery. The lease item, live or ended, names the user; where the
// table kept none (its TTL deleted the ended item), the request's signed
// token or cookie does. A preview neither names is not woken.
func (rt *Router) wake(ctx context.Context, id string, l lease.Lease, found bool) {
	if rt.cfg.Wake == nil {
		return
	}
	if !found || l.ClientID == "" || l.UserID == "" {
		if c, ok := credentialClaims(ctx); ok && c.ID == id && c.ClientID != "" && c.UserID != "" {
			l.ClientID, l.UserID = c.ClientID, c.UserID
		} else {
			rt.log.InfoContext(ctx, "nothing names the user behind this preview: not woken (a job of the user starts it)", "preview", id)
			return
		}
	}
	now := rt.now()
	rt.mu.Lock()
	if last, ok := rt.woken[id]; ok && now.Sub(last) < rt.cfg.WakeEvery {
		rt.mu.Unlock()
		return
	}
	if len(rt.woken) >= maxRemembered {
		clear(rt.woken)
	}
	rt.woken[id] = now
	rt.mu.Unlock()
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := rt.cfg.Wake(wctx, l.ClientID, l.UserID); err != nil {
		rt.log.WarnContext(ctx, "cannot wake a preview", "preview", id, "error", err)
		rt.mu.Lock()
		delete(rt.woken, id) // the next page load tries again
		rt.mu.Unlock()
		return
	}
	rt.log.InfoContext(ctx, "preview woken: a preview job sent", "preview", id, "tenant", l.ClientID+"/"+l.UserID)
	rt.mu.Lock()
	if _, ok := rt.waking[id]; !ok {
		if len(rt.waking) >= maxRemembered {
			clear(rt.waking)
		}
		rt.waking[id] = now
	}
	rt.mu.Unlock()
}

// served tells Woke how long preview id took from its first wake to now,
// when it was woken and not served since.
func (rt *Router) served(id string) {
	if rt.cfg.Woke == nil {
		return
	}
	rt.mu.Lock()
	since, ok := rt.waking[id]
	delete(rt.waking, id)
	rt.mu.Unlock()
	if ok {
		rt.cfg.Woke(rt.now().Sub(since))
	}
}

// ownerError answers a request the owner did not take: the worker is gone
// or stopping; the lease is read again next time.
func (rt *Router) ownerError(w http.ResponseWriter, r *http.Request, err error) {
	id, _ := PreviewID(r.Context())
	rt.forget(id)
	if errors.Is(err, context.Canceled) {
		return // the client went away
	}
	rt.log.WarnContext(r.Context(), "the preview's worker did not answer", "preview", id, "error", err)
	rt.unavailable(w, r, "the preview's worker did not answer")
}

// unavailable answers 503 with the page that retries by itself; an HMR
// socket is opened and closed with 1012, so the page's client polls and
// reloads once the preview serves again.
func (rt *Router) unavailable(w http.ResponseWriter, r *http.Request, why string) {
	if isViteHMR(r) {
		closeHMR(w, r, rt.log, why)
		return
	}
	serveStartingPage(w, rt.page, rt.cfg.RetryAfter)
}

// closeHMR opens r's HMR socket and closes it at once with code 1012
// (service restart).
func closeHMR(w http.ResponseWriter, r *http.Request, log *slog.Logger, why string) {
	conn, err := hmrUpgrader.Upgrade(w, r, nil)
	if err != nil {
		log.DebugContext(r.Context(), "cannot answer an HMR socket", "error", err)
		return // the upgrader answered the client already
	}
	defer conn.Close()
	msg := websocket.FormatCloseMessage(websocket.CloseServiceRestart, "preview moving")
	if err := conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second)); err != nil {
		log.DebugContext(r.Context(), "close an HMR socket", "error", err)
	}
	log.DebugContext(r.Context(), "closed an HMR socket: the page reloads when its preview serves", "reason", why)
}

// serveStartingPage answers 503 with page, the page that retries by itself.
func serveStartingPage(w http.ResponseWriter, page []byte, retryAfter time.Duration) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Retry-After", strconv.Itoa(int((retryAfter+time.Second-1)/time.Second)))
	h.Set("Content-Length", strconv.Itoa(len(page)))
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write(page) // a client that went away needs no answer
}
