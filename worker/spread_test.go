package worker_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/ledger"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/worker"
)

// TestBacklogSpreadsOverLateWorker: a worker holds only what it runs, so
// a backlog of eight users waits in the queue, visible, and a second
// worker started late takes its share; a user's burst still runs in order,
// one job at a time.
func TestBacklogSpreadsOverLateWorker(t *testing.T) {
	e := newEnv(t, true, 30*time.Second)
	root := t.TempDir()
	const jobLen = 2 * time.Second
	users := []string{"u1", "u2", "u3", "u4", "u5", "u6", "u7"}
	for _, u := range users {
		e.jobsQ.SendJob(t, job(jobs.TypeExecute, u+"-0", "acme", u, "t1", "sleep:"+jobLen.String()))
	}
	const burst = 4
	for i := range burst {
		e.jobsQ.SendJob(t, job(jobs.TypeExecute, fmt.Sprintf("burst-%d", i), "acme", "burst", "t1", "sleep:200ms"))
	}
	total := len(users) + burst

	first, second := &recorder{}, &recorder{}
	start := time.Now()
	w1, _ := e.start(t, nil, worker.Config{Handler: first, Ledger: ledger.New(root), MaxConcurrentUsers: 2})
	wait.For(t, 15*time.Second, "the first worker to run two jobs", func() bool { return w1.Stats().InFlight == 2 })
	// The backlog stays in the queue for anyone: the first worker holds
	// its two running jobs (and any of the burst that came in the same
	// answer).
	if v, _ := e.jobsQ.Count(t); v < total-4 {
		t.Errorf("with two jobs running, only %d messages of %d are visible: the worker hoards the backlog", v, total)
	}
	v, f := e.jobsQ.Count(t)
	t.Logf("with the first worker busy: %d visible, %d in flight", v, f)
	e.start(t, nil, worker.Config{Handler: second, Ledger: ledger.New(root), MaxConcurrentUsers: 2})

	final := e.responses.WaitFinal(t, total, 60*time.Second)
	makespan := time.Since(start)
	for _, r := range final {
		if r.Status != jobs.StatusSucceeded {
			t.Errorf("job %s: %+v", r.JobID, r.Error)
		}
	}
	ran1, ran2 := len(first.Spans()), len(second.Spans())
	t.Logf("first worker ran %d jobs, the late one %d; makespan %s", ran1, ran2, makespan.Round(10*time.Millisecond))
	if ran1 < 3 || ran2 < 3 {
		t.Errorf("the first worker ran %d jobs, the late one %d: the backlog did not spread", ran1, ran2)
	}

	var burstSpans []span
	for _, s := range append(first.Spans(), second.Spans()...) {
		if s.job.UserID == "burst" {
			burstSpans = append(burstSpans, s)
		}
	}
	slices.SortFunc(burstSpans, func(a, b span) int { return a.start.Compare(b.start) })
	for i, s := range burstSpans {
		if want := fmt.Sprintf("burst-%d", i); s.job.JobID != want {
			t.Errorf("the burst's job %d to start was %s, want %s", i, s.job.JobID, want)
		}
		if i > 0 && s.start.Before(burstSpans[i-1].end) {
			t.Errorf("%s started before %s ended: one user's jobs overlapped", s.job.JobID, burstSpans[i-1].job.JobID)
		}
	}
	waitQueueEmpty(t, e.jobsQ)
}
