package site_test

import (
	"context"
	"sync"
	"testing"

	"github.com/webordinary/claude-code-astro/internal/agent"
	"github.com/webordinary/claude-code-astro/internal/gateway"
	"github.com/webordinary/claude-code-astro/internal/testkit/sandboxtest"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/jobs/site"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// leaseRecorder is the handler's Gateway: a real gateway that records the
// options of every lease it gives.
type leaseRecorder struct {
	*gateway.Gateway
	mu   sync.Mutex
	opts []gateway.LeaseOptions
}

func (g *leaseRecorder) Lease(opts gateway.LeaseOptions) *gateway.Lease {
	g.mu.Lock()
	g.opts = append(g.opts, opts)
	g.mu.Unlock()
	return g.Gateway.Lease(opts)
}

// TestOnlyExecuteGetsAnAPICredential: an init and a revert job get a lease
// without an API credential (their install scripts and git run as the
// tenant, and could read one); an execute gets one, handed to the agent;
// every lease may push only the job's own thread.
func TestOnlyExecuteGetsAnAPICredential(t *testing.T) {
	sandboxtest.RequireRoot(t)
	e := newEnv(t, workspacetest.NewGit(t), "leases")
	gw := &leaseRecorder{Gateway: gateway.New(gateway.Config{})}
	e.h = site.New(site.Config{Workspaces: e.ws, Agent: e.agent, Preview: e.preview, PreviewURL: previewURL, Gateway: gw})
	var agentKey string
	runStep(t, e, 0, step{job: initJob("i1", "t1")})
	runStep(t, e, 1, step{job: execJob("e1", "t1", "edit"), agent: func(t *testing.T, ctx context.Context, req agent.Request, p func(agent.Progress)) (agent.Result, error) {
		agentKey = req.APIKey
		return edit("s1", map[string]string{page: "<h1>Edited</h1>\n"})(t, ctx, req, p)
	}})
	runStep(t, e, 2, step{job: jobs.Job{Type: jobs.TypeRevert, JobID: "r1", ThreadID: "t1", Steps: 1}})
	gw.mu.Lock()
	defer gw.mu.Unlock()
	if len(gw.opts) != 3 {
		t.Fatalf("%d leases, want 3", len(gw.opts))
	}
	for i, want := range []bool{false, true, false} {
		if o := gw.opts[i]; o.API != want || o.ThreadID != "t1" {
			t.Errorf("lease %d: API %v thread %q, want API %v thread t1", i, o.API, o.ThreadID, want)
		}
	}
	if agentKey == "" {
		t.Error("the execute's agent got no API credential")
	}
}
