package jobs

import (
	"context"
	"errors"
)

// ErrRetryLater, wrapped in a handler's error, says the job could not start
// now and should run later: its message is released, not answered.
var ErrRetryLater = errors.New("retry later")

// ProgressFunc reports what a running job is doing. It is called from the
// handler's goroutine, in order; it must not block for long.
type ProgressFunc func(ctx context.Context, p Progress)

// Handler runs one valid job. The worker fills the response's envelope (ids,
// status, times): the handler returns only the job's own fields (branch,
// commit, claude, ...). A nil error means succeeded; otherwise the response is
// failed with the error's code (see Error), and the fields returned alongside
// (a commit made before a later step failed, say) are kept.
//
// A handler must be idempotent by job id: a job whose final response was lost
// is delivered again.
type Handler interface {
	Handle(ctx context.Context, job Job, progress ProgressFunc) (Response, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, job Job, progress ProgressFunc) (Response, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, job Job, progress ProgressFunc) (Response, error) {
	return f(ctx, job, progress)
}
