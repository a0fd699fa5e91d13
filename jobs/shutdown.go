package jobs

import "time"

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

	// FinishTimeout bounds each of a job's last steps once its agent is done
	// or stopped (commit and push, the quota check, the tenant's cleanup),
	// which run past the job's own end so that work done is not lost: what
	// is left of ShutdownStop after the drain and the answer, so a job whose
	// agent finished just before the drain ended is still committed,
	// pushed and answered inside the stop.
	FinishTimeout = ShutdownStop - ShutdownDrain - ShutdownAnswer
)
