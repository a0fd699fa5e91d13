package site

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/webordinary/claude-code-astro/jobs"
)

// TestFinishContext: a job's last step ends at its own timeout while the
// worker runs, and by the stop's FinishBy (ShutdownStop - ShutdownAnswer
// after the signal) once it stops, whether the stop began before the step or
// during it. The job's own end never ends it. Times are synctest's, so
// exact.
func TestFinishContext(t *testing.T) {
	const never = time.Duration(-1 << 63)
	finishBy := jobs.ShutdownStop - jobs.ShutdownAnswer // after the stop began
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		noStop  bool          // Config.Stopping is nil
		stop    time.Duration // when the stop begins, from the step's start; never: it does not
		// want: when the step's context ends, from its start, the deadline
		// it reports, and whether the stop ended it.
		end, deadline time.Duration
		byStop        bool
	}{
		{name: "no stop configured", noStop: true, timeout: jobs.FinishTimeout, stop: never,
			end: jobs.FinishTimeout, deadline: jobs.FinishTimeout},
		{name: "not stopping", timeout: jobs.FinishTimeout, stop: never,
			end: jobs.FinishTimeout, deadline: jobs.FinishTimeout},
		{name: "not stopping, leftovers", timeout: jobs.LeftoversTimeout, stop: never,
			end: jobs.LeftoversTimeout, deadline: jobs.LeftoversTimeout},
		{name: "stopping since 1 s", timeout: jobs.FinishTimeout, stop: -time.Second,
			end: finishBy - time.Second, deadline: finishBy - time.Second, byStop: true},
		{name: "stopping since the drain ended", timeout: jobs.FinishTimeout, stop: -jobs.ShutdownDrain,
			end: jobs.StopFinishTimeout, deadline: jobs.StopFinishTimeout, byStop: true},
		{name: "stopping for longer than the finish deadline", timeout: jobs.LeftoversTimeout, stop: -finishBy - time.Second,
			end: 0, deadline: -time.Second, byStop: true},
		{name: "stopping, the step's own timeout sooner", timeout: time.Second, stop: 0,
			end: time.Second, deadline: time.Second},
		{name: "stop arriving 1 s into the step", timeout: jobs.FinishTimeout, stop: time.Second,
			end: time.Second + finishBy, deadline: jobs.FinishTimeout, byStop: true},
		// The stop's deadline would come 1 s after the step's own.
		{name: "stop arriving during the step, its own timeout sooner", timeout: jobs.FinishTimeout, stop: jobs.FinishTimeout - finishBy + time.Second,
			end: jobs.FinishTimeout, deadline: jobs.FinishTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var stop *jobs.Stop
				if !tc.noStop {
					stop = jobs.NewStop()
				}
				start := time.Now()
				if tc.stop != never && tc.stop <= 0 {
					stop.Begin(start.Add(tc.stop))
				}
				if tc.stop > 0 {
					time.AfterFunc(tc.stop, func() { stop.Begin(time.Now()) })
				}
				job, endJob := context.WithCancel(context.Background())
				ctx, cancel := finishContext(job, stop, tc.timeout)
				defer cancel()
				endJob() // the job's own end does not end its last steps

				if d, ok := ctx.Deadline(); !ok || !d.Equal(start.Add(tc.deadline)) {
					t.Errorf("deadline %v (%v), want %v after the start", d.Sub(start), ok, tc.deadline)
				}
				<-ctx.Done()
				if got := time.Since(start); got != tc.end {
					t.Errorf("the step's context ended %v after its start, want %v", got, tc.end)
				}
				if got := errors.Is(context.Cause(ctx), errStopping); got != tc.byStop {
					t.Errorf("ended by the stop: %v (cause %v), want %v", got, context.Cause(ctx), tc.byStop)
				}
				if !errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
					t.Errorf("cause %v, want one wrapping context.DeadlineExceeded", context.Cause(ctx))
				}
			})
		})
	}
}
