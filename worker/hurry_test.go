package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/ledger"
	"github.com/webordinary/claude-code-astro/internal/logging"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/worker"
)

// TestHurryCutsTheDrainShort: a second stop (Ctrl-C twice) does not leave
// a running job behind: the job is cancelled at once instead of at the end
// of the drain, its message released (not answered, not deleted), and a
// worker started next runs it.
func TestHurryCutsTheDrainShort(t *testing.T) {
	e := newEnv(t, true, 30*time.Second)
	rec := &recorder{}
	root := t.TempDir()
	w, err := worker.New(e.emu.SQS(), worker.Config{JobQueueURL: e.jobsQ.URL, ResponseQueueURL: e.respQ.URL, Handler: rec,
		Ledger: ledger.New(root), WaitTime: time.Second, DrainTimeout: 10 * time.Minute, StopBudget: 11 * time.Minute,
		Logger: logging.New(testWriter{t}, logging.Options{Format: "text"})})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	e.jobsQ.SendJob(t, job(jobs.TypeExecute, "running", "acme", "u1", "t1", "sleep:10m"))
	wait.For(t, 15*time.Second, "the job to start", func() bool { return w.Stats().InFlight == 1 })

	cancel() // the first signal: the drain begins, 10 minutes long
	w.Hurry()
	var runErr error
	wait.For(t, 30*time.Second, "Run to return, well inside its 10-minute drain", func() bool {
		select {
		case runErr = <-done:
			return true
		default:
			return false
		}
	})
	if runErr != nil {
		t.Fatalf("Run: %v", runErr)
	}
	if n := len(e.responses.Final()); n != 0 {
		t.Errorf("the job stopped by the stop was answered: %d responses", n)
	}
	if v, f := e.jobsQ.Count(t); v+f != 1 {
		t.Errorf("after the stop the queue has %d visible, %d in flight; want the job kept", v, f)
	}
	rec2 := &recorder{}
	e.start(t, nil, worker.Config{Handler: rec2, Ledger: ledger.New(root), JobTimeout: 200 * time.Millisecond})
	if r := e.responses.WaitFinal(t, 1, 30*time.Second)[0]; r.JobID != "running" {
		t.Errorf("the next worker answered %+v", r)
	}
}
