package bench

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/fakeanthropic"
	"github.com/webordinary/claude-code-astro/internal/testkit/sqstest"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// benchCancel: rows 15a and 15b, from a cancel's receipt to the agent of
// the job it stops being gone (the CLI and its process tree), when the
// worker running the job received the cancel and when another worker on
// the same queue and root did.
func benchCancel(b *testing.B, e *env) {
	const n = 5
	emu := sqstest.Start(b)
	jobsQ, respQ := queues(b, emu, "cancel")
	front := sqstest.NewPausableFront(b, emu.URL)      // the worker that runs the jobs
	otherFront := sqstest.NewPausableFront(b, emu.URL) // the one that receives the cancels
	api := fakeanthropic.New(b)
	vars := workerEnv(b, emu, jobsQ, respQ)
	vars["CLAUDE_BIN"] = e.claudeBin(b)
	vars["ANTHROPIC_BASE_URL"] = api.URL
	vars["REPO_URL"] = workspacetest.NewRemote(b, workspacetest.NewGit(b), workspacetest.SiteFiles()).URL
	runner := maps.Clone(vars)
	runner["AWS_ENDPOINT_URL"] = front.URL
	a := e.startWorker(b, runner)
	a.waitHealthy(20*time.Millisecond, 30*time.Second)
	responses := collect(b, respQ, 1)
	w := &agentWorker{p: a, api: api, jobsQ: jobsQ, responses: responses, workspace: vars["WORKSPACE_PATH"]}
	w.run(b, initJob("init", "bench"), 2*time.Minute)

	// The agent reads the page, then waits on the API until stopped.
	page := w.page("bench")
	api.SetDecider(func(req *fakeanthropic.Request) fakeanthropic.Step {
		if req.Turn == 0 {
			return fakeanthropic.Read(page)
		}
		return fakeanthropic.Hang()
	})
	var other *workerProc
	stopOne := func(id string) time.Duration {
		offset := a.logs.Len()
		waiting := func() int {
			n := 0
			for _, r := range api.MessageRequests() {
				if r.Turn == 1 {
					n++
				}
			}
			return n
		}
		before := waiting()
		if other != nil {
			otherFront.Pause() // the job goes to the first worker
		}
		if err := sendJob(context.Background(), jobsQ, execJob(id, "bench", "Read the page and think")); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Minute)
		for waiting() == before {
			if time.Now().After(deadline) {
				b.Fatalf("job %s: the agent never reached the API's second turn", id)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if other != nil {
			front.Pause() // and the cancel to the other one
			otherFront.Resume()
			defer front.Resume()
		}
		if err := sendJob(context.Background(), jobsQ, jobs.Job{Type: jobs.TypeCancel, JobID: "c-" + id,
			ClientID: "acme", UserID: "bench", TargetJobID: id}); err != nil {
			b.Fatal(err)
		}
		c := responses.wait(b, "c-"+id, time.Minute).resp
		t := responses.wait(b, id, time.Minute).resp
		if c.Cancelled != jobs.CancelRunning || t.Error == nil || t.Error.Code != jobs.CodeCancelled {
			b.Fatalf("cancel %s: %+v; target %+v %+v", id, c, t, t.Error)
		}
		received, err := time.Parse(time.RFC3339Nano, c.ReceivedAt)
		if err != nil {
			b.Fatal(err)
		}
		handledBy := a
		if other != nil {
			handledBy = other
		}
		if !logged(handledBy, "cancel delivered", "c-"+id) {
			b.Fatalf("cancel c-%s was not received by the worker meant to receive it", id)
		}
		for _, l := range a.logLines(offset) {
			if l["msg"] == "agent finished" && l["job_id"] == id {
				stopped, err := time.Parse(time.RFC3339Nano, l["time"].(string))
				if err != nil {
					b.Fatal(err)
				}
				return stopped.Sub(received)
			}
		}
		b.Fatalf("job %s: no \"agent finished\" line in the running worker's log", id)
		return 0
	}

	var same, across []time.Duration
	for i := range n {
		same = append(same, stopOne(fmt.Sprintf("same-%d", i)))
	}
	// The second worker: same queues and root.
	second := maps.Clone(vars)
	second["HTTP_ADDR"] = freeAddr(b)
	second["AWS_ENDPOINT_URL"] = otherFront.URL
	other = e.startWorker(b, second)
	other.waitHealthy(20*time.Millisecond, 30*time.Second)
	for i := range n {
		across = append(across, stopOne(fmt.Sprintf("across-%d", i)))
	}
	e.table.Info("15a", medMax(same))
	e.table.Check("15b", medMax(across), Quantile(across, 1) < 2*time.Second)
	b.ReportMetric(ms(Median(same)), "cancel-same-worker-median-ms")
	b.ReportMetric(ms(Median(across)), "cancel-across-workers-median-ms")
}

// logged reports whether p logged msg for job id.
func logged(p *workerProc, msg, id string) bool {
	for _, l := range p.logLines(0) {
		if l["msg"] == msg && l["job_id"] == id {
			return true
		}
	}
	return false
}
