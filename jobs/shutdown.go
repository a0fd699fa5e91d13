package jobs

import (
	"context"
	"sync"
	"time"
)

// The shutdown budget: how the time between a stop signal (SIGTERM) and the
// worker's exit is shared out. ShutdownBudget is the one figure; every other
// is derived from it here, so the parts cannot add up to more than the whole
// (a test checks the arithmetic, and that the whole fits in the stopTimeout
// ECS gives the task in infra/worker.yaml). The figures the README, CONTRACT
// and infra documents give are these.
const (
	// ShutdownBudget bounds a stop: the worker exits within it of SIGTERM.
	ShutdownBudget = 22 * time.Second

	// ShutdownClose is what the binary leaves, after the job loop, to stop
	// the dev servers and the HTTP port.
	ShutdownClose = 4 * time.Second
	// DevServerStopTimeout is how long a stopping dev server gets after
	// SIGTERM before it is killed: inside ShutdownClose, with a second to
	// spare for the HTTP port.
	DevServerStopTimeout = ShutdownClose - time.Second

	// ShutdownLoop is how long the binary waits for the job loop to end.
	ShutdownLoop = ShutdownBudget - ShutdownClose
	// ShutdownStop is the job loop's own bound (worker.Config.StopBudget):
	// it returns within it of the signal even when SQS does not answer,
	// leaving the binary a margin.
	ShutdownStop = ShutdownLoop - 3*time.Second

	// ShutdownDrain is how long running jobs may go on after the signal
	// (worker.Config.DrainTimeout); those still running then are cancelled.
	ShutdownDrain = 8 * time.Second
	// ShutdownAnswer is what a job that finished needs to be answered (one
	// SQS call, cut off at the end of ShutdownStop).
	ShutdownAnswer = 2 * time.Second

	// StopFinishTimeout is what a stop leaves a job's last steps when its
	// agent finished just as the drain ended: ShutdownStop less the drain
	// and the answer. In a stop the last steps end within
	// ShutdownStop - ShutdownAnswer of the signal (Stop.FinishBy), so the
	// job is still committed, pushed and answered inside the stop.
	StopFinishTimeout = ShutdownStop - ShutdownDrain - ShutdownAnswer
)

// The bounds of a job's last steps, which run past the job's own end so
// that work done is not lost. They hold while the worker runs; once it is
// stopping, each step also ends by Stop.FinishBy.
const (
	// FinishTimeout bounds each of a job's last steps once its agent is done
	// or stopped: the commit and push, the quota check, the discarding of a
	// workspace over its quota. A push to a remote host or a du on EFS may
	// take seconds.
	FinishTimeout = 15 * time.Second
	// LeftoversTimeout bounds killing a tenant's leftover processes after a
	// job.
	LeftoversTimeout = 10 * time.Second
)

// Stop is the moment the worker began to stop (a signal, an idle stop),
// from which the steps that must end inside the shutdown budget measure
// their time. Make one with NewStop; it is safe for concurrent use.
type Stop struct {
	begun context.Context // ends once the stop has begun
	begin context.CancelFunc

	mu sync.Mutex
	at time.Time // when the stop began; zero until then
}

// NewStop returns a stop that has not begun.
func NewStop() *Stop {
	begun, begin := context.WithCancel(context.Background())
	return &Stop{begun: begun, begin: begin}
}

// Begin marks the stop as begun at at. Only the first call counts.
func (s *Stop) Begin(at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.at.IsZero() {
		s.at = at
		s.begin()
	}
}

// Begun returns a context that ends once the stop has begun: for
// context.AfterFunc, or to select on.
func (s *Stop) Begun() context.Context { return s.begun }

// FinishBy returns when a job's last steps must have ended, the stop having
// begun: ShutdownStop - ShutdownAnswer after it began, so that the job is
// answered inside ShutdownStop. It returns false while the stop has not
// begun.
func (s *Stop) FinishBy() (deadline time.Time, stopping bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.at.IsZero() {
		return time.Time{}, false
	}
	return s.at.Add(ShutdownStop - ShutdownAnswer), true
}
