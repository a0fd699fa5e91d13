package browser_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/browser"
)

// page changes its heading a moment after it loads, and logs to the console.
// The first time a tab loads it, it reloads itself first (as Vite's client
// does after an edit), so that the text shows only on the second load.
const page = `<!doctype html><html><body><h1 id="title">Before</h1>
<script>
console.log("page loaded on " + location.host);
if (!sessionStorage.getItem("reloaded")) {
  sessionStorage.setItem("reloaded", "1");
  setTimeout(() => location.reload(), 50);
} else {
  setTimeout(() => { document.getElementById("title").textContent = "  After  "; }, 100);
}
</script></body></html>`

func TestBrowser(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, page)
	}))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}

	const host = "app.example.test"
	b := browser.Start(t, browser.MapHost(host))
	b.Open("http://" + host + ":" + u.Port() + "/")
	took := b.WaitText("#title", "After", 10*time.Second)
	t.Logf("text changed after %s", took)

	b.WaitConsole("page loaded on "+host, 2, 10*time.Second) // the reload, then the text
	if msgs := b.Console(); len(msgs) == 0 || !strings.Contains(msgs[0].Text, host) {
		t.Errorf("Console = %v", msgs)
	}

	if _, found, err := b.Text(b.Context(), "#missing"); err != nil || found {
		t.Errorf("Text(#missing) = found %v, err %v; want not found", found, err)
	}
	if _, last, err := b.PollText("#title", "Never", 200*time.Millisecond); err == nil || last != "After" {
		t.Errorf("PollText for absent text: last %q, err %v; want a timeout and last After", last, err)
	}
}
