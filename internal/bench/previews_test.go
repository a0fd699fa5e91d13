package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/sandboxtest"
	"github.com/webordinary/claude-code-astro/preview"
	"github.com/webordinary/claude-code-astro/preview/previewtest"
	"github.com/webordinary/claude-code-astro/workspace"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// previewUser is one user of the Previews section: their workspace and
// the headers of a browser signed in to their preview.
type previewUser struct {
	name   string
	ws     *workspace.User
	target preview.Target
	header http.Header
}

// benchPreviews: rows 14a-14e, previews per user. Two users' workspaces of
// the example site, each under its tenant uid, their dev servers run by
// preview.Servers behind the Gate and the Proxy, as the worker serves them.
func benchPreviews(b *testing.B, e *env) {
	const starts, editsPerUser, gateBatches, gateBatch = 3, 25, 300, 100
	g := workspacetest.NewGit(b)
	remote := workspacetest.NewRemote(b, g, previewtest.SiteFiles(b))
	ws, err := workspace.Open(workspace.Config{
		Root: sandboxtest.Root(b), Sandbox: sandboxtest.New(b), PATH: os.Getenv("PATH"),
		NpmSeedCache: e.npmCache, Logger: quietLogger(b),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	tokens := preview.NewTokens(key, time.Hour)
	servers := preview.NewServers(preview.ServersConfig{
		BasePort: previewtest.FreePort(b), PATH: previewtest.NodePATH(b), MaxServers: 3,
		Logger: quietLogger(b), ReadyTimeout: 90 * time.Second,
	})
	b.Cleanup(func() {
		closeCtx, cancelClose := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancelClose()
		if err := servers.Close(closeCtx); err != nil {
			b.Errorf("close the dev servers: %v", err)
		}
	})
	gate := preview.NewGate(preview.GateConfig{Tokens: tokens, PerHost: true,
		Next: preview.NewProxy(preview.ProxyConfig{Servers: servers})})
	srv := httptest.NewServer(gate)
	b.Cleanup(srv.Close)
	base, err := url.Parse(srv.URL)
	if err != nil {
		b.Fatal(err)
	}

	users := make([]*previewUser, 0, 2)
	for _, name := range []string{"alice", "bob"} {
		u, err := ws.User("acme", name)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := u.Init(ctx, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "t1"}); err != nil {
			b.Fatalf("first init of %s: %v", name, err)
		}
		id := preview.ID("acme", name)
		users = append(users, &previewUser{name: name, ws: u,
			target: preview.Target{ID: id, Key: u.Tenant.Key, ThreadID: "t1", Dir: u.ProjectDir,
				As: preview.RunAs{Credential: u.Tenant.Credential(), Home: u.HomeDir}},
			header: previewtest.Header(id+".preview.test:"+base.Port(), tokens.Issue(id)),
		})
	}
	alice, bob := users[0], users[1]
	// initToServing is an init job's path to a serving preview on a
	// prepared workspace: resumed init, the user's dev server, the first
	// page through the gate.
	initToServing := func(u *previewUser) time.Duration {
		start := time.Now()
		if _, err := u.ws.Init(ctx, workspace.InitOptions{ThreadID: "t1"}); err != nil {
			b.Fatalf("resumed init of %s: %v", u.name, err)
		}
		if err := servers.Target(ctx, u.target); err != nil {
			b.Fatalf("start %s's dev server: %v", u.name, err)
		}
		if status, _, _ := previewtest.GetWith(b, base.String(), u.header); status != http.StatusOK {
			b.Fatalf("%s's preview: status %d", u.name, status)
		}
		return time.Since(start)
	}
	initToServing(alice)

	// 14a: the second user's preview, while the first one's runs.
	var second []time.Duration
	for i := range starts {
		second = append(second, initToServing(bob))
		if i < starts-1 {
			if err := servers.Stop(ctx, bob.target.ID); err != nil {
				b.Fatalf("stop bob's dev server: %v", err)
			}
		}
	}
	e.table.Check("14a", fmt.Sprintf("first %s, then %s", Ms(second[0]), medMax(second[1:])), Quantile(second, 1) < 5*time.Second)
	b.ReportMetric(ms(Median(second)), "second-preview-median-ms")

	// 14b: what the second dev server costs in memory.
	rss := map[string]treeSample{}
	for _, info := range servers.List() {
		t, err := treeMemory(info.PID)
		if err != nil {
			b.Fatalf("memory of %s's dev server: %v", info.Key, err)
		}
		rss[info.ID] = t
	}
	if len(rss) != 2 {
		b.Fatalf("%d dev servers running, want 2", len(rss))
	}
	extra := rss[bob.target.ID]
	e.table.Info("14b", fmt.Sprintf("%s (%d processes); the first user's: %s", MiB(extra.total), extra.procs, MiB(rss[alice.target.ID].total)))
	b.ReportMetric(float64(extra.total)/(1<<20), "extra-dev-server-MiB")

	// 14c: HMR through the gate with both dev servers running, edits taking
	// turns between the two users' sites.
	sockets := map[string]*previewtest.HMRSocket{}
	for _, u := range users {
		previewtest.GetWith(b, base.String(), u.header)
		sockets[u.name] = previewtest.DialHMRWith(b, base, u.header)
		sockets[u.name].Next(b, 10*time.Second, "connected")
	}
	var hmr []time.Duration
	for i := range 2 * editsPerUser {
		u := users[i%2]
		page := filepath.Join(u.ws.ProjectDir, "src", "pages", "index.astro")
		start := time.Now()
		setHeading(b, page, fmt.Sprintf("%s's edit %d at %d", u.name, i, start.UnixNano()))
		m := sockets[u.name].Next(b, 10*time.Second, "update", "full-reload")
		hmr = append(hmr, m.At.Sub(start))
		previewtest.GetWith(b, base.String(), u.header) // as the reloaded page does
		sockets[u.name].Drain(30 * time.Millisecond)
		time.Sleep(time.Until(start.Add(editGap / 2))) // one user's edits stay editGap apart
	}
	for _, s := range sockets {
		s.Close()
	}
	e.table.Check("14c", medP95(hmr), Median(hmr) < 20*time.Millisecond)
	b.ReportMetric(ms(Median(hmr)), "hmr-two-servers-median-ms")

	// 14d: the gate's token check, in process: the same authenticated
	// request through the gate and straight to the handler behind it, in
	// batches; the difference of the batches' per-request medians.
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	check := preview.NewGate(preview.GateConfig{Tokens: tokens, PerHost: true, Next: next})
	req := httptest.NewRequest(http.MethodGet, "http://"+alice.header.Get("Host")+"/src/pages/index.astro", nil)
	req.Header.Set("Cookie", alice.header.Get("Cookie"))
	probe := httptest.NewRecorder()
	check.ServeHTTP(probe, req)
	if probe.Code != http.StatusNoContent {
		b.Fatalf("the gate answered %d to a valid cookie", probe.Code)
	}
	perRequest := func(h http.Handler) time.Duration {
		start := time.Now()
		for range gateBatch {
			h.ServeHTTP(httptest.NewRecorder(), req)
		}
		return time.Since(start) / gateBatch
	}
	var gated, bare []time.Duration
	for range gateBatches {
		gated = append(gated, perRequest(check))
		bare = append(bare, perRequest(next))
	}
	added := Median(gated) - Median(bare)
	e.table.Check("14d", fmt.Sprintf("%s (handler alone %s)", us(added), us(Median(bare))), added < 100*time.Microsecond)
	b.ReportMetric(float64(added)/float64(time.Microsecond), "token-check-us")
}

// us formats a duration in microseconds.
func us(d time.Duration) string {
	return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond))
}
