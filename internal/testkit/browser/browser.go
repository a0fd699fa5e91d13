// Package browser runs a headless Chromium for tests, driven through
// chromedp: it opens pages and waits for text to show in their DOM.
//
// Every Browser gets a fresh profile (--user-data-dir) and a temporary HOME
// under the test's temporary directory, and an explicit environment, so a
// test never reads or writes the machine user's files. The browser is
// stopped when the test ends.
package browser

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ChromiumPath is where the tests expect Chromium.
const ChromiumPath = "/usr/bin/chromium"

// InstallHint is the command that installs Chromium on Debian.
const InstallHint = "apt-get install -y --no-install-recommends chromium"

// DefaultTimeout bounds Open.
const DefaultTimeout = 30 * time.Second

// retryPause is the pause before WaitText looks again after a look failed
// (a reload destroyed the page's context under it).
const retryPause = 5 * time.Millisecond

// watchFor bounds one look of WaitText: the page watches its DOM for that
// long (a MutationObserver: no polling, and the answer the moment the text
// changes), then answers with what it shows.
const watchFor = 250 * time.Millisecond

// Browser is one headless Chromium with one tab. Its methods must be called
// from one goroutine at a time (the test's), as chromedp runs a tab's
// actions one after another.
type Browser struct {
	tb  testing.TB
	ctx context.Context

	mu       sync.Mutex
	console  []chromedp.ConsoleMessage
	consoleC chan struct{} // closed and replaced when a message arrives
}

// Option changes how Start starts the browser.
type Option func(*options)

// options are what the Options set.
type options struct {
	hosts []string
}

// MapHost makes the browser resolve host (a name like preview.example.com)
// to 127.0.0.1, so a test can open the preview under a public name without
// any DNS or network.
func MapHost(host string) Option {
	return func(o *options) { o.hosts = append(o.hosts, host) }
}

// Start starts a headless Chromium with the flags checked on these machines
// and returns it; it is stopped when the test ends. It fails the test,
// saying how to install it, when Chromium is missing.
func Start(tb testing.TB, opt ...Option) *Browser {
	tb.Helper()
	var o options
	for _, f := range opt {
		f(&o)
	}
	if _, err := os.Stat(ChromiumPath); err != nil {
		tb.Fatalf("browser: Chromium is missing (%v): run `%s`", err, InstallHint)
	}
	root := tb.TempDir()
	home := filepath.Join(root, "home")
	profile := filepath.Join(root, "profile")
	for _, dir := range []string{home, profile} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			tb.Fatalf("browser: create %s: %v", dir, err)
		}
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(ChromiumPath),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(profile),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.WindowSize(1280, 800),
		chromedp.NoInheritEnv,
		chromedp.Env(
			"HOME="+home,
			"PATH=/usr/bin:/bin",
			"XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
			"XDG_CACHE_HOME="+filepath.Join(home, ".cache"),
			"TMPDIR="+root,
		),
	}
	if len(o.hosts) > 0 {
		rules := make([]string, 0, len(o.hosts))
		for _, h := range o.hosts {
			rules = append(rules, "MAP "+h+" 127.0.0.1")
		}
		opts = append(opts, chromedp.Flag("host-resolver-rules", strings.Join(rules, ", ")))
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(allocCtx)
	b := &Browser{tb: tb, ctx: ctx, consoleC: make(chan struct{})}
	collected := make(chan struct{})
	tb.Cleanup(func() {
		cancelCtx()
		cancelAlloc()
		<-collected
	})
	// The first Do starts the browser and binds it to ctx, which has no
	// deadline: later actions use derived contexts with timeouts.
	if err := chromedp.Do(ctx); err != nil {
		close(collected)
		tb.Fatalf("browser: start Chromium: %v", err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		defer close(collected)
		for m, err := range messages {
			if err != nil {
				return // the browser is gone or the test ended
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			close(b.consoleC)
			b.consoleC = make(chan struct{})
			b.mu.Unlock()
		}
	}()
	return b
}

// Console returns the messages the tab's pages wrote to the console so far,
// across navigations and reloads.
func (b *Browser) Console() []chromedp.ConsoleMessage {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.console)
}

// CountConsole counts the console messages so far that contain substr.
func (b *Browser) CountConsole(substr string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.countLocked(substr)
}

// countLocked is CountConsole with b.mu held.
func (b *Browser) countLocked(substr string) int {
	n := 0
	for _, m := range b.console {
		if strings.Contains(m.Text, substr) {
			n++
		}
	}
	return n
}

// WaitConsole waits until at least n console messages contain substr (Vite's
// client logs "[vite] connected." once its HMR socket is open, on every page
// load). It fails the test when timeout passes first.
func (b *Browser) WaitConsole(substr string, n int, timeout time.Duration) {
	b.tb.Helper()
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		b.mu.Lock()
		count := b.countLocked(substr)
		changed := b.consoleC
		b.mu.Unlock()
		if count >= n {
			return
		}
		select {
		case <-changed:
		case <-t.C:
			b.tb.Fatalf("browser: %d console messages contain %q after %s, want %d; console: %v", count, substr, timeout, n, b.Console())
		}
	}
}

// Context returns the tab's chromedp context, for actions this package does
// not wrap. Derive a context with a timeout from it for each action.
func (b *Browser) Context() context.Context { return b.ctx }

// Open navigates the tab to url and waits for the page to load. It fails the
// test on error.
func (b *Browser) Open(url string) {
	b.tb.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, DefaultTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		b.tb.Fatalf("browser: open %s: %v", url, err)
	}
}

// Text returns the textContent of the first element that the CSS selector
// matches, trimmed of surrounding space, and whether there is one. It does
// not wait for the element.
func (b *Browser) Text(ctx context.Context, selector string) (string, bool, error) {
	sel, err := json.Marshal(selector)
	if err != nil {
		return "", false, err
	}
	type result struct {
		Found bool   `json:"found"`
		Text  string `json:"text"`
	}
	r, err := chromedp.Run(b.tabContext(ctx), chromedp.Evaluate[result](
		`(() => { const e = document.querySelector(`+string(sel)+`); return e ? {found: true, text: e.textContent} : {found: false, text: ""}; })()`))
	if err != nil {
		return "", false, err
	}
	return strings.TrimSpace(r.Text), r.Found, nil
}

// WaitText waits until the first element that the CSS selector matches has
// the text want (trimmed), and returns how long that took. The page itself
// watches its DOM for the change, so the wait costs the browser and the
// test next to no CPU (a benchmark measures the system, not its observer),
// and the time is that of the change. It rides out page reloads (Vite
// reloads a page whose server-rendered source changed). It fails the test,
// showing the last text seen, when timeout passes first.
func (b *Browser) WaitText(selector, want string, timeout time.Duration) time.Duration {
	b.tb.Helper()
	d, last, err := b.PollText(selector, want, timeout)
	if err != nil {
		b.tb.Fatalf("browser: wait for %q in %s: %v (last seen: %q)", want, selector, err, last)
	}
	return d
}

// PollText is WaitText returning an error instead of failing the test. It
// also returns the last text seen.
func (b *Browser) PollText(selector, want string, timeout time.Duration) (time.Duration, string, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(b.ctx, timeout)
	defer cancel()
	var last string
	var lastErr error
	for {
		text, found, err := b.watchText(ctx, selector, want)
		pause := time.Duration(0)
		switch {
		case err == nil && found && text == want:
			return time.Since(start), text, nil
		case err == nil && found:
			last = text
		case err != nil:
			lastErr = err // a reload destroys the page's context mid-call: try again
			pause = retryPause
		}
		select {
		case <-ctx.Done():
			return time.Since(start), last, errors.Join(ctx.Err(), lastErr)
		case <-time.After(pause):
		}
	}
}

// watchText is Text, answered by the page as soon as the element's text is
// want (trimmed), or after watchFor (at most half the time ctx has left)
// with whatever it is then.
func (b *Browser) watchText(ctx context.Context, selector, want string) (string, bool, error) {
	watch := watchFor
	if dl, ok := ctx.Deadline(); ok {
		// Leave time for the answer: a look cut off by ctx says nothing.
		watch = max(min(watch, time.Until(dl)/2), time.Millisecond)
	}
	args, err := json.Marshal([]any{selector, want, watch.Milliseconds()})
	if err != nil {
		return "", false, err
	}
	type result struct {
		Found bool   `json:"found"`
		Text  string `json:"text"`
	}
	r, err := chromedp.Run(b.tabContext(ctx), chromedp.Evaluate[result](`(([sel, want, ms]) => new Promise((resolve) => {
  const look = () => { const e = document.querySelector(sel); return e ? {found: true, text: e.textContent} : {found: false, text: ""}; };
  const now = look();
  if (now.found && now.text.trim() === want) { resolve(now); return; }
  let timer;
  const observer = new MutationObserver(() => {
    const r = look();
    if (r.found && r.text.trim() === want) { observer.disconnect(); clearTimeout(timer); resolve(r); }
  });
  observer.observe(document, {subtree: true, childList: true, characterData: true});
  timer = setTimeout(() => { observer.disconnect(); resolve(look()); }, ms);
}))(`+string(args)+`)`, chromedp.EvalAwaitPromise))
	if err != nil {
		return "", false, err
	}
	return strings.TrimSpace(r.Text), r.Found, nil
}

// tabContext returns ctx if it derives from the tab's context, which chromedp
// needs, and the tab's context otherwise.
func (b *Browser) tabContext(ctx context.Context) context.Context {
	if ctx == nil || chromedp.FromContext(ctx) == nil {
		return b.ctx
	}
	return ctx
}

// Location returns the address of the page the tab shows (location.href).
// It fails the test on error.
func (b *Browser) Location() string {
	b.tb.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, DefaultTimeout)
	defer cancel()
	href, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		b.tb.Fatalf("browser: read the location: %v", err)
	}
	return href
}
