package worker

// Cancel jobs. Workers share nothing but the queues and the workspace root,
// so a cancel leaves a mark on the root (the ledger's cancel mark) that the
// worker running the target looks for every CancelPoll, and that a worker
// receiving the target later finds before it starts it. A target running on
// the worker that receives the cancel is stopped at once.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/webordinary/claude-code-astro/internal/ledger"
	"github.com/webordinary/claude-code-astro/jobs"
)

// runningJob is a job running on this worker, as a cancel sees it.
type runningJob struct {
	stop context.CancelCauseFunc
	// done is closed once the job's outcome is known; cancelled then says
	// whether it is answered cancelled (false: it finished anyway, or it
	// is left for another worker).
	done      chan struct{}
	cancelled bool
}

// outcomeWait bounds how long a cancel that stopped a job here waits for
// that job's outcome before it answers "running": longer than an agent's
// stop takes (the contract's 2 s).
const outcomeWait = 5 * time.Second

// activeKey names a running job among the worker's: its user and job id.
func activeKey(job jobs.Job) string { return job.UserKey() + "/" + job.JobID }

// cancelCause is the cause a job's context is cancelled with when a cancel
// job stops it: it wraps jobs.ErrCancelled and names the cancel.
func cancelCause(by string) error {
	if by == "" {
		return jobs.ErrCancelled
	}
	return fmt.Errorf("%w %s", jobs.ErrCancelled, by)
}

// cancelledMessage is the error message of a job a cancel stopped.
func cancelledMessage(cause error, started bool) string {
	what := "the job was cancelled"
	if cause != nil && cause != jobs.ErrCancelled {
		what += " (" + cause.Error() + ")"
	}
	if !started {
		return what + " before it started"
	}
	return what
}

// markQueued notes on the root that d waits on this worker, so that a
// cancel received by any worker answers "queued".
func (w *Worker) markQueued(d *delivery) {
	if w.cfg.Ledger == nil || d.invalid != nil {
		return
	}
	if err := w.cfg.Ledger.MarkQueued(d.job); err != nil {
		w.log.Warn("cannot record a waiting job", "job_id", d.job.JobID, "error", err)
	}
}

// cancelMark returns job's cancel mark, if a cancel left one.
func (w *Worker) cancelMark(job jobs.Job, log *slog.Logger) (ledger.CancelMark, bool) {
	if w.cfg.Ledger == nil {
		return ledger.CancelMark{}, false
	}
	mark, ok, err := w.cfg.Ledger.CancelRequested(job)
	if err != nil {
		log.Warn("cannot look for a cancel of the job", "error", err)
	}
	return mark, ok
}

// clearCancel removes job's cancel mark once the job is answered.
func (w *Worker) clearCancel(job jobs.Job, log *slog.Logger) {
	if w.cfg.Ledger == nil {
		return
	}
	if err := w.cfg.Ledger.ClearCancel(job); err != nil {
		log.Warn("cannot remove the job's cancel mark", "error", err)
	}
}

// watchCancel makes job stoppable while it runs: by a cancel this worker
// receives (through w.active) and by one another worker received (its mark
// on the root, looked for every CancelPoll). stop cancels the job's context
// with a cause that wraps jobs.ErrCancelled. The returned function ends the
// watch; call it when the job has returned.
func (w *Worker) watchCancel(ctx context.Context, job jobs.Job, stop context.CancelCauseFunc, log *slog.Logger) (unwatch func(cancelled bool)) {
	key := activeKey(job)
	run := &runningJob{stop: stop, done: make(chan struct{})}
	w.mu.Lock()
	w.active[key] = run
	w.mu.Unlock()
	done := make(chan struct{})
	var wg sync.WaitGroup
	if w.cfg.Ledger != nil {
		wg.Go(func() {
			t := time.NewTicker(w.cfg.CancelPoll)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-ctx.Done():
					return
				case <-t.C:
				}
				if mark, ok := w.cancelMark(job, log); ok {
					log.Info("cancel mark found: stopping the job", "cancelled_by", mark.By)
					stop(cancelCause(mark.By))
					return
				}
			}
		})
	}
	return func(cancelled bool) {
		close(done)
		wg.Wait()
		w.mu.Lock()
		delete(w.active, key)
		w.mu.Unlock()
		run.cancelled = cancelled
		close(run.done)
	}
}

// stopHere stops target if it runs on this worker and says where the cancel
// found it: CancelRunning when the stop is what ends it, CancelFinished when
// it finished anyway (its agent was done when the stop came: it answers
// succeeded), "" when it does not run here.
func (w *Worker) stopHere(target jobs.Job, by string) jobs.CancelState {
	w.mu.Lock()
	run, ok := w.active[activeKey(target)]
	w.mu.Unlock()
	if !ok {
		return ""
	}
	run.stop(cancelCause(by))
	t := time.NewTimer(outcomeWait)
	defer t.Stop()
	select {
	case <-run.done:
		if !run.cancelled {
			return jobs.CancelFinished
		}
	case <-t.C:
	}
	return jobs.CancelRunning
}

// heldHere reports whether this worker holds target without running it.
func (w *Worker) heldHere(target jobs.Job) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, running := w.active[activeKey(target)]; running {
		return false
	}
	for _, d := range w.inflight {
		if d.invalid == nil && d.job.JobID == target.JobID && d.job.UserKey() == target.UserKey() {
			return true
		}
	}
	return false
}

// cancel runs a cancel job: it stops its target wherever it is and says
// where it found it. The mark goes on the root first, so that the worker
// running or receiving the target finds it; a target that had already
// answered is left alone.
func (w *Worker) cancel(job jobs.Job, log *slog.Logger) (jobs.Response, error) {
	target := jobs.Job{ClientID: job.ClientID, UserID: job.UserID, JobID: job.TargetJobID}
	var resp jobs.Response
	led := w.cfg.Ledger
	if led != nil {
		rec, found, err := led.Get(target)
		if err != nil {
			return resp, &jobs.Error{Code: jobs.CodeInternal, Msg: "cannot read the target job's record", Err: err}
		}
		if found && rec.State == ledger.StateFinished {
			resp.Cancelled = jobs.CancelFinished
			log.Info("cancel came too late: the target had already answered", "target_job_id", target.JobID)
			return resp, nil
		}
		if err := led.RequestCancel(job, target.JobID, job.JobID); err != nil {
			return resp, &jobs.Error{Code: jobs.CodeInternal, Msg: "cannot leave the cancel on the workspace root", Err: err}
		}
	}
	state := w.stopHere(target, job.JobID)
	switch {
	case state == jobs.CancelFinished && led != nil:
		if err := led.ClearCancel(target); err != nil {
			log.Warn("cannot remove a cancel mark", "error", err)
		}
	case state != "":
		// stopped here (running), or finished anyway
	case w.heldHere(target):
		state = jobs.CancelQueued
	default:
		state = jobs.CancelUnknown
	}
	if led != nil && state != jobs.CancelFinished {
		rec, found, err := led.Get(target)
		switch {
		case err != nil:
			log.Warn("cannot read the target job's record again", "error", err)
		case found && rec.State == ledger.StateFinished:
			if rec.Response != nil && rec.Response.Error != nil && rec.Response.Error.Code == jobs.CodeCancelled {
				state = jobs.CancelRunning // it answered, cancelled, since this cancel came
			} else {
				state = jobs.CancelFinished // it answered meanwhile: too late
				if err := led.ClearCancel(target); err != nil {
					log.Warn("cannot remove a cancel mark", "error", err)
				}
			}
		case found && rec.State == ledger.StateRunning && state == jobs.CancelUnknown:
			state = jobs.CancelRunning // on another worker, which finds the mark
		case found && rec.State == ledger.StateQueued && state == jobs.CancelUnknown:
			state = jobs.CancelQueued
		}
	}
	resp.Cancelled = state
	log.Info("cancel delivered", "target_job_id", target.JobID, "cancelled", string(state))
	return resp, nil
}

// cancelledError turns what a job stopped by a cancel returned into the
// cancelled error, keeping a handler's own cancelled error (which says what
// was kept).
func cancelledError(err, cause error) error {
	var je *jobs.Error
	if errors.As(err, &je) && je.Code == jobs.CodeCancelled {
		return err
	}
	return &jobs.Error{Code: jobs.CodeCancelled, Msg: cancelledMessage(cause, true), Err: err}
}
