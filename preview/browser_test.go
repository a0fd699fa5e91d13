package preview_test

import (
	"net/url"
	"syscall"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/browser"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/preview"
	"github.com/webordinary/claude-code-astro/preview/previewtest"
)

// viteConnected is what Vite's client logs once its HMR socket is open.
const viteConnected = "[vite] connected"

// TestBrowserShowsEdit opens the preview in headless Chromium through the
// proxy, under a public host name, edits the heading on disk and waits for
// the open page to show it: Vite's HMR client, connected through the proxy,
// brings the change without the test reloading anything.
func TestBrowserShowsEdit(t *testing.T) {
	for _, s := range previewtest.Sites() {
		t.Run(s.Name, func(t *testing.T) {
			site := s.Prepare(t)
			const publicHost = "preview.example.com"
			b := browser.Start(t, browser.MapHost(publicHost))
			var act counter
			p := newSitePreview(t, s, site, preview.ServersConfig{}, &act)
			p.start(t)

			// The browser knows the preview by a public name, as a customer would:
			// Host and Origin are preview.example.com, which Vite alone refuses.
			// It opens the previewUrl, whose token the Gate turns into a cookie.
			public, err := url.Parse(p.link())
			if err != nil {
				t.Fatal(err)
			}
			public.Host = publicHost + ":" + p.base.Port()
			b.Open(public.String())
			b.WaitText("#title", heading, 30*time.Second)
			// Vite's client in the page opens its HMR socket through the proxy, and
			// keeps it open.
			b.WaitConsole(viteConnected, 1, 15*time.Second)
			wait.For(t, 15*time.Second, "the page's HMR socket to count as activity", func() bool { return act.open.Load() >= 1 })

			for i, text := range []string{"Edited by the agent", "Edited twice"} {
				setHeading(t, site, text)
				took := b.WaitText("#title", text, 30*time.Second)
				t.Logf("edit %d shown in the browser after %s", i+1, took.Round(time.Millisecond))
				// The page is updated in place (the launcher's page script), not
				// reloaded: its HMR socket stays open.
			}

			// The dev server dies and comes back: the open page's Vite client finds
			// it again through the proxy (which answers 503 meanwhile), reloads, and
			// later edits keep showing.
			old := p.pid()
			if err := syscall.Kill(-old, syscall.SIGKILL); err != nil {
				t.Fatalf("kill dev server group %d: %v", old, err)
			}
			wait.For(t, 60*time.Second, "the restarted dev server to be ready", func() bool {
				pid := p.pid()
				return pid != 0 && pid != old && p.state() == preview.StateReady
			})
			b.WaitConsole(viteConnected, 2, 30*time.Second)
			setHeading(t, site, "Edited after a restart")
			b.WaitText("#title", "Edited after a restart", 30*time.Second)
		})
	}
}
