package preview

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// GateConfig configures a Gate.
type GateConfig struct {
	// Tokens checks preview tokens. Required.
	Tokens *Tokens
	// PerHost says each preview has a host name of its own ({preview} in
	// PREVIEW_BASE_URL): the first label of the request's host names the
	// preview, and a token or cookie opens that preview only. When false,
	// one host serves every preview and the token or cookie names it: one
	// preview per browser.
	PerHost bool
	// Next serves authenticated requests; PreviewID(r.Context()) names
	// their preview.
	Next http.Handler
	// Logger receives refusals at debug level. Nil discards them.
	Logger *slog.Logger
}

// Gate lets through only requests that carry a valid preview token for the
// preview they ask for, in the query (TokenParam, as in a previewUrl) or in
// the cookie that such a request gets: the first request with a token sets
// an HttpOnly cookie scoped to its host (on https named __Host-preview_token,
// Secure, SameSite=None and Partitioned, so that no other host can set it
// and the preview also works in an iframe of another site) and is redirected to the same URL without the token, which so stays
// out of history and logs. Any other request, a WebSocket upgrade included,
// gets 401 and a short page and goes no further. Create it with NewGate.
type Gate struct {
	cfg GateConfig
	log *slog.Logger
}

// NewGate returns a Gate.
func NewGate(cfg GateConfig) *Gate {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Gate{cfg: cfg, log: log}
}

type previewIDKey struct{}

// PreviewID returns the preview id a Gate found for the request.
func PreviewID(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(previewIDKey{}).(string)
	return id, ok
}

// withPreviewID returns ctx naming preview id.
func withPreviewID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, previewIDKey{}, id)
}

// ServeHTTP checks the request's token or cookie.
func (g *Gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	want := ""
	if g.cfg.PerHost {
		want = firstLabel(r.Host)
		if !ValidID(want) {
			g.refuse(w, r, "the host names no preview")
			return
		}
	}
	if token := r.URL.Query().Get(TokenParam); token != "" {
		c, ok := g.cfg.Tokens.Claims(token)
		if !ok || (want != "" && c.ID != want) {
			g.refuse(w, r, "invalid, expired or another preview's token")
			return
		}
		g.setCookie(w, r, token, c.Expires)
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			q := r.URL.Query()
			q.Del(TokenParam)
			to := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
			if to.Path == "" {
				to.Path = "/"
			}
			w.Header().Set("Cache-Control", "no-store")
			http.Redirect(w, r, to.String(), http.StatusFound)
			return
		}
		g.cfg.Next.ServeHTTP(w, r.WithContext(withCredential(withPreviewID(r.Context(), c.ID), token, c)))
		return
	}
	cookie, c, ok := g.fromCookies(r, want)
	if !ok {
		g.refuse(w, r, "no valid preview token or cookie for this preview")
		return
	}
	g.cfg.Next.ServeHTTP(w, r.WithContext(withCredential(withPreviewID(r.Context(), c.ID), cookie, c)))
}

// fromCookies returns the preview a request's cookies open: every preview
// cookie is tried (the __Host- one first), not just the first of a name,
// so a cookie another preview's site set on the parent domain, which the
// browser may send first, cannot shadow this preview's own. With want set,
// only a token of that preview counts. It returns the cookie's value and
// what its token says.
func (g *Gate) fromCookies(r *http.Request, want string) (value string, claims Claims, ok bool) {
	cookies := r.Cookies()
	for _, name := range []string{HostCookieName, CookieName} {
		for _, c := range cookies {
			if c.Name != name {
				continue
			}
			if claims, ok := g.cfg.Tokens.Claims(c.Value); ok && (want == "" || claims.ID == want) {
				return c.Value, claims, true
			}
		}
	}
	return "", Claims{}, false
}

// setCookie gives the browser the token as a cookie of this host.
func (g *Gate) setCookie(w http.ResponseWriter, r *http.Request, token string, expires time.Time) {
	c := &http.Cookie{Name: CookieName, Value: token, Path: "/", HttpOnly: true,
		MaxAge: max(1, int(time.Until(expires).Seconds())), SameSite: http.SameSiteLaxMode}
	if isHTTPS(r) {
		// __Host-: no other host, a sibling preview included, can set it.
		c.Name, c.Secure, c.SameSite, c.Partitioned = HostCookieName, true, http.SameSiteNoneMode, true
	}
	http.SetCookie(w, c)
}

// isHTTPS reports whether the browser reached the preview over https, here
// or at a load balancer in front.
func isHTTPS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// refuse answers 401 with a short page.
func (g *Gate) refuse(w http.ResponseWriter, r *http.Request, why string) {
	g.log.DebugContext(r.Context(), "preview request refused", "reason", why, "path", r.URL.Path)
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(unauthorizedPage)))
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write(unauthorizedPage) // a client that went away needs no answer
}

// unauthorizedPage is the 401 answer.
var unauthorizedPage = []byte(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Preview: sign-in needed</title></head>
<body><main id="preview-unauthorized"><h1>This preview needs its link</h1>
<p>A preview opens from its link: the <code>previewUrl</code> in the answer to any job of this
user (an <code>init</code> or an <code>execute</code>). The link carries a <code>preview_token</code>
that signs this browser in to this preview only.</p>
<p>To get a link, send a job for the user and open the <code>previewUrl</code> of its answer (with
<code>worker local</code>: <code>go run ./cmd/worker send -type init -client ... -user ... -thread ... -wait 5m</code>).</p>
<p>A link that worked before stops working when its token expires, when it is another user's, or
when the worker that signed it had no fixed preview key (<code>PREVIEW_SECRET</code>) and restarted.</p>
</main></body></html>
`)

// firstLabel returns the first label of a Host header's name, lower-cased.
func firstLabel(hostport string) string {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	label, _, _ := strings.Cut(host, ".")
	return strings.ToLower(label)
}
