package systemtest

import (
	"fmt"
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
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/preview/previewtest"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// useExampleSite makes the harness's remote hold the example Astro site and
// turns the preview on.
func (h *harness) useExampleSite(t *testing.T) (previewHost string) {
	t.Helper()
	h.remote = workspacetest.NewRemote(t, h.git, previewtest.SiteFiles(t))
	port := previewtest.FreePort(t)
	h.env["REPO_URL"] = h.remote.URL
	h.env["ASTRO_DEV_MODE"] = "true"
	h.env["ASTRO_PORT"] = strconv.Itoa(port)
	h.env["NPM_CACHE_DIR"] = seededNpmCache(t)
	return "preview.example.com"
}

// waitAstroReady waits until /health says the dev server serves.
func (p *proc) waitAstroReady(t *testing.T) {
	t.Helper()
	waitFor(t, 60*time.Second, "the dev server to be ready", func() bool {
		_, body := p.health()
		astro, _ := body["astro"].(map[string]any)
		return astro["state"] == "ready"
	})
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
	h := newHarness(t, harnessOptions{})
	host := h.useExampleSite(t)
	p := h.start(map[string]string{"PREVIEW_BASE_URL": "https://" + host, "AUTO_SHUTDOWN_MINUTES": "0.5"})

	h.send(initJob("i1", "jo", "t1"))
	if r := h.final("i1", 3*time.Minute); r.Status != jobs.StatusSucceeded || r.PreviewURL != "https://"+host {
		t.Fatalf("init: %+v %+v", r, r.Error)
	}
	p.waitAstroReady(t)

	_, port, _ := strings.Cut(p.addr, ":")
	b := browser.Start(t, browser.MapHost(host))
	b.Open(fmt.Sprintf("http://%s:%s/", host, port))
	b.WaitText("#title", "Welcome to Example Site", 30*time.Second)
	// The page's HMR socket is open: the worker is not idle meanwhile.
	for i := range 10 {
		if _, body := p.health(); body["idleShutdownAt"] != nil {
			t.Fatalf("idle countdown running (poll %d) while the page's HMR socket is open: %v", i, body["idleShutdownAt"])
		}
		time.Sleep(200 * time.Millisecond)
	}

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
