package worker_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/ledger"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/worker"
)

// failingLedger is the real ledger whose writes fail while failing is set,
// as on a full or unreachable EFS.
type failingLedger struct {
	*ledger.Ledger
	failing atomic.Bool
	puts    atomic.Int64
}

func (l *failingLedger) Put(job jobs.Job, rec ledger.Record) error {
	l.puts.Add(1)
	if l.failing.Load() {
		return errors.New("write job record: no space left on device")
	}
	return l.Ledger.Put(job, rec)
}

// TestUnrecordedJobDoesNotRun: a job whose "running" record cannot be
// written is not run (it could run twice after a lost answer) and not
// answered; its message comes back, and once the record can be written the
// job runs once and is answered once.
func TestUnrecordedJobDoesNotRun(t *testing.T) {
	e := newEnv(t, true, 30*time.Second)
	rec := &recorder{}
	led := &failingLedger{Ledger: ledger.New(t.TempDir())}
	led.failing.Store(true)
	e.start(t, nil, worker.Config{Handler: rec, Ledger: led})
	e.jobsQ.SendJob(t, job(jobs.TypeExecute, "j-unrecorded", "acme", "u1", "t1", "make it blue"))
	wait.For(t, 20*time.Second, "the worker to try recording the job", func() bool { return led.puts.Load() > 0 })
	if n := rec.calls.Load(); n != 0 {
		t.Fatalf("the handler ran %d times without the job's record", n)
	}
	e.responses.Poll(t, time.Second)
	if got := e.responses.Final(); len(got) != 0 {
		t.Fatalf("answered without running: %+v", got)
	}
	led.failing.Store(false)
	final := e.responses.WaitFinal(t, 1, 45*time.Second)
	if final[0].JobID != "j-unrecorded" || final[0].Status != jobs.StatusSucceeded {
		t.Errorf("answer = %+v", final[0])
	}
	if n := rec.calls.Load(); n != 1 {
		t.Errorf("the handler ran %d times, want once", n)
	}
	waitQueueEmpty(t, e.jobsQ)
}
