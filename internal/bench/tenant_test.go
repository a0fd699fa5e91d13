package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/gateway"
	"github.com/webordinary/claude-code-astro/internal/redact"
	"github.com/webordinary/claude-code-astro/internal/sandbox"
	"github.com/webordinary/claude-code-astro/internal/secrets"
	"github.com/webordinary/claude-code-astro/internal/testkit/fakeanthropic"
	"github.com/webordinary/claude-code-astro/internal/testkit/sandboxtest"
	"github.com/webordinary/claude-code-astro/workspace"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// benchGateway: rows 12a-12c, what the API gateway adds to a Messages API
// call: the same streamed calls to the fake API, straight and through the
// gateway, interleaved in one run; time to the first byte of the answer's
// body and to its end.
func benchGateway(b *testing.B, e *env) {
	const calls = 300
	api := fakeanthropic.New(b, fakeanthropic.Text("A short answer from the fake API, streamed as events."))
	g := gateway.New(gateway.Config{APIUpstream: api.URL, APIKey: secrets.Static("ANTHROPIC_API_KEY", benchAPIKey, redact.New())})
	ctx, cancel := context.WithCancel(context.Background())
	done, err := g.Listen(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cancel(); <-done })
	lease := g.Lease(gateway.LeaseOptions{API: true, Tenant: "acme/bench"})
	defer lease.Close()
	body, _ := json.Marshal(map[string]any{"model": "claude-sonnet-4-5", "max_tokens": 1000, "stream": true,
		"tools":    []map[string]any{{"name": "Read"}},
		"messages": []map[string]any{{"role": "user", "content": "Hello"}}})
	client := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 4}}
	call := func(base, key string) (ttfb, total time.Duration) {
		req, _ := http.NewRequest(http.MethodPost, base+"/v1/messages?beta=true", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Api-Key", key)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		one := make([]byte, 1)
		if _, err := io.ReadFull(resp.Body, one); err != nil {
			b.Fatal(err)
		}
		ttfb = time.Since(start)
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			b.Fatal(err)
		}
		total = time.Since(start)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
		return ttfb, total
	}
	var directFirst, directTotal, viaFirst, viaTotal []time.Duration
	for i := range calls + 10 {
		df, dt := call(api.URL, benchAPIKey)
		vf, vt := call(lease.APIBaseURL(), lease.APIKey())
		if i < 10 {
			continue // warm-up: connections, first allocations
		}
		directFirst, directTotal = append(directFirst, df), append(directTotal, dt)
		viaFirst, viaTotal = append(viaFirst, vf), append(viaTotal, vt)
	}
	added := func(via, direct []time.Duration, q float64) time.Duration {
		return Quantile(via, q) - Quantile(direct, q)
	}
	firstMed, totalMed := added(viaFirst, directFirst, 0.5), added(viaTotal, directTotal, 0.5)
	e.table.Check("12a", fmt.Sprintf("%s (p95 %s); straight %s, through %s", Ms(firstMed), Ms(added(viaFirst, directFirst, 0.95)),
		Ms(Median(directFirst)), Ms(Median(viaFirst))), firstMed < 2*time.Millisecond)
	e.table.Check("12b", fmt.Sprintf("%s (p95 %s); straight %s, through %s", Ms(totalMed), Ms(added(viaTotal, directTotal, 0.95)),
		Ms(Median(directTotal)), Ms(Median(viaTotal))), totalMed < 2*time.Millisecond)
	perJob := e.callsPerExecute
	if perJob == 0 {
		perJob = 4 // the scripted job of row 7: Read, Edit, text, and a side request
	}
	e.table.Info("12c", fmt.Sprintf("%s (%d calls a job x the median added total)", Ms(time.Duration(perJob)*totalMed), perJob))
	b.ReportMetric(ms(totalMed), "gateway-added-median-ms")
}

// benchSandbox: rows 13a-13c, what running a tenant under its own uid adds,
// against the worker's own uid, in one run: resumed inits through the
// workspace package on the small test site, and execute jobs of the worker
// binary (root, which confines itself and switches uids, against the same
// binary run as a plain user, which serves its one tenant as itself).
func benchSandbox(b *testing.B, e *env) {
	const resumes, executes = 9, 5
	if !sandbox.CanSwitchUIDs() {
		b.Fatal("the sandbox rows need root (CI runs as root)")
	}
	// 13a: resumed init, tenant uid against the worker's.
	resumed := map[bool][]time.Duration{}
	for _, separate := range []bool{true, false} {
		root := sandboxtest.Root(b)
		sb, err := sandbox.New(sandbox.Config{Root: root, UIDs: sandboxtest.ClaimUIDs(b), Unprivileged: !separate})
		if err != nil {
			b.Fatal(err)
		}
		ws, err := workspace.Open(workspace.Config{Root: root, Sandbox: sb, PATH: os.Getenv("PATH"), Logger: quietLogger(b)})
		if err != nil {
			b.Fatal(err)
		}
		remote := workspacetest.NewRemote(b, workspacetest.NewGit(b), workspacetest.SiteFiles())
		u, err := ws.User("acme", "bench")
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		if _, err := u.Init(ctx, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "t1"}); err != nil {
			b.Fatal(err)
		}
		for range resumes {
			start := time.Now()
			if _, err := u.Init(ctx, workspace.InitOptions{ThreadID: "t1"}); err != nil {
				b.Fatal(err)
			}
			resumed[separate] = append(resumed[separate], time.Since(start))
		}
		cancel()
	}
	addedInit := Median(resumed[true]) - Median(resumed[false])
	e.table.Check("13a", fmt.Sprintf("%s (tenant uid %s, worker's uid %s)", Ms(addedInit), Ms(Median(resumed[true])), Ms(Median(resumed[false]))),
		addedInit < 50*time.Millisecond)

	// 13b: execute jobs of the binary, confined root against a plain user.
	overhead := map[bool][]time.Duration{}
	var rss = map[bool]int64{}
	for _, separate := range []bool{true, false} {
		var as *syscall.Credential
		extra := map[string]string{}
		if !separate {
			const plainUID = 3999990
			as = &syscall.Credential{Uid: plainUID, Gid: plainUID, Groups: []uint32{}}
			ws, home := sandboxtest.Root(b), workspacetest.Reachable(b)
			for _, d := range []string{ws, home} {
				if err := os.Chown(d, plainUID, plainUID); err != nil {
					b.Fatal(err)
				}
			}
			extra["WORKSPACE_PATH"], extra["HOME"] = ws, home
		}
		w := e.startAgentWorkerAs(b, fmt.Sprintf("sandbox-%v", separate), workspacetest.SiteFiles(), extra, as)
		w.run(b, initJob("init", "bench"), 2*time.Minute)
		page := w.page("bench")
		heading := "<h1>Hello</h1>"
		for i := range executes + 1 {
			next := fmt.Sprintf("<h1>Edit %d</h1>", i)
			w.api.SetScript(fakeanthropic.EditFile(page, heading, next, "Done.")...)
			offset := w.p.logs.Len()
			r := w.run(b, execJob(fmt.Sprintf("exec-%d", i), "bench", "Change the heading to Edit "+strconv.Itoa(i)), 3*time.Minute)
			heading = next
			if i == 0 {
				continue
			}
			rec, fin := times(b, r.resp)
			wall, _ := agentTimes(b, w.p, offset)
			overhead[separate] = append(overhead[separate], fin.Sub(rec)-wall)
		}
		bytes, err := procStatusKB(w.p.pid(), "VmRSS") // in bytes, despite its name
		if err != nil {
			b.Fatal(err)
		}
		rss[separate] = bytes
		w.p.stop()
	}
	addedExec := Median(overhead[true]) - Median(overhead[false])
	e.table.Check("13b", fmt.Sprintf("%s (tenant uids %s, one uid %s)", Ms(addedExec), Ms(Median(overhead[true])), Ms(Median(overhead[false]))),
		addedExec < 50*time.Millisecond)
	e.table.Info("13c", fmt.Sprintf("%s confined root with tenant uids, %s as a plain user", MiB(rss[true]), MiB(rss[false])))
	b.ReportMetric(ms(addedInit), "sandbox-added-init-ms")
	b.ReportMetric(ms(addedExec), "sandbox-added-execute-ms")
}
