package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/browser"
	"github.com/webordinary/claude-code-astro/preview"
	"github.com/webordinary/claude-code-astro/preview/previewtest"
)

const (
	// hmrEdits and browserEdits are how many edits rows 8 and 9 make.
	hmrEdits     = 50
	browserEdits = 20
	// editGap is the least time between two edits of one file. Vite's
	// watcher (chokidar) drops a change that comes within 50 ms of the
	// previous one on the same path: faster edits would be lost, not
	// measured.
	editGap = 120 * time.Millisecond
	// viteConnected is what Vite's client logs once its HMR socket is open.
	viteConnected = "[vite] connected"
)

// benchPreview: rows 8a-8c and 9 on one dev server of the example site
// behind the preview proxy.
func benchPreview(b *testing.B, e *env) {
	site := previewtest.PrepareSite(b)
	page := filepath.Join(site, "src", "pages", "index.astro")
	ds := preview.NewDevServer(preview.DevServerConfig{
		Port: previewtest.FreePort(b), PATH: previewtest.NodePATH(b), Home: b.TempDir(), Logger: quietLogger(b),
		ReadyTimeout: 90 * time.Second,
	})
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := ds.Close(ctx); err != nil {
			b.Errorf("close the dev server: %v", err)
		}
	})
	srv := httptest.NewServer(preview.NewProxy(preview.ProxyConfig{Upstream: ds.Upstream}))
	b.Cleanup(srv.Close)
	base, err := url.Parse(srv.URL)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := ds.Target(ctx, site); err != nil {
		b.Fatalf("start the dev server: %v", err)
	}
	direct, ok := ds.URL()
	if !ok {
		b.Fatal("the dev server has no URL after Target")
	}

	// 8: one socket straight to Vite and one through the proxy, both open
	// during the same edits, so each edit gives a pair.
	getPage(b, base.String())
	viaVite := previewtest.DialHMR(b, direct, "")
	viaProxy := previewtest.DialHMR(b, base, "")
	viaVite.Next(b, 10*time.Second, "connected")
	viaProxy.Next(b, 10*time.Second, "connected")
	var dDirect, dProxy, overhead []time.Duration
	for i := range hmrEdits {
		start := time.Now()
		setHeading(b, page, fmt.Sprintf("Edit %d at %d", i, start.UnixNano()))
		md := viaVite.Next(b, 10*time.Second, "update", "full-reload")
		mp := viaProxy.Next(b, 10*time.Second, "update", "full-reload")
		dDirect = append(dDirect, md.At.Sub(start))
		dProxy = append(dProxy, mp.At.Sub(start))
		overhead = append(overhead, mp.At.Sub(md.At))
		// A reloading browser requests the page again; Vite reports changes
		// only to modules it has served since the last reload.
		getPage(b, base.String())
		viaVite.Drain(30 * time.Millisecond)
		viaProxy.Drain(0)
		time.Sleep(time.Until(start.Add(editGap)))
	}
	viaVite.Close()
	viaProxy.Close()
	e.table.Check("8a", VsBaseline(dProxy, dDirect), Ratio(dProxy, dDirect) < hmrGoal)
	e.table.Check("8b", medP95(overhead), Median(overhead) < time.Millisecond)
	e.table.Info("8c", medP95(dDirect))
	b.ReportMetric(ms(Median(dProxy)), "hmr-proxy-median-ms")
	b.ReportMetric(Ratio(dProxy, dDirect), "hmr-proxy-vs-vite-x")
	b.ReportMetric(ms(Median(overhead)), "hmr-proxy-overhead-median-ms")

	// 9: an open page in headless Chromium, through the proxy.
	br := browser.Start(b)
	connected := 1
	br.Open(base.String())
	br.WaitConsole(viteConnected, connected, 15*time.Second)
	var dom []time.Duration
	for i := range browserEdits {
		text := fmt.Sprintf("Browser edit %d at %d", i, time.Now().UnixNano())
		start := time.Now()
		setHeading(b, page, text)
		br.WaitText("#title", text, 30*time.Second)
		dom = append(dom, time.Since(start))
		// Vite reloads the page; the next edit waits for its HMR socket.
		connected++
		br.WaitConsole(viteConnected, connected, 15*time.Second)
		time.Sleep(time.Until(start.Add(editGap)))
	}
	e.table.Check("9", medP95(dom), Median(dom) < 300*time.Millisecond)
	b.ReportMetric(ms(Median(dom)), "edit-to-dom-median-ms")
}

// getPage fetches u, failing unless it answers 200.
func getPage(tb testing.TB, u string) string {
	tb.Helper()
	status, _, body := previewtest.Get(tb, u, "")
	if status != http.StatusOK {
		tb.Fatalf("GET %s: status %d", u, status)
	}
	return body
}
