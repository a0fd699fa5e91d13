package preview_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/preview"
	"github.com/webordinary/claude-code-astro/preview/previewtest"
)

// heading is the example site's <h1 id="title"> text.
const heading = "Welcome to Example Site"

// testLogger logs to the test's output; in benchmarks, warnings only.
func testLogger(tb testing.TB) *slog.Logger {
	level := slog.LevelInfo
	if _, ok := tb.(*testing.B); ok {
		level = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: level}))
}

// sitePreview is one user's preview of a site, served as the worker serves
// it: their dev server run by Servers, behind the Proxy and a Gate that
// serves every preview on one host (the token names the preview).
type sitePreview struct {
	*preview.Servers
	target preview.Target
	base   *url.URL // the Gate
	tokens *preview.Tokens
	cookie string // a token of the preview, as the Gate's cookie holds it
}

// newSitePreview returns the preview of the site in dir, its dev server not
// started (Lookup finds it for a page load), with act told of every
// request. cfg is newServers's; its zero PATH means site's node.
func newSitePreview(t *testing.T, site previewtest.Site, dir string, cfg preview.ServersConfig, act preview.Activity) *sitePreview {
	t.Helper()
	if cfg.PATH == "" {
		cfg.PATH = site.PATH(t)
	}
	target := preview.Target{ID: preview.ID("acme", "alice"), Key: "acme/alice", Dir: dir, As: preview.RunAs{Home: t.TempDir()}}
	s, _ := newServers(t, cfg, user{name: "alice", target: target})
	base, tokens := serveGated(t, preview.ProxyConfig{Servers: s, Activity: act, Logger: testLogger(t)}, false)
	return &sitePreview{Servers: s, target: target, base: base, tokens: tokens, cookie: tokens.Issue(target.ID)}
}

// serveGated serves a Proxy of cfg behind a Gate, one host name per preview
// or one host for all, and returns its base URL and the tokens that open
// it.
func serveGated(tb testing.TB, cfg preview.ProxyConfig, perHost bool) (*url.URL, *preview.Tokens) {
	tb.Helper()
	tokens := preview.NewTokens([]byte("preview test key"), time.Hour)
	return serveProxy(tb, preview.NewGate(preview.GateConfig{Tokens: tokens, PerHost: perHost, Next: preview.NewProxy(cfg)})), tokens
}

// start starts the preview's dev server (a job's Target), failing the test
// if it does not get ready.
func (p *sitePreview) start(tb testing.TB) {
	tb.Helper()
	p.startIn(tb, p.target.Dir)
}

// startIn is start with the dev server serving dir: a re-target when it
// served another directory.
func (p *sitePreview) startIn(tb testing.TB, dir string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	t := p.target
	t.Dir = dir
	if err := p.Target(ctx, t); err != nil {
		tb.Fatalf("target %s: %v", dir, err)
	}
}

// info describes the preview's dev server; ok is false when none runs.
func (p *sitePreview) info() (info preview.ServerInfo, ok bool) {
	for _, i := range p.List() {
		if i.ID == p.target.ID {
			return i, true
		}
	}
	return preview.ServerInfo{}, false
}

// pid is the dev server's process id, 0 when none runs.
func (p *sitePreview) pid() int {
	i, _ := p.info()
	return i.PID
}

// state is the dev server's state, stopped when none runs.
func (p *sitePreview) state() string {
	i, ok := p.info()
	if !ok {
		return preview.StateStopped
	}
	return i.State
}

// upstream is the dev server's address and whether it is ready.
func (p *sitePreview) upstream() (preview.Upstream, bool) {
	up, ok, done := p.View(p.target.ID)
	done()
	return up, ok
}

// header is what a browser that opened the previewUrl sends: the cookie,
// and the Host header host when not empty.
func (p *sitePreview) header(host string) http.Header {
	return previewtest.Header(host, p.cookie)
}

// get fetches path through the Gate as such a browser, under host when not
// empty.
func (p *sitePreview) get(tb testing.TB, path, host string) (int, http.Header, string) {
	tb.Helper()
	return previewtest.GetWith(tb, p.base.JoinPath(path).String(), p.header(host))
}

// fetch is get of a request the page makes by itself (a script), which
// does not start a dev server that does not run.
func (p *sitePreview) fetch(tb testing.TB, path string) (int, http.Header, string) {
	tb.Helper()
	h := p.header("")
	h.Set("Sec-Fetch-Dest", "script")
	return previewtest.GetWith(tb, p.base.JoinPath(path).String(), h)
}

// link is the previewUrl of the preview: the Gate's URL with a token, which
// a browser exchanges for the cookie.
func (p *sitePreview) link() string {
	u := *p.base
	u.Path = "/"
	u.RawQuery = url.Values{preview.TokenParam: {p.cookie}}.Encode()
	return u.String()
}

// groupAlive reports whether any process of group pgid is alive.
func groupAlive(pgid int) bool { return previewtest.GroupAlive(pgid) }

// counter is an Activity that counts requests.
type counter struct {
	begun, open atomic.Int64
}

// Begin counts a request in.
func (c *counter) Begin() func() {
	c.begun.Add(1)
	c.open.Add(1)
	var once sync.Once
	return func() { once.Do(func() { c.open.Add(-1) }) }
}

// serveProxy serves p on a loopback httptest server, closed when the test ends.
func serveProxy(tb testing.TB, p http.Handler) *url.URL {
	tb.Helper()
	srv := httptest.NewServer(p)
	tb.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

// setHeading rewrites the <h1 id="title"> of the site's home page in place,
// as an editor (or the agent's Edit tool) does.
func setHeading(tb testing.TB, siteDir, text string) {
	tb.Helper()
	path := filepath.Join(siteDir, "src", "pages", "index.astro")
	src, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	re := regexp.MustCompile(`<h1 id="title">[^<]*</h1>`)
	if !re.Match(src) {
		tb.Fatalf("no <h1 id=\"title\"> in %s", path)
	}
	out := re.ReplaceAllLiteral(src, []byte(`<h1 id="title">`+text+`</h1>`))
	if err := os.WriteFile(path, out, 0o644); err != nil {
		tb.Fatal(err)
	}
}
