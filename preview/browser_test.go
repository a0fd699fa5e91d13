package preview_test

import (
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/preview"
	"github.com/webordinary/claude-code-astro/preview/previewtest"
	"github.com/webordinary/claude-code-astro/testkit/browser"
)

// viteConnected is what Vite's client logs once its HMR socket is open.
const viteConnected = "[vite] connected"

// TestBrowserShowsEdit opens the preview in headless Chromium through the
// proxy, under a public host name's worth of indirection (the browser only
// knows the proxy), edits the heading on disk and waits for the open page to
// show it: Vite's HMR client, connected through the proxy, brings the change
// without the test reloading anything.
func TestBrowserShowsEdit(t *testing.T) {
	site := previewtest.PrepareSite(t)
	b := browser.Start(t)
	ds := newDevServer(t)
	var act counter
	base := serveProxy(t, preview.NewProxy(preview.ProxyConfig{Upstream: ds.URL, Activity: &act, Logger: testLogger(t)}))
	target(t, ds, site)

	b.Open(base.String())
	b.WaitText("#title", heading, 30*time.Second)
	// Vite's client in the page opens its HMR socket through the proxy, and
	// keeps it open.
	b.WaitConsole(viteConnected, 1, 15*time.Second)
	waitFor(t, "the page's HMR socket to count as activity", 15*time.Second, func() bool { return act.open.Load() >= 1 })

	for i, text := range []string{"Edited by the agent", "Edited twice"} {
		setHeading(t, site, text)
		took := b.WaitText("#title", text, 30*time.Second)
		t.Logf("edit %d shown in the browser after %s", i+1, took.Round(time.Millisecond))
		// Vite reloads a page whose server-rendered source changed; the next
		// edit is for the reloaded page, once its HMR socket is back.
		b.WaitConsole(viteConnected, i+2, 15*time.Second)
	}
}
