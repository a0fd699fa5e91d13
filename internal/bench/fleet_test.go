package bench

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/sqstest"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/worker"
)

// Goals of the fleet rows.
const (
	// Row 17a: the makespan of a backlog over two workers against the
	// ideal (every lane busy from the start).
	spreadGoal = 1.3
	// Row 17b: row 4's throughput holding only what runs, against the same
	// worker prefetching 10 messages per lane as it used to.
	fewerMessagesGoal = 0.9
)

// sleepHandler takes d per job and counts the jobs it ran.
type sleepHandler struct {
	d  time.Duration
	mu sync.Mutex
	n  int
}

func (h *sleepHandler) Handle(ctx context.Context, _ jobs.Job, _ jobs.ProgressFunc) (jobs.Response, error) {
	select {
	case <-time.After(h.d):
	case <-ctx.Done():
		return jobs.Response{}, ctx.Err()
	}
	h.mu.Lock()
	h.n++
	h.mu.Unlock()
	return jobs.Response{}, nil
}

func (h *sleepHandler) ran() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// benchFleet: rows 17a-17c.
func benchFleet(b *testing.B, e *env) {
	benchSpread(b, e)
	benchFewerMessages(b, e)
	benchFromZero(b, e)
}

// benchSpread: row 17a. Eight users' 4 s jobs wait in the queue; a worker
// starts, a second one 1 s later (MAX_CONCURRENT_USERS 2 each): the time
// from the first worker's start to the last answer, against the ideal of
// the four lanes busy from the start (8 jobs x 4 s / 4 lanes).
func benchSpread(b *testing.B, e *env) {
	const users, lanes, late = 8, 2, time.Second
	const jobLen = 4 * time.Second
	emu := sqstest.Start(b)
	jobsQ, respQ := queues(b, emu, "spread")
	ctx := context.Background()
	for u := range users {
		if err := sendJob(ctx, jobsQ, noopJob(fmt.Sprintf("spread-%d", u), fmt.Sprintf("user%d", u))); err != nil {
			b.Fatal(err)
		}
	}
	responses := collect(b, respQ, 1)
	first, second := &sleepHandler{d: jobLen}, &sleepHandler{d: jobLen}
	start := time.Now()
	runWorkerWith(b, emu, jobsQ, respQ, worker.Config{Handler: first, MaxConcurrentUsers: lanes})
	time.Sleep(late) // the second worker's late start is the measurement's setting
	runWorkerWith(b, emu, jobsQ, respQ, worker.Config{Handler: second, MaxConcurrentUsers: lanes})
	all := responses.all(b, users, 2*time.Minute)
	var last time.Time
	for _, r := range all {
		if r.resp.Status != jobs.StatusSucceeded {
			b.Fatalf("job %s: %+v", r.resp.JobID, r.resp)
		}
		if r.at.After(last) {
			last = r.at
		}
	}
	makespan := last.Sub(start)
	ideal := time.Duration(users) * jobLen / (2 * lanes)
	ratio := float64(makespan) / float64(ideal)
	e.table.Check("17a", fmt.Sprintf("%.2fx (%s, ideal %s; the first worker ran %d jobs, the late one %d)",
		ratio, Ms(makespan), Ms(ideal), first.ran(), second.ran()), ratio < spreadGoal)
	b.ReportMetric(ratio, "spread-vs-ideal-x")
}

// benchFewerMessages: row 17b, row 4's measure holding only what runs,
// against the same worker prefetching as it used to (10 messages per lane
// held), taking turns, best of 3 each.
func benchFewerMessages(b *testing.B, e *env) {
	const rounds, lanes = 3, 10
	var now, before float64
	for i := range rounds {
		r, _, _ := throughput(b, fmt.Sprintf("fewer-%d", i), 0)
		now = max(now, r)
		r, _, _ = throughput(b, fmt.Sprintf("prefetch-%d", i), 10*lanes)
		before = max(before, r)
	}
	ratio := now / before
	e.table.Check("17b", fmt.Sprintf("%.2fx (%.0f jobs/s holding only what runs, %.0f jobs/s prefetching)", ratio, now, before), ratio >= fewerMessagesGoal)
	b.ReportMetric(ratio, "fewer-messages-vs-prefetch-x")
}

// benchFromZero: row 17c, the worker's part of a job's wait from zero
// tasks: a job waits in the queue; the worker binary starts; exec to the
// job's answer on the response queue (a cancel of an unknown job: the
// queue path, no workspace), median of 5.
func benchFromZero(b *testing.B, e *env) {
	const starts = 5
	emu := sqstest.Start(b)
	jobsQ, respQ := queues(b, emu, "fromzero")
	responses := collect(b, respQ, 1)
	e.workerBin(b) // built before the clock starts
	var took []time.Duration
	for i := range starts {
		id := fmt.Sprintf("zero-%d", i)
		c := jobs.Job{Type: jobs.TypeCancel, JobID: id, ClientID: "acme", UserID: "alice", TargetJobID: "nothing-" + id}
		if err := sendJob(context.Background(), jobsQ, c); err != nil {
			b.Fatal(err)
		}
		p := e.startWorker(b, workerEnv(b, emu, jobsQ, respQ))
		r := responses.wait(b, id, 60*time.Second)
		if r.resp.Status != jobs.StatusSucceeded {
			b.Fatalf("job %s: %+v", id, r.resp)
		}
		took = append(took, r.at.Sub(p.started))
		p.stop()
	}
	e.table.Info("17c", medMax(took)+"; add the scaler's minute or two and Fargate's task start (see infra/README.md)")
	b.ReportMetric(ms(Median(took)), "from-zero-worker-ms")
}
