package preview_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/preview"
	"github.com/webordinary/claude-code-astro/preview/previewtest"
	"github.com/webordinary/claude-code-astro/testkit/browser"
)

// hmrEdits is how many edits BenchmarkHMRLatency makes.
const hmrEdits = 50

// browserEdits is how many edits BenchmarkEditToBrowser makes.
const browserEdits = 20

// editGap is the least time between two edits of one file. Vite's watcher
// (chokidar 5) drops a change event that comes within 50 ms of the previous
// one on the same path, so faster edits would be lost, not measured.
const editGap = 120 * time.Millisecond

// quantile returns the q-quantile (0..1) of ds, nearest rank.
func quantile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s)) + 0.5)
	return s[min(max(i, 1), len(s))-1]
}

// ms converts d to milliseconds for ReportMetric.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// report reports the median and p95 of samples under name.
func report(b *testing.B, name string, samples []time.Duration) {
	med, p95 := quantile(samples, 0.5), quantile(samples, 0.95)
	b.ReportMetric(ms(med), name+"-median-ms")
	b.ReportMetric(ms(p95), name+"-p95-ms")
	b.Logf("%s: n=%d median=%s p95=%s", name, len(samples), med.Round(10*time.Microsecond), p95.Round(10*time.Microsecond))
}

// BenchmarkHMRLatency measures the time from writing index.astro to the first
// HMR message about it, on a socket straight to Vite and on one through the
// Proxy, both open during the same edits (so each edit gives a pair).
// Goals: the proxy adds < 1 ms at the median; total median < 20 ms.
func BenchmarkHMRLatency(b *testing.B) {
	site := previewtest.PrepareSite(b)
	ds := newDevServer(b)
	base := serveProxy(b, preview.NewProxy(preview.ProxyConfig{Upstream: ds.URL}))
	target(b, ds, site)
	direct, _ := ds.URL()

	for b.Loop() {
		if status, _, _ := get(b, base.String(), ""); status != http.StatusOK {
			b.Fatalf("page status %d", status)
		}
		viaVite := previewtest.DialHMR(b, direct, "")
		viaProxy := previewtest.DialHMR(b, base, "")
		viaVite.Next(b, 10*time.Second, "connected")
		viaProxy.Next(b, 10*time.Second, "connected")

		var dDirect, dProxy, overhead []time.Duration
		for i := range hmrEdits {
			start := time.Now()
			setHeading(b, site, fmt.Sprintf("Edit %d at %d", i, start.UnixNano()))
			md := viaVite.Next(b, 10*time.Second, "update", "full-reload")
			mp := viaProxy.Next(b, 10*time.Second, "update", "full-reload")
			dDirect = append(dDirect, md.At.Sub(start))
			dProxy = append(dProxy, mp.At.Sub(start))
			overhead = append(overhead, mp.At.Sub(md.At))
			// A reloading browser requests the page again; Vite only reports
			// changes to modules it has served since the last reload.
			if status, _, _ := get(b, base.String(), ""); status != http.StatusOK {
				b.Fatalf("page status %d after edit %d", status, i)
			}
			viaVite.Drain(30 * time.Millisecond)
			viaProxy.Drain(0)
			time.Sleep(time.Until(start.Add(editGap)))
		}
		viaVite.Close()
		viaProxy.Close()
		report(b, "direct", dDirect)
		report(b, "proxy", dProxy)
		report(b, "overhead", overhead)
	}
}

// BenchmarkEditToBrowser measures the time from writing index.astro to an
// open page in headless Chromium (through the Proxy) showing the new heading.
// Goal: median < 300 ms.
func BenchmarkEditToBrowser(b *testing.B) {
	site := previewtest.PrepareSite(b)
	br := browser.Start(b)
	ds := newDevServer(b)
	base := serveProxy(b, preview.NewProxy(preview.ProxyConfig{Upstream: ds.URL}))
	target(b, ds, site)

	for b.Loop() {
		connected := len(consoleWith(br, viteConnected)) + 1
		br.Open(base.String())
		br.WaitConsole(viteConnected, connected, 15*time.Second)
		var samples []time.Duration
		for i := range browserEdits {
			text := fmt.Sprintf("Browser edit %d at %d", i, time.Now().UnixNano())
			start := time.Now()
			setHeading(b, site, text)
			br.WaitText("#title", text, 30*time.Second)
			samples = append(samples, time.Since(start))
			// Vite reloads the page; the next edit waits for its HMR socket.
			br.WaitConsole(viteConnected, connected+i+1, 15*time.Second)
			time.Sleep(time.Until(start.Add(editGap)))
		}
		report(b, "edit-to-dom", samples)
	}
}

// consoleWith returns the browser's console messages that contain substr.
func consoleWith(br *browser.Browser, substr string) []string {
	var out []string
	for _, m := range br.Console() {
		if strings.Contains(m.Text, substr) {
			out = append(out, m.Text)
		}
	}
	return out
}

// BenchmarkTargetStart measures Target, from the call to the dev server
// answering, on a project with its dependencies installed: the first start
// (Vite's dependency cache empty) and later starts. Goal: < 5 s.
func BenchmarkTargetStart(b *testing.B) {
	const warmStarts = 3
	site := previewtest.PrepareSite(b)
	for b.Loop() {
		var cold time.Duration
		var warm []time.Duration
		for i := range warmStarts + 1 {
			ds := preview.NewDevServer(preview.DevServerConfig{
				Port: previewtest.FreePort(b), PATH: nodePATH(b), Home: b.TempDir(),
			})
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			start := time.Now()
			err := ds.Target(ctx, site)
			took := time.Since(start)
			cancel()
			if err != nil {
				b.Fatalf("target: %v", err)
			}
			closeCtx, cancelClose := context.WithTimeout(context.Background(), 30*time.Second)
			if err := ds.Close(closeCtx); err != nil {
				b.Fatalf("close: %v", err)
			}
			cancelClose()
			if i == 0 {
				cold = took
			} else {
				warm = append(warm, took)
			}
		}
		b.ReportMetric(ms(cold), "cold-ms")
		report(b, "warm", warm)
		b.Logf("cold start: %s", cold.Round(time.Millisecond))
	}
}
