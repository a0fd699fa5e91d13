package worker

// What happens to one message: process reads it as receive (done),
// handle, answer, delete. Handling is a chain of middleware around the
// handler, as watermill builds its handlers: each layer is one concern.

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/webordinary/claude-code-astro/internal/ledger"
	"github.com/webordinary/claude-code-astro/internal/logging"
	"github.com/webordinary/claude-code-astro/jobs"
)

// outcome says what becomes of a handled message.
type outcome int

const (
	// answerIt: send verdict.final, then delete the message.
	answerIt outcome = iota
	// deleteIt: the job was answered before (a redelivery): delete only.
	deleteIt
	// releaseIt: back to the queue at once, for another try.
	releaseIt
	// retryLater: back to the queue after retryLaterDelay.
	retryLater
	// leaveIt: the worker is stopping; Run releases the message.
	leaveIt
)

// retryLaterDelay is how long a job that could not start stays invisible.
const retryLaterDelay = 15 * time.Second

// verdict is what handling a message decided.
type verdict struct {
	kind outcome
	// final is the answer (kind answerIt): status, the handler's fields,
	// the error body.
	final jobs.Response
	// err is why the job failed; nil when it succeeded.
	err error
	// rec is the job's record, in which the answered message is noted.
	rec *ledger.Record
}

// answer returns a verdict answering resp (the handler's fields) and err.
func answer(job jobs.Job, resp jobs.Response, err error) verdict {
	v := verdict{kind: answerIt, final: resp.Answering(job, jobs.StatusSucceeded)}
	v.fail(err)
	return v
}

// fail makes v a failure with err; nil leaves it as it is.
func (v *verdict) fail(err error) {
	if err == nil {
		return
	}
	v.err = err
	v.final.Status = jobs.StatusFailed
	v.final.Error = jobs.ErrorBodyOf(err)
}

// step handles one delivery; middleware wraps a step in another.
type step func(ctx context.Context, d *delivery) verdict
type middleware func(step) step

// newPipeline chains the middleware, outermost first, around the handler.
func (w *Worker) newPipeline() step {
	layers := []middleware{
		w.invalidAnswered,  // a message that is no valid job is answered invalid_job
		w.idempotent,       // a job answered before is answered again from its record
		w.lastDelivery,     // the last delivery before the dead-letter queue is answered
		w.controlJobs,      // a cancel is run here, not by the handler
		w.cancellable,      // a cancel mark stops the job, before or while it runs
		w.tracked,          // counters, /health's last job, the job's log context
		w.recovered,        // a panic is an internal error
		w.limited,          // JOB_TIMEOUT
		w.shutdownReleased, // a job stopped by a stop is released, not answered
	}
	s := w.handle
	for i := len(layers) - 1; i >= 0; i-- {
		s = layers[i](s)
	}
	return s
}

// process handles one delivery to its end: handle, then answer and delete
// it, or give it back to the queue. It reports whether the message was
// answered and deleted.
func (w *Worker) process(ctx context.Context, d *delivery) bool {
	if w.cfg.Activity != nil {
		defer w.cfg.Activity.Begin()()
	}
	d.startedAt = time.Now()
	v := w.pipeline(ctx, d)
	if d.handled != nil {
		d.handled()
	}
	switch v.kind {
	case deleteIt:
		return w.delete(d)
	case releaseIt:
		w.release(d)
		return false
	case retryLater:
		d.log.Warn("job cannot start now: its message comes back later", "error", v.err, "after", retryLaterDelay.String())
		w.releaseAfter(d, retryLaterDelay)
		return false
	case leaveIt:
		d.log.Warn("job stopped by the worker's stop: its message is released for redelivery", "error", v.err)
		return false
	}
	if !w.answer(d, v.final, v.rec) {
		return false
	}
	if d.invalid == nil && d.job.Type != jobs.TypeCancel {
		w.clearCancel(d.job, d.log) // answered: a cancel that comes now is too late
	}
	return w.delete(d)
}

// handle is the innermost step: the handler.
func (w *Worker) handle(ctx context.Context, d *delivery) verdict {
	resp, err := w.cfg.Handler.Handle(ctx, d.job, w.progress(d))
	if errors.Is(err, jobs.ErrRetryLater) {
		return verdict{kind: retryLater, err: err}
	}
	return answer(d.job, resp, err)
}

// invalidAnswered answers a message that is no valid job with invalid_job.
func (w *Worker) invalidAnswered(next step) step {
	return func(ctx context.Context, d *delivery) verdict {
		if d.invalid == nil {
			return next(ctx, d)
		}
		d.log.Warn("invalid job: answering invalid_job", "error", d.invalid)
		return answer(d.job, jobs.Response{}, d.invalid)
	}
}

// idempotent keeps the job's record in the ledger: a message delivered
// again after its answer is only deleted, a job answered before is answered
// again from its record, and a job is recorded running before it runs and
// finished, with its answer, before that answer is sent.
func (w *Worker) idempotent(next step) step {
	return func(ctx context.Context, d *delivery) verdict {
		led := w.cfg.Ledger
		if led == nil {
			d.attempt = 1
			return next(ctx, d)
		}
		rec := ledger.Record{JobID: d.job.JobID}
		prev, found, err := led.Get(d.job)
		switch {
		case err != nil:
			// Without the record the job might run twice: try again later.
			d.log.Warn("cannot read the job's record: releasing the message to try again", "error", err)
			return verdict{kind: releaseIt, err: err}
		case found && prev.State == ledger.StateFinished && prev.Response != nil && prev.Answered(aws.ToString(d.msg.MessageId)):
			d.log.Info("message redelivered after its job was answered: deleting it")
			return verdict{kind: deleteIt}
		case found && prev.State == ledger.StateFinished && prev.Response != nil:
			d.log.Info("job already finished: answering again from its record", "status", string(prev.Response.Status))
			return verdict{kind: answerIt, final: *prev.Response, rec: &prev}
		case found && prev.State == ledger.StateQueued:
			rec = prev // it waited here or on another worker: a first run
		case found:
			rec = prev
			d.log.Info("job was started before and did not finish: running it again", "attempts", prev.Attempts)
		}
		rec.Attempts++
		rec.State = ledger.StateRunning
		rec.StartedAt = d.startedAt.UTC()
		if err := led.Put(d.job, rec); err != nil {
			d.log.Warn("cannot write the job's record", "error", err)
		}
		d.attempt = rec.Attempts
		v := next(ctx, d)
		if v.kind != answerIt {
			return v
		}
		v.final.Finish(d.receivedAt, d.startedAt, time.Now())
		if v.final.Error != nil {
			v.final.Error.Message = w.cfg.Redactor.String(v.final.Error.Message)
		}
		rec.State = ledger.StateFinished
		rec.Response = &v.final
		if err := led.Put(d.job, rec); err != nil {
			d.log.Warn("cannot write the job's record", "error", err)
		}
		v.rec = &rec
		return v
	}
}

// lastDelivery answers the last delivery the job queue allows before its
// dead-letter queue without running the job, so that upstream hears of it
// rather than the message vanishing unanswered.
func (w *Worker) lastDelivery(next step) step {
	return func(ctx context.Context, d *delivery) verdict {
		n, _ := strconv.Atoi(d.msg.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)])
		if w.maxReceives == 0 || n < w.maxReceives {
			return next(ctx, d)
		}
		d.log.Error("job delivered too often without finishing: answering it as failed", "receives", n)
		return answer(d.job, jobs.Response{}, &jobs.Error{Code: jobs.CodeInternal, Msg: fmt.Sprintf(
			"the job was delivered %d times without finishing (the queue's maxReceiveCount); it was not run again", n)})
	}
}

// controlJobs runs cancel jobs, which the handler never sees.
func (w *Worker) controlJobs(next step) step {
	return func(ctx context.Context, d *delivery) verdict {
		if d.job.Type != jobs.TypeCancel {
			return next(ctx, d)
		}
		resp, err := w.cancel(d.job, d.log)
		return answer(d.job, resp, err)
	}
}

// cancellable lets a cancel stop the job: one whose mark is on the root
// before it starts is answered cancelled without running; while it runs,
// a cancel received here stops it at once and a mark left by another
// worker within CancelPoll. Whatever a stopped job returns, it is answered
// cancelled (keeping the handler's own cancelled error, which says what was
// kept).
func (w *Worker) cancellable(next step) step {
	return func(ctx context.Context, d *delivery) verdict {
		if mark, ok := w.cancelMark(d.job, d.log); ok {
			d.log.Info("job cancelled before it started: answering cancelled without running it", "cancelled_by", mark.By)
			return answer(d.job, jobs.Response{}, &jobs.Error{Code: jobs.CodeCancelled, Msg: cancelledMessage(cancelCause(mark.By), false)})
		}
		stoppable, stop := context.WithCancelCause(ctx)
		defer stop(nil)
		unwatch := w.watchCancel(stoppable, d.job, stop, d.log)
		v := next(stoppable, d)
		unwatch()
		if cause := context.Cause(stoppable); v.err != nil && errors.Is(cause, jobs.ErrCancelled) {
			v.fail(cancelledError(v.err, cause))
		}
		return v
	}
}

// tracked counts the running job, names it for /health and in every log
// line written with its context, and logs its start and end.
func (w *Worker) tracked(next step) step {
	return func(ctx context.Context, d *delivery) verdict {
		job := d.job
		w.running.Add(1)
		defer w.running.Add(-1)
		w.current.Store(&job)
		d.log.Info("job started")
		ctx = logging.With(ctx, "job_id", job.JobID, "client_id", job.ClientID, "user_id", job.UserID,
			"thread_id", job.ThreadID, "message_id", aws.ToString(d.msg.MessageId))
		v := next(ctx, d)
		if v.kind == answerIt {
			took := time.Since(d.startedAt).Milliseconds()
			if v.err != nil {
				d.log.Warn("job failed", "code", string(v.final.Error.Code), "error", w.cfg.Redactor.String(v.final.Error.Message), "duration_ms", took)
			} else {
				d.log.Info("job succeeded", "duration_ms", took, "commit", v.final.Commit)
			}
		}
		return v
	}
}

// recovered turns a panic of the handler into an internal error.
func (w *Worker) recovered(next step) step {
	return func(ctx context.Context, d *delivery) (v verdict) {
		defer func() {
			if p := recover(); p != nil {
				d.log.Error("job handler panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				v = answer(d.job, jobs.Response{}, jobs.Errorf(jobs.CodeInternal, "the worker failed while running the job"))
			}
		}()
		return next(ctx, d)
	}
}

// limited gives the job JobTimeout; a job that ran past it is answered
// timeout (unless the handler said more precisely what failed).
func (w *Worker) limited(next step) step {
	return func(ctx context.Context, d *delivery) verdict {
		jobCtx, cancel := context.WithTimeout(ctx, w.cfg.JobTimeout)
		defer cancel()
		v := next(jobCtx, d)
		var je *jobs.Error
		if v.err != nil && errors.Is(jobCtx.Err(), context.DeadlineExceeded) && (!errors.As(v.err, &je) || je.Code == jobs.CodeInternal) {
			v.fail(&jobs.Error{Code: jobs.CodeTimeout, Msg: fmt.Sprintf("the job ran past JOB_TIMEOUT (%s)", w.cfg.JobTimeout), Err: v.err})
		}
		return v
	}
}

// shutdownReleased leaves unanswered a job that failed because the worker
// is stopping: not the job's fault, another worker runs it again.
func (w *Worker) shutdownReleased(next step) step {
	return func(ctx context.Context, d *delivery) verdict {
		v := next(ctx, d)
		if v.err != nil && errors.Is(context.Cause(ctx), errShuttingDown) {
			return verdict{kind: leaveIt, err: v.err}
		}
		return v
	}
}
