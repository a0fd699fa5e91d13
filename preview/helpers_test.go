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

// newDevServer returns a DevServer on a free port with a temporary HOME,
// closed (and checked to leave no process) when the test ends.
func newDevServer(tb testing.TB) *preview.DevServer {
	tb.Helper()
	return newDevServerFor(tb, previewtest.Default())
}

// newDevServerFor is newDevServer for a dev server of site (its node).
func newDevServerFor(tb testing.TB, site previewtest.Site) *preview.DevServer {
	tb.Helper()
	ds := preview.NewDevServer(preview.DevServerConfig{
		Port:         previewtest.FreePort(tb),
		PATH:         site.PATH(tb),
		Home:         tb.TempDir(),
		Logger:       testLogger(tb),
		ReadyTimeout: 60 * time.Second,
		MinBackoff:   100 * time.Millisecond,
		MaxBackoff:   2 * time.Second,
	})
	tb.Cleanup(func() {
		pid := ds.PID()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := ds.Close(ctx); err != nil {
			tb.Errorf("close dev server: %v", err)
		}
		if pid != 0 && groupAlive(pid) {
			tb.Errorf("process group %d still alive after Close", pid)
		}
	})
	return ds
}

// target points ds at dir, failing the test if it does not get ready.
func target(tb testing.TB, ds *preview.DevServer, dir string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := ds.Target(ctx, dir); err != nil {
		tb.Fatalf("target %s: %v", dir, err)
	}
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
