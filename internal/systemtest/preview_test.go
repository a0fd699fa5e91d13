package systemtest

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/browser"
	"github.com/webordinary/claude-code-astro/internal/testkit/fakeanthropic"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/preview"
	"github.com/webordinary/claude-code-astro/preview/previewtest"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// previewDomain is the domain of the previews in system tests: each user's
// preview is {preview}.previewDomain, which the test browsers resolve to
// loopback (browser.MapHost).
const previewDomain = "preview.example.com"

// useExampleSite makes the harness's remote hold the example Astro site and
// turns the previews on: PREVIEW_BASE_URL gives each user a host name under
// previewDomain, on the worker's HTTP port (fixed here so that the URL can
// name it). It returns the browser.MapHost pattern of those names.
func (h *harness) useExampleSite(t *testing.T) (previewHosts string) {
	t.Helper()
	h.remote = workspacetest.NewRemote(t, h.git, previewtest.SiteFiles(t))
	httpPort := previewtest.FreePort(t)
	h.env["REPO_URL"] = h.remote.URL
	h.env["ASTRO_DEV_MODE"] = "true"
	h.env["ASTRO_PORT"] = strconv.Itoa(previewtest.FreePort(t))
	h.env["HTTP_ADDR"] = "127.0.0.1:" + strconv.Itoa(httpPort)
	h.env["PREVIEW_BASE_URL"] = fmt.Sprintf("http://{preview}.%s:%d/", previewDomain, httpPort)
	h.env["NPM_CACHE_DIR"] = seededNpmCache(t)
	return "*." + previewDomain
}

// previewHost is the host (name:port) of a user's preview.
func (h *harness) previewHost(user string) string {
	_, port, _ := strings.Cut(h.env["HTTP_ADDR"], ":")
	return preview.ID("acme", user) + "." + previewDomain + ":" + port
}

// previewOf returns user's entry in worker status's previews, nil when their dev
// server does not run.
func (p *proc) previewOf(user string) map[string]any {
	body := p.workerStatus()
	list, _ := body["previews"].([]any)
	for _, e := range list {
		if m, _ := e.(map[string]any); m != nil && m["userId"] == user {
			return m
		}
	}
	return nil
}

// waitPreviewReady waits until /health says user's dev server serves.
func (p *proc) waitPreviewReady(t *testing.T, user string) {
	t.Helper()
	wait.For(t, 60*time.Second, user+"'s dev server to be ready", func() bool {
		e := p.previewOf(user)
		return e != nil && e["state"] == "ready"
	})
}

// checkPreviewURL checks that a response's previewUrl is user's preview
// host with a token, and returns it.
func (h *harness) checkPreviewURL(t *testing.T, r jobs.Response, user string) string {
	t.Helper()
	u, err := url.Parse(r.PreviewURL)
	if err != nil || u.Scheme != "http" || u.Host != h.previewHost(user) || u.Path != "/" || u.Query().Get(preview.TokenParam) == "" {
		t.Fatalf("previewUrl of %s's job %s = %q: want http://%s/?%s=...", user, r.JobID, r.PreviewURL, h.previewHost(user), preview.TokenParam)
	}
	return r.PreviewURL
}

// openPreview opens a previewUrl in b and checks that the token left the
// address once the page loaded.
func openPreview(t *testing.T, b *browser.Browser, previewURL string) {
	t.Helper()
	b.Open(previewURL)
	if loc := b.Location(); strings.Contains(loc, preview.TokenParam) {
		t.Errorf("the address still holds the token after the first load: %s", loc)
	}
}

// headingEdit is a script that changes the example site's heading.
func headingEdit(page, from, to string) []fakeanthropic.Step {
	return fakeanthropic.EditFile(page,
		`<h1 id="title">`+from+`</h1>`, `<h1 id="title">`+to+`</h1>`, "The heading now says "+to+".")
}

// TestPreviewShowsAnEditLive opens the preview in headless Chromium under a
// public host name, runs an execute job that changes the heading, and waits
// for the page already open to show it, without reloading it.
func TestPreviewShowsAnEditLive(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	hosts := h.useExampleSite(t)
	p := h.start(map[string]string{"AUTO_SHUTDOWN_MINUTES": "0.5"})

	h.send(initJob("i1", "jo", "t1"))
	r := h.final("i1", 3*time.Minute)
	if r.Status != jobs.StatusSucceeded {
		t.Fatalf("init: %+v %+v", r, r.Error)
	}
	link := h.checkPreviewURL(t, r, "jo")
	p.waitPreviewReady(t, "jo")

	b := browser.Start(t, browser.MapHost(hosts))
	openPreview(t, b, link)
	b.WaitText("#title", "Welcome to Example Site", 30*time.Second)
	// The page's HMR socket is open: the worker is not idle meanwhile.
	wait.For(t, 15*time.Second, "the open page to hold the idle countdown off", func() bool {
		_, body := p.health()
		return body["idleShutdownAt"] == nil
	})

	page := h.projectDir("jo") + "/src/pages/index.astro"
	h.api.SetScript(headingEdit(page, "Welcome to Example Site", "Edited live by the agent")...)
	h.send(execJob("e1", "jo", "t1", "Change the heading to Edited live by the agent"))
	if r := h.final("e1", 2*time.Minute); r.Status != jobs.StatusSucceeded || r.Commit == "" {
		t.Fatalf("execute: %+v %+v", r, r.Error)
	}
	took := b.WaitText("#title", "Edited live by the agent", 30*time.Second)
	t.Logf("the open page showed the edit %s after the wait began", took)
}

// seedOnce fills npmCache once per run.
var seedOnce sync.Once

// seededNpmCache returns npmCache holding the example site's packages:
// installed once per run from the npm registry, as root, into a scratch copy
// of the site, then readable by every uid. Workers get it as NPM_CACHE_DIR,
// the read-only seed each tenant's own cache starts from, so a run fetches
// the packages once, not once per tenant.
func seededNpmCache(t *testing.T) string {
	t.Helper()
	var err error
	seedOnce.Do(func() {
		scratch, mkErr := os.MkdirTemp("", "npm-seed-")
		if mkErr != nil {
			err = mkErr
			return
		}
		defer os.RemoveAll(scratch)
		for name, content := range previewtest.SiteFiles(t) {
			p := filepath.Join(scratch, filepath.FromSlash(name))
			if err = os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return
			}
			if err = os.WriteFile(p, []byte(content), 0o644); err != nil {
				return
			}
		}
		npm := exec.Command("npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--cache", npmCache)
		npm.Dir = scratch
		npm.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + scratch, "npm_config_update_notifier=false"}
		if out, runErr := npm.CombinedOutput(); runErr != nil {
			err = fmt.Errorf("npm ci: %w: %s", runErr, out)
			return
		}
		if out, chErr := exec.Command("chmod", "-R", "a+rX", npmCache).CombinedOutput(); chErr != nil {
			err = fmt.Errorf("chmod: %w: %s", chErr, out)
		}
	})
	if err != nil {
		t.Fatalf("seed the npm cache: %v", err)
	}
	return npmCache
}
