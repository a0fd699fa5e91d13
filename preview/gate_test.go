package preview_test

import (
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/preview"
)

func TestIDIsAStableDistinctDNSLabel(t *testing.T) {
	pairs := [][2]string{
		{"acme", "alice"}, {"acme", "Alice"}, {"ACME", "alice"}, {"acme", "al_ice"}, {"acme", "al-ice"},
		{"acme", "al--ice"}, {"a", "b"}, {strings.Repeat("C", 64), strings.Repeat("u", 64)},
		{strings.Repeat("C", 64), strings.Repeat("u", 63) + "U"}, {"9", "_"[:0] + "x_y"}, {"acme-", "x"}, {"acme", "-x"[1:]},
	}
	seen := map[string][2]string{}
	for _, p := range pairs {
		id := preview.ID(p[0], p[1])
		if !preview.ValidID(id) || len(id) > 63 || strings.Contains(id, "--") || strings.ToLower(id) != id {
			t.Errorf("ID(%q, %q) = %q: not a lower-case DNS label of at most 63 characters without '--'", p[0], p[1], id)
		}
		if id != preview.ID(p[0], p[1]) {
			t.Errorf("ID(%q, %q) is not stable", p[0], p[1])
		}
		if other, dup := seen[id]; dup {
			t.Errorf("ID(%q, %q) = ID(%q, %q) = %q", p[0], p[1], other[0], other[1], id)
		}
		seen[id] = p
	}
	if id := preview.ID("acme", "alice"); !strings.HasPrefix(id, "acme-alice-") {
		t.Errorf("ID(acme, alice) = %q: want it readable", id)
	}
}

func TestTokens(t *testing.T) {
	tokens := preview.NewTokens([]byte("key one"), time.Hour)
	alice, bob := preview.ID("acme", "alice"), preview.ID("acme", "bob")
	tok := tokens.Issue(alice)
	if id, exp, ok := tokens.Verify(tok); !ok || id != alice || time.Until(exp) < 59*time.Minute {
		t.Errorf("Verify(Issue(alice)) = %q %v %v", id, exp, ok)
	}
	forged := strings.Replace(tok, alice, bob, 1)
	expired := preview.NewTokens([]byte("key one"), time.Nanosecond).Issue(alice) // expiries are whole seconds: this one's has begun
	for name, bad := range map[string]string{
		"another preview's id in the token": forged,
		"signed with another key":           preview.NewTokens([]byte("key two"), time.Hour).Issue(alice),
		"expired":                           expired,
		"empty":                             "",
		"garbage":                           "a.b.c",
		"no signature":                      alice + ".zz.",
	} {
		if id, _, ok := tokens.Verify(bad); ok {
			t.Errorf("%s: Verify = %q, ok: want refused", name, id)
		}
	}
}

// TestTokensNameTheirUser: a worker's token names the user behind its
// preview (what a router wakes by when no lease item does), and a token
// whose user is changed, or is not its preview's, is refused.
func TestTokensNameTheirUser(t *testing.T) {
	tokens := preview.NewTokens([]byte("key one"), time.Hour)
	alice := preview.ID("acme", "alice")
	tok := tokens.IssueFor("acme", "alice")
	c, ok := tokens.Claims(tok)
	if !ok || c.ID != alice || c.ClientID != "acme" || c.UserID != "alice" || time.Until(c.Expires) < 59*time.Minute {
		t.Fatalf("Claims(IssueFor(acme, alice)) = %+v %v", c, ok)
	}
	if id, _, ok := tokens.Verify(tok); !ok || id != alice {
		t.Errorf("Verify(IssueFor(acme, alice)) = %q %v", id, ok)
	}
	if c, ok := tokens.Claims(tokens.Issue(alice)); !ok || c.ID != alice || c.ClientID != "" || c.UserID != "" {
		t.Errorf("a token of the first form: %+v %v, want its preview and no user", c, ok)
	}
	parts := strings.Split(tok, ".")
	swapped := func(who string) string {
		return strings.Join([]string{parts[0], parts[1], base64.RawURLEncoding.EncodeToString([]byte(who)), parts[3]}, ".")
	}
	for name, bad := range map[string]string{
		"another user named":   swapped("acme/bob"),
		"the user dropped":     parts[0] + "." + parts[1] + "." + parts[3],
		"who not base64":       parts[0] + "." + parts[1] + ".%%%." + parts[3],
		"another preview's id": preview.ID("acme", "bob") + strings.TrimPrefix(tok, alice),
	} {
		if c, ok := tokens.Claims(bad); ok {
			t.Errorf("%s: Claims = %+v, ok: want refused", name, c)
		}
	}
}

// gate serves a Gate in per-host mode in front of a handler that names the
// preview it was given.
func gate(t *testing.T, tokens *preview.Tokens, perHost bool) http.Handler {
	t.Helper()
	return preview.NewGate(preview.GateConfig{Tokens: tokens, PerHost: perHost, Next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := preview.PreviewID(r.Context())
		w.Write([]byte("next: preview " + id + " cookie " + r.Header.Get("Cookie")))
	})})
}

func TestGate(t *testing.T) {
	tokens := preview.NewTokens([]byte("secret"), time.Hour)
	alice, bob := preview.ID("acme", "alice"), preview.ID("acme", "bob")
	aliceHost, bobHost := alice+".preview.example.com", bob+".preview.example.com"
	g := gate(t, tokens, true)
	do := func(method, host, target string, header http.Header) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, target, nil)
		req.Host = host
		for k, v := range header {
			req.Header[k] = v
		}
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, req)
		return rec
	}
	tok := tokens.Issue(alice)

	// The first request with the token: a host cookie and a redirect to the
	// same URL without the token.
	rec := do(http.MethodGet, aliceHost, "/blog/?page=2&"+preview.TokenParam+"="+url.QueryEscape(tok), nil)
	if rec.Code != http.StatusFound {
		t.Fatalf("with the token: %d, want a redirect", rec.Code)
	}
	if loc := rec.Header().Get("Location"); strings.Contains(loc, tok) || loc != "/blog/?page=2" {
		t.Errorf("redirect to %q, want /blog/?page=2 without the token", loc)
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Name != preview.CookieName || cookies[0].Value != tok || !cookies[0].HttpOnly ||
		cookies[0].Domain != "" || cookies[0].Secure || cookies[0].MaxAge < 3500 {
		t.Fatalf("cookie %+v: want an HttpOnly host cookie holding the token for its TTL", cookies)
	}
	withCookie := http.Header{"Cookie": {preview.CookieName + "=" + tok + "; site=1"}}
	if rec := do(http.MethodGet, aliceHost, "/blog/", withCookie); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "preview "+alice) {
		t.Errorf("with the cookie: %d %s", rec.Code, rec.Body)
	}

	// On https (at a load balancer): Secure, SameSite=None, Partitioned, so
	// the preview works in an iframe of upstream's own https app.
	rec = do(http.MethodGet, aliceHost, "/?"+preview.TokenParam+"="+url.QueryEscape(tok), http.Header{"X-Forwarded-Proto": {"https"}})
	c := rec.Result().Cookies()
	if len(c) != 1 || c[0].Name != preview.HostCookieName || !c[0].Secure || c[0].Path != "/" || c[0].Domain != "" ||
		c[0].SameSite != http.SameSiteNoneMode || !c[0].Partitioned {
		t.Errorf("cookie over https: %+v", c)
	}

	upgrade := http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Protocol": {"vite-hmr"}}
	expired := preview.NewTokens([]byte("secret"), time.Nanosecond).Issue(alice) // expiries are whole seconds: this one's has begun
	for _, tc := range []struct {
		name   string
		host   string
		target string
		header http.Header
	}{
		{"no token", aliceHost, "/", nil},
		{"no token, HMR socket", aliceHost, "/?token=vite-token", upgrade},
		{"alice's token on bob's host", bobHost, "/?" + preview.TokenParam + "=" + url.QueryEscape(tok), nil},
		{"alice's cookie on bob's host", bobHost, "/", withCookie},
		{"forged token", aliceHost, "/?" + preview.TokenParam + "=" + alice + ".zzzzzz.forged", nil},
		{"expired token", aliceHost, "/?" + preview.TokenParam + "=" + url.QueryEscape(expired), nil},
		{"another key's cookie", aliceHost, "/", http.Header{"Cookie": {preview.CookieName + "=" + preview.NewTokens([]byte("other"), time.Hour).Issue(alice)}}},
		{"a host that names no preview", "Not_A_Label.example.com", "/", withCookie},
	} {
		rec := do(http.MethodGet, tc.host, tc.target, tc.header)
		if rec.Code != http.StatusUnauthorized || strings.Contains(rec.Body.String(), "next:") || len(rec.Result().Cookies()) != 0 {
			t.Errorf("%s: %d %q, want 401 and nothing further", tc.name, rec.Code, rec.Body.String())
		}
		// The page says how to get in: the previewUrl of a job's answer,
		// and why a link that worked may not any more.
		for _, want := range []string{"previewUrl", "send -type init", "expires", "PREVIEW_SECRET"} {
			if !strings.Contains(rec.Body.String(), want) {
				t.Errorf("%s: the 401 page does not say %q", tc.name, want)
			}
		}
	}

	// One host for every preview: the token names the preview.
	single := gate(t, tokens, false)
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Host = "preview.example.com"
	req.Header.Set("Cookie", preview.CookieName+"="+tokens.Issue(bob))
	rec = httptest.NewRecorder()
	single.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "preview "+bob) {
		t.Errorf("one host, bob's cookie: %d %s", rec.Code, rec.Body)
	}
}

// TestParentDomainCookieCannotShadowAPreview: alice's site sets a
// preview_token cookie on the parent domain, which the browser sends to
// every preview, and first (it is older). Bob's preview still opens with
// his own link, his host cookie beside hers; and on https his cookie is a
// __Host- one, which no other host can set at all. The client is a real
// HTTP client with a cookie jar that orders cookies as browsers do.
func TestParentDomainCookieCannotShadowAPreview(t *testing.T) {
	tokens := preview.NewTokens([]byte("secret"), time.Hour)
	alice, bob := preview.ID("acme", "alice"), preview.ID("acme", "bob")
	const domain = "preview.test"
	srv := httptest.NewServer(preview.NewGate(preview.GateConfig{Tokens: tokens, PerHost: true,
		Next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, _ := preview.PreviewID(r.Context())
			if id == alice { // alice's own site code
				http.SetCookie(w, &http.Cookie{Name: preview.CookieName, Value: tokens.Issue(alice), Domain: domain, Path: "/"})
				http.SetCookie(w, &http.Cookie{Name: preview.HostCookieName, Value: tokens.Issue(alice), Domain: domain, Path: "/"})
			}
			w.Write([]byte("preview " + id))
		})}))
	t.Cleanup(srv.Close)
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Jar: jar, Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, srv.Listener.Addr().String()) // every *.preview.test is this server
	}}}
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	open := func(id, query string) (int, string) {
		resp, err := client.Get("http://" + id + "." + domain + ":" + port + "/" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = io.Copy(&b, resp.Body)
		return resp.StatusCode, b.String()
	}
	if code, body := open(alice, "?"+preview.TokenParam+"="+url.QueryEscape(tokens.Issue(alice))); code != http.StatusOK || body != "preview "+alice {
		t.Fatalf("alice's preview: %d %q", code, body)
	}
	bobURL, _ := url.Parse("http://" + bob + "." + domain + ":" + port + "/")
	if n := len(jar.Cookies(bobURL)); n == 0 {
		t.Fatal("alice's parent-domain cookie did not reach bob's host: the test proves nothing")
	}
	if code, body := open(bob, "?"+preview.TokenParam+"="+url.QueryEscape(tokens.Issue(bob))); code != http.StatusOK || body != "preview "+bob {
		t.Errorf("bob's preview with his link, beside alice's parent-domain cookie: %d %q", code, body)
	}
	if code, body := open(bob, ""); code != http.StatusOK || body != "preview "+bob {
		t.Errorf("bob's preview again, by his cookie: %d %q", code, body)
	}

	// The header a browser sends on https: alice's older parent-domain
	// cookie first, then bob's __Host- cookie.
	g := gate(t, tokens, true)
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Host = bob + "." + domain
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("Cookie", preview.CookieName+"="+tokens.Issue(alice)+"; "+preview.HostCookieName+"="+tokens.Issue(bob))
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "preview "+bob) {
		t.Errorf("https, alice's cookie first: %d %s", rec.Code, rec.Body)
	}
	// Only alice's: still refused on bob's host.
	req.Header.Set("Cookie", preview.CookieName+"="+tokens.Issue(alice)+"; "+preview.HostCookieName+"="+tokens.Issue(alice))
	rec = httptest.NewRecorder()
	g.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("alice's cookies alone on bob's host: %d, want 401", rec.Code)
	}
}
