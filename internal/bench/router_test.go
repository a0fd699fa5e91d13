package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/config"
	"github.com/webordinary/claude-code-astro/internal/lease"
	"github.com/webordinary/claude-code-astro/internal/testkit/sqstest"
	"github.com/webordinary/claude-code-astro/preview"
	"github.com/webordinary/claude-code-astro/preview/previewtest"
)

// routerGoal is row 18a's goal: HMR through the router and the worker
// against the worker alone.
const routerGoal = 1.2

// routerEdits and routerRequests are how many edits and requests rows 18
// make.
const (
	routerEdits    = 30
	routerRequests = 200
)

// countedLeases counts the router's reads of the lease table.
type countedLeases struct {
	*lease.Table
	reads atomic.Int64
}

func (c *countedLeases) Get(ctx context.Context, id string) (lease.Lease, bool, error) {
	c.reads.Add(1)
	return c.Table.Get(ctx, id)
}

// benchRouter: rows 18a-18c. One dev server of the example site behind a
// worker's gate and proxy (httptest), and a router in front of it whose
// lease table (kumo's DynamoDB) names that worker.
func benchRouter(b *testing.B, e *env) {
	site := previewtest.PrepareSite(b)
	page := filepath.Join(site, "src", "pages", "index.astro")
	servers := newBenchServers(b)
	tokens := preview.NewTokens([]byte("bench fleet key"), time.Hour)
	const domain = ".preview.bench"
	id := preview.ID("acme", "alice")
	host := id + domain
	worker := httptest.NewServer(preview.NewGate(preview.GateConfig{Tokens: tokens, PerHost: true,
		Next: preview.NewProxy(preview.ProxyConfig{Servers: servers})}))
	b.Cleanup(worker.Close)

	emu := sqstest.Start(b)
	table := lease.NewTable(emu.DynamoDB(), emu.CreateLeaseTable(b, "bench-router"))
	leases := &countedLeases{Table: table}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := table.Take(ctx, lease.Lease{Preview: id, ClientID: "acme", UserID: "alice", Owner: "bench",
		Addr: strings.TrimPrefix(worker.URL, "http://")}, time.Hour); err != nil {
		b.Fatal(err)
	}
	router := httptest.NewServer(preview.NewRouter(preview.RouterConfig{Tokens: tokens, Domain: domain, Leases: leases}))
	b.Cleanup(router.Close)
	if err := servers.Target(ctx, preview.Target{ID: id, Key: "acme/alice", Dir: site, As: preview.RunAs{Home: b.TempDir()}}); err != nil {
		b.Fatalf("start the dev server: %v", err)
	}
	viaWorker, _ := url.Parse(worker.URL)
	viaRouter, _ := url.Parse(router.URL)
	h := previewtest.Header(host, tokens.Issue(id))

	// 18a: one HMR socket through the worker alone and one through router
	// and worker, open during the same edits.
	getPageWith(b, viaRouter, h)
	sw := previewtest.DialHMRWith(b, viaWorker, h)
	sr := previewtest.DialHMRWith(b, viaRouter, h)
	sw.Next(b, 10*time.Second, "connected")
	sr.Next(b, 10*time.Second, "connected")
	var dWorker, dRouter []time.Duration
	for i := range routerEdits {
		start := time.Now()
		setHeading(b, page, fmt.Sprintf("Routed edit %d at %d", i, start.UnixNano()))
		mw := sw.Next(b, 10*time.Second, "update", "full-reload")
		mr := sr.Next(b, 10*time.Second, "update", "full-reload")
		dWorker = append(dWorker, mw.At.Sub(start))
		dRouter = append(dRouter, mr.At.Sub(start))
		getPageWith(b, viaRouter, h)
		sw.Drain(30 * time.Millisecond)
		sr.Drain(0)
		time.Sleep(time.Until(start.Add(editGap)))
	}
	sw.Close()
	sr.Close()
	e.table.Check("18a", VsBaseline(dRouter, dWorker), Ratio(dRouter, dWorker) < routerGoal)
	b.ReportMetric(Ratio(dRouter, dWorker), "hmr-router-vs-worker-x")

	// 18b: one module (Vite's client) fetched through the worker alone and
	// through the router, taking turns.
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(base *url.URL) time.Duration {
		req, err := http.NewRequest(http.MethodGet, base.JoinPath("/@vite/client").String(), nil)
		if err != nil {
			b.Fatal(err)
		}
		req.Host = host
		req.Header.Set("Cookie", h.Get("Cookie"))
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = readAllDiscard(resp)
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("GET /@vite/client: %d", resp.StatusCode)
		}
		return time.Since(start)
	}
	readsBefore := leases.reads.Load()
	began := time.Now()
	var rWorker, rRouter []time.Duration
	for range routerRequests {
		rWorker = append(rWorker, get(viaWorker))
		rRouter = append(rRouter, get(viaRouter))
	}
	elapsed := time.Since(began)
	reads := leases.reads.Load() - readsBefore
	added := Median(rRouter) - Median(rWorker)
	e.table.Check("18b", fmt.Sprintf("%s (router %s, worker alone %s)", Ms(added), Ms(Median(rRouter)), Ms(Median(rWorker))), added < time.Millisecond)
	b.ReportMetric(ms(added), "router-added-per-request-ms")

	// 18c: DynamoDB calls per preview-hour, from the lease's renewal period
	// and the router's reads counted over the requests above.
	renewals := int(time.Hour / (config.Default().LeaseTTL / 3))
	e.table.Info("18c", fmt.Sprintf("worker: %d writes (renewals at LEASE_TTL %s); router: %d reads for %d requests in %s (one per 2 s at most while requests come: <= 1800 an hour per router; none for a page idle on its HMR socket)",
		renewals, config.Default().LeaseTTL, reads, 2*routerRequests, elapsed.Round(time.Millisecond)))
}

// getPageWith GETs the page at base with the headers h (Host, Cookie).
func getPageWith(tb testing.TB, base *url.URL, h http.Header) {
	tb.Helper()
	status, _, _ := previewtest.GetWith(tb, base.String(), h)
	if status != http.StatusOK {
		tb.Fatalf("GET %s: status %d", base, status)
	}
}

// readAllDiscard drains and closes a response body.
func readAllDiscard(resp *http.Response) (int64, error) {
	defer resp.Body.Close()
	var n int64
	buf := make([]byte, 32*1024)
	for {
		m, err := resp.Body.Read(buf)
		n += int64(m)
		if err != nil {
			return n, nil
		}
	}
}
