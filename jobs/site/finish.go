package site

import (
	"context"
	"fmt"
	"time"

	"github.com/webordinary/claude-code-astro/jobs"
)

// errStopping is the cause of a job's last step ending at the stop's
// FinishBy rather than at its own timeout.
var errStopping = fmt.Errorf("the worker is stopping: %w", context.DeadlineExceeded)

// finishContext returns the context of one of a job's last steps (commit and
// push, the quota check, the cleanup). Those run even when the job's own
// context has ended, so that work done is not lost: the context has ctx's
// values, not its cancellation, and ends after timeout. Once the worker is
// stopping (Config.Stopping), before the step or during it, the step also
// ends by the stop's FinishBy, whichever comes first, with errStopping as
// its cause. The caller must call cancel when the step is done.
func (s *Handler) finishContext(ctx context.Context, timeout time.Duration) (context.Context, context.CancelFunc) {
	return finishContext(ctx, s.cfg.Stopping, timeout)
}

func finishContext(ctx context.Context, stop *jobs.Stop, timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	if stop == nil {
		return ctx, cancel
	}
	if by, stopping := stop.FinishBy(); stopping {
		ctx, cancelBy := context.WithDeadlineCause(ctx, by, errStopping)
		return ctx, func() { cancelBy(); cancel() }
	}
	// The stop may begin while the step runs: from then on, the step ends
	// by the stop's FinishBy too.
	ctx, cancelCause := context.WithCancelCause(ctx)
	unwatch := context.AfterFunc(stop.Begun(), func() {
		by, _ := stop.FinishBy()
		t := time.AfterFunc(time.Until(by), func() { cancelCause(errStopping) })
		context.AfterFunc(ctx, func() { t.Stop() }) // the step ended first
	})
	return ctx, func() {
		unwatch() // a step done leaves nothing waiting on the stop
		cancelCause(nil)
		cancel()
	}
}
