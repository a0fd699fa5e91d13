package worker_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/ledger"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/worker"
)

// cancelJob is a cancel of target for acme/u1.
func cancelJob(id, target string) jobs.Job {
	return jobs.Job{Type: jobs.TypeCancel, JobID: id, ClientID: "acme", UserID: "u1", TargetJobID: target}
}

// finalOf returns the final response to job id among responses.
func finalOf(t *testing.T, responses []jobs.Response, id string) jobs.Response {
	t.Helper()
	for _, r := range responses {
		if r.JobID == id {
			return r
		}
	}
	t.Fatalf("no final response to %s among %+v", id, responses)
	return jobs.Response{}
}

// TestCancel: a cancel stops its user's running job at once (it does not
// wait in the user's lane), keeps a queued one from running, is told
// "finished" for a job that already answered and "unknown" for one nobody
// has seen, which is answered cancelled if it comes later.
func TestCancel(t *testing.T) {
	for _, fifo := range []bool{true, false} {
		name := "standard"
		if fifo {
			name = "fifo"
		}
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, fifo, 30*time.Second)
			rec := &recorder{}
			e.start(t, nil, worker.Config{Handler: rec, Ledger: ledger.New(t.TempDir())})

			e.jobsQ.SendJob(t, job(jobs.TypeExecute, "long", "acme", "u1", "t1", "sleep:60s"))
			wait.For(t, 20*time.Second, "the long job to start", func() bool { return rec.calls.Load() == 1 })
			e.jobsQ.SendJob(t, job(jobs.TypeExecute, "after", "acme", "u1", "t1", "sleep:10ms"))
			start := time.Now()
			e.jobsQ.SendJob(t, cancelJob("c-long", "long"))
			final := e.responses.WaitFinal(t, 2, 20*time.Second)
			stopped := time.Since(start)
			long, c := finalOf(t, final, "long"), finalOf(t, final, "c-long")
			if long.Status != jobs.StatusFailed || long.Error == nil || long.Error.Code != jobs.CodeCancelled {
				t.Errorf("the cancelled job's answer: %+v %+v", long, long.Error)
			}
			if c.Status != jobs.StatusSucceeded || c.Cancelled != jobs.CancelRunning || c.Type != jobs.TypeCancel {
				t.Errorf("the cancel's answer: %+v", c)
			}
			t.Logf("the running job was answered cancelled %s after the cancel was sent", stopped.Round(time.Millisecond))
			if stopped > 10*time.Second {
				t.Errorf("the cancel took %s: it waited behind the job it stops", stopped)
			}
			final = e.responses.WaitFinal(t, 3, 20*time.Second)
			if a := finalOf(t, final, "after"); a.Status != jobs.StatusSucceeded {
				t.Errorf("the next job of the user: %+v %+v", a, a.Error)
			}

			// Finished: too late, nothing happens.
			e.jobsQ.SendJob(t, cancelJob("c-after", "after"))
			final = e.responses.WaitFinal(t, 4, 20*time.Second)
			if c := finalOf(t, final, "c-after"); c.Cancelled != jobs.CancelFinished {
				t.Errorf("cancel of a finished job: %+v", c)
			}
			// Unknown now; answered cancelled, without running, when it comes.
			e.jobsQ.SendJob(t, cancelJob("c-later", "later"))
			final = e.responses.WaitFinal(t, 5, 20*time.Second)
			if c := finalOf(t, final, "c-later"); c.Cancelled != jobs.CancelUnknown {
				t.Errorf("cancel of a job nobody has seen: %+v", c)
			}
			calls := rec.calls.Load()
			e.jobsQ.SendJob(t, job(jobs.TypeExecute, "later", "acme", "u1", "t1", "sleep:10ms"))
			final = e.responses.WaitFinal(t, 6, 20*time.Second)
			if l := finalOf(t, final, "later"); l.Error == nil || l.Error.Code != jobs.CodeCancelled || !strings.Contains(l.Error.Message, "before it started") {
				t.Errorf("the job cancelled before it came: %+v %+v", l, l.Error)
			}
			if rec.calls.Load() != calls {
				t.Error("the job cancelled before it came reached the handler")
			}
			waitQueueEmpty(t, e.jobsQ)
		})
	}
}

// TestCancelQueuedJob: a job waiting behind its user's running job is
// answered cancelled without running; the cancel says "queued".
func TestCancelQueuedJob(t *testing.T) {
	e := newEnv(t, false, 30*time.Second)
	root := t.TempDir()
	rec := &recorder{}
	e.start(t, nil, worker.Config{Handler: rec, Ledger: ledger.New(root)})
	e.jobsQ.SendJob(t, job(jobs.TypeExecute, "first", "acme", "u1", "t1", "sleep:3s"))
	wait.For(t, 20*time.Second, "the first job to start", func() bool { return rec.calls.Load() == 1 })
	// A standard queue hands the second job out at once: it waits in the
	// lane, recorded on the root as queued.
	e.jobsQ.SendJob(t, job(jobs.TypeExecute, "second", "acme", "u1", "t1", "sleep:10ms"))
	wait.For(t, 20*time.Second, "the second job to wait", func() bool {
		r, found, err := ledger.New(root).Get(jobs.Job{ClientID: "acme", UserID: "u1", JobID: "second"})
		return err == nil && found && r.State == ledger.StateQueued
	})
	e.jobsQ.SendJob(t, cancelJob("c-second", "second"))
	final := e.responses.WaitFinal(t, 3, 30*time.Second)
	if c := finalOf(t, final, "c-second"); c.Cancelled != jobs.CancelQueued {
		t.Errorf("cancel of a waiting job: %+v", c)
	}
	if s := finalOf(t, final, "second"); s.Error == nil || s.Error.Code != jobs.CodeCancelled {
		t.Errorf("the waiting job's answer: %+v %+v", s, s.Error)
	}
	if f := finalOf(t, final, "first"); f.Status != jobs.StatusSucceeded {
		t.Errorf("the running job was touched: %+v", f)
	}
	if rec.calls.Load() != 1 {
		t.Errorf("handler called %d times, want 1 (the cancelled job never runs)", rec.calls.Load())
	}
}

// TestCancelMarkFromAnotherWorker: a cancel mark left on the root (by a
// worker that received the cancel) stops a job running here within the
// poll interval.
func TestCancelMarkFromAnotherWorker(t *testing.T) {
	e := newEnv(t, true, 30*time.Second)
	root := t.TempDir()
	rec := &recorder{}
	e.start(t, nil, worker.Config{Handler: rec, Ledger: ledger.New(root), CancelPoll: 100 * time.Millisecond})
	e.jobsQ.SendJob(t, job(jobs.TypeExecute, "long", "acme", "u1", "t1", "sleep:60s"))
	wait.For(t, 20*time.Second, "the job to start", func() bool { return rec.calls.Load() == 1 })
	start := time.Now()
	if err := ledger.New(root).RequestCancel(jobs.Job{ClientID: "acme", UserID: "u1"}, "long", "c-elsewhere"); err != nil {
		t.Fatal(err)
	}
	final := e.responses.WaitFinal(t, 1, 20*time.Second)
	t.Logf("answered %s after the mark", time.Since(start).Round(time.Millisecond))
	if r := final[0]; r.Error == nil || r.Error.Code != jobs.CodeCancelled || !strings.Contains(r.Error.Message, "c-elsewhere") {
		t.Errorf("answer: %+v %+v", r, r.Error)
	}
	wait.For(t, 20*time.Second, "the cancel mark to go once the job answered", func() bool {
		_, ok, err := ledger.New(root).CancelRequested(jobs.Job{ClientID: "acme", UserID: "u1", JobID: "long"})
		return err == nil && !ok
	})
}

// finishesAnyway is a test handler whose job is past the point a cancel can
// stop (its agent done, its commit under way): once its context is
// cancelled it still answers succeeded.
type finishesAnyway struct{ started atomic.Bool }

func (h *finishesAnyway) Handle(ctx context.Context, job jobs.Job, _ jobs.ProgressFunc) (jobs.Response, error) {
	h.started.Store(true)
	<-ctx.Done()
	return jobs.Response{Commit: "c-" + job.JobID}, nil
}

// TestCancelOfAJobThatFinishesAnywayAnswersFinished: a cancel that reaches
// a job which then answers succeeded says "finished", not "running".
func TestCancelOfAJobThatFinishesAnywayAnswersFinished(t *testing.T) {
	e := newEnv(t, true, 30*time.Second)
	h := &finishesAnyway{}
	e.start(t, nil, worker.Config{Handler: h, Ledger: ledger.New(t.TempDir())})
	e.jobsQ.SendJob(t, job(jobs.TypeExecute, "done", "acme", "u1", "t1", "commit"))
	wait.For(t, 20*time.Second, "the job to start", h.started.Load)
	e.jobsQ.SendJob(t, cancelJob("c-done", "done"))
	final := e.responses.WaitFinal(t, 2, 20*time.Second)
	if d := finalOf(t, final, "done"); d.Status != jobs.StatusSucceeded {
		t.Fatalf("the target's answer: %+v %+v", d, d.Error)
	}
	if c := finalOf(t, final, "c-done"); c.Status != jobs.StatusSucceeded || c.Cancelled != jobs.CancelFinished {
		t.Errorf("the cancel of a job that answered succeeded says %q, want %q", c.Cancelled, jobs.CancelFinished)
	}
}
