// Package worker receives jobs from the SQS job queue and runs them: long
// polling with backoff, one lane per user (one job at a time per user, users
// in parallel up to a limit), a visibility heartbeat for every message it
// holds, exactly one final response per job on the response queue, deletion
// only after that response is sent, idempotency by job id, cancels that reach
// a job wherever it runs, and a stop that lets running jobs finish for a
// while before it cancels them and releases what it did not finish. It knows
// queues, not git.
//
// The code is split by concern: worker.go wires the parts and runs them;
// receive.go is the receive loop and the per-user lanes (scheduling);
// pipeline.go is what happens to one message, as a chain of middleware
// around the handler (validation, idempotency, the answer before the
// dead-letter queue, cancels, panics, the job's time limit); transport.go
// is every other SQS call (answers, deletes, releases, the heartbeat);
// cancel.go is the cancel job.
package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/webordinary/claude-code-astro/internal/config"
	"github.com/webordinary/claude-code-astro/internal/ledger"
	"github.com/webordinary/claude-code-astro/internal/redact"
	"github.com/webordinary/claude-code-astro/jobs"
)

// Ledger keeps job records on the workspace root, for idempotency, and the
// cancel marks through which workers that share only the root and the
// queues stop each other's jobs; *ledger.Ledger implements it.
type Ledger interface {
	Get(job jobs.Job) (ledger.Record, bool, error)
	Put(job jobs.Job, rec ledger.Record) error
	MarkQueued(job jobs.Job) error
	RequestCancel(user jobs.Job, targetJobID, by string) error
	CancelRequested(job jobs.Job) (ledger.CancelMark, bool, error)
	ClearCancel(job jobs.Job) error
}

// Activity is told when the worker is busy; the idle shutdown implements it.
type Activity interface {
	Begin() (end func())
}

// Config configures a Worker. JobQueueURL, ResponseQueueURL and Handler are
// required; zero values of the others mean their defaults.
type Config struct {
	JobQueueURL      string
	ResponseQueueURL string
	Handler          jobs.Handler
	// Ledger records jobs for idempotency; nil keeps no records.
	Ledger Ledger
	// Activity is told of every job from receipt to response; nil: nobody.
	Activity Activity
	// Answered, when set, is called with every final answer once it is
	// sent, and with when upstream sent the job's message (SQS's
	// SentTimestamp; zero when unknown): the metrics.
	Answered func(resp jobs.Response, sentAt time.Time)
	// Redactor masks secrets in responses as a last line of defence.
	Redactor *redact.Redactor
	Logger   *slog.Logger

	// MaxConcurrentUsers is how many users' jobs run at once
	// (MAX_CONCURRENT_USERS); 0 means config.Default()'s:
	// the worker asks the queue for no more messages than it has free
	// lanes, so it holds only what runs (and what came with it in one
	// answer for the same user).
	MaxConcurrentUsers int
	// MaxHeld, when above 0, makes the worker prefetch instead: it asks
	// for up to 10 messages at a time while it holds fewer than MaxHeld,
	// and keeps them all invisible. That hoards a backlog other workers
	// and the scaler cannot see; it is here to measure against. 0, the
	// default, holds only what runs.
	MaxHeld  int
	WaitTime time.Duration // long poll; default 20s
	// VisibilityTimeout is the job queue's; 0 reads it from the queue.
	VisibilityTimeout time.Duration
	JobTimeout        time.Duration // a job's hard limit (JOB_TIMEOUT); 0 means config.Default()'s
	BackoffMin        time.Duration // default 200ms
	BackoffMax        time.Duration // default 20s
	// StuckAfter is how long the receive loop may go without turning before
	// Healthy says false; default the long poll plus a minute.
	StuckAfter time.Duration
	// CancelPoll is how often a running job's cancel mark is looked for on
	// the root (a cancel received by another worker); default 250ms.
	CancelPoll time.Duration
	// DrainTimeout is how long running jobs may go on once Run's context
	// ends (receiving has stopped): a job that finishes meanwhile is
	// answered; one still running then is cancelled and its message
	// released. Default DefaultDrainTimeout.
	DrainTimeout time.Duration
	// CallTimeout bounds one SQS call (the SDK's own retries included) to
	// answer, delete or release a message; default 10s.
	CallTimeout time.Duration
	// StopBudget bounds the whole stop: Run returns within it of its
	// context's end, even with SQS failing (its calls are cut off then).
	// Default DefaultStopBudget; at least DrainTimeout plus
	// jobs.ShutdownAnswer.
	StopBudget time.Duration
}

// DefaultStopBudget is Run's stop budget, the shutdown budget's share for
// the job loop (jobs.ShutdownStop).
const DefaultStopBudget = jobs.ShutdownStop

// DefaultDrainTimeout is how long running jobs may go on after a stop, the
// shutdown budget's drain (jobs.ShutdownDrain).
const DefaultDrainTimeout = jobs.ShutdownDrain

// errShuttingDown is the cause of the jobs' context when a stop cancels
// them: their messages are released, not answered.
var errShuttingDown = errors.New("the worker is stopping")

// Worker runs jobs from the job queue. Create it with New and call Run once.
// Its methods other than Run are safe for concurrent use.
type Worker struct {
	sqs  SQSClient
	cfg  Config
	log  *slog.Logger
	fifo bool

	sem      chan struct{} // one token per running job
	slotFree chan struct{} // signalled when a lane may have freed (see want)

	mu       sync.Mutex
	beats    *sync.Cond             // on mu: a heartbeat call ended
	inflight map[string]*delivery   // by receipt handle: received, not yet deleted or released
	lanes    map[string]*lane       // by user key: users with a message here
	active   map[string]*runningJob // running jobs by user key and job id: what stops each

	// pipeline is what happens to one delivery, up to its final answer.
	pipeline step
	// calls bounds the transport's SQS calls; it ends once Run has returned.
	calls context.Context

	// maxReceives is the job queue's redrive maxReceiveCount, 0 without a
	// dead-letter queue. Set by Run before any receive.
	maxReceives int

	created   time.Time
	lastLoop  atomic.Int64           // unix nanoseconds of the receive loop's last turn
	retrying  atomic.Pointer[string] // why SQS calls are being retried now; nil when they are not
	hurry     chan struct{}          // closed by Hurry: the drain ends now
	hurryOnce sync.Once
	// pollEnds is when the last long poll ends at the latest (unix
	// nanoseconds): the queue may still serve one the worker gave up.
	pollEnds  atomic.Int64
	running   atomic.Int64
	succeeded atomic.Int64
	failed    atomic.Int64
	current   atomic.Pointer[jobs.Job]
}

// delivery is one received message.
type delivery struct {
	msg     types.Message
	job     jobs.Job           // for an invalid message, only what its answer may echo
	invalid *jobs.InvalidError // set for an invalid message, answered invalid_job in its lane
	// group is the FIFO group of the message's answers and the key of its
	// lane: clientId/userId, or for an invalid message without valid ids
	// the message's own group (or invalidGroup).
	group      string
	receivedAt time.Time
	startedAt  time.Time // when its lane began it: after any wait behind the user's earlier jobs
	attempt    int
	log        *slog.Logger
	// handled, when set, is called once the pipeline has decided what
	// becomes of the message, before its answer and delete.
	handled func()

	// Under Worker.mu: gone is set once the message is deleted or released
	// (the heartbeat leaves it alone); beating counts heartbeat calls that
	// hold its receipt handle.
	gone    bool
	beating int
}

// invalidGroup is the lane and the response queue's FIFO group of invalid
// messages that name no valid user and came without a group of their own.
const invalidGroup = "invalid-messages"

// New returns a Worker using client.
func New(client SQSClient, cfg Config) (*Worker, error) {
	if cfg.JobQueueURL == "" || cfg.ResponseQueueURL == "" || cfg.Handler == nil {
		return nil, errors.New("worker: JobQueueURL, ResponseQueueURL and Handler are required")
	}
	if cfg.MaxConcurrentUsers <= 0 {
		cfg.MaxConcurrentUsers = config.Default().MaxConcurrentUsers
	}
	if cfg.WaitTime <= 0 {
		cfg.WaitTime = 20 * time.Second
	}
	if cfg.JobTimeout <= 0 {
		cfg.JobTimeout = config.Default().JobTimeout
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 200 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 20 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.StuckAfter <= 0 {
		cfg.StuckAfter = cfg.WaitTime + time.Minute
	}
	if cfg.CancelPoll <= 0 {
		cfg.CancelPoll = 250 * time.Millisecond
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 10 * time.Second
	}
	if cfg.StopBudget <= 0 {
		cfg.StopBudget = DefaultStopBudget
	}
	cfg.StopBudget = max(cfg.StopBudget, cfg.DrainTimeout+jobs.ShutdownAnswer)
	w := &Worker{
		sqs:      client,
		cfg:      cfg,
		log:      cfg.Logger,
		fifo:     isFIFO(cfg.ResponseQueueURL),
		sem:      make(chan struct{}, cfg.MaxConcurrentUsers),
		slotFree: make(chan struct{}, 1),
		inflight: make(map[string]*delivery),
		lanes:    make(map[string]*lane),
		active:   make(map[string]*runningJob),
		hurry:    make(chan struct{}),
		calls:    context.Background(),
		created:  time.Now(),
	}
	w.beats = sync.NewCond(&w.mu)
	w.pipeline = w.newPipeline()
	return w, nil
}

// Stats is a snapshot of the worker's counters, for /health.
type Stats struct {
	InFlight   int64
	Succeeded  int64
	Failed     int64
	LastPollAt time.Time
	// LastJob is the job most recently started, nil before the first.
	LastJob *jobs.Job
}

// Stats returns the worker's counters.
func (w *Worker) Stats() Stats {
	s := Stats{InFlight: w.running.Load(), Succeeded: w.succeeded.Load(), Failed: w.failed.Load(), LastJob: w.current.Load()}
	if t := w.lastLoop.Load(); t != 0 {
		s.LastPollAt = time.Unix(0, t)
	}
	return s
}

// Healthy reports whether the receive loop is working: its last successful
// receive (or its last wait for a free slot) is within Config.StuckAfter. A
// hung receive, or a queue failing for that long, makes /health answer 503.
func (w *Worker) Healthy() bool {
	last := w.created
	if t := w.lastLoop.Load(); t != 0 {
		last = time.Unix(0, t)
	}
	return time.Since(last) < w.cfg.StuckAfter
}

// Hurry cuts a stop's drain short: once Run's context has ended, running
// jobs are cancelled at once (their agents' process trees killed) and their
// messages released, as at the end of DrainTimeout. Safe to call at any
// time, more than once.
func (w *Worker) Hurry() {
	w.hurryOnce.Do(func() { close(w.hurry) })
}

// Run receives and runs jobs until ctx is done. Then it stops softly, then
// hard: it stops receiving and releases the messages it had not started at
// once; running jobs may finish within DrainTimeout and are answered as
// usual; those still running then are cancelled, and their messages
// released for another worker, not answered. It returns nil once done.
func (w *Worker) Run(ctx context.Context) error {
	w.lastLoop.Store(time.Now().UnixNano())
	vis, err := w.visibilityTimeout(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // ctx ended before the queue answered: nothing was received
		}
		return err
	}
	w.log.Info("worker started", "job_queue", w.cfg.JobQueueURL, "response_queue", w.cfg.ResponseQueueURL,
		"visibility_timeout", vis.String(), "max_concurrent_users", w.cfg.MaxConcurrentUsers)

	// Jobs run under hard, which outlives ctx by DrainTimeout; SQS calls
	// under calls, which outlives the jobs by one call.
	hard, stopJobs := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stopJobs(errShuttingDown)
	calls, stopCalls := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCalls()
	w.calls = calls

	var lanes, loops sync.WaitGroup
	hbCtx, stopHeartbeat := context.WithCancel(calls)
	loops.Go(func() { w.heartbeat(hbCtx, vis) })

	w.receive(ctx, hard, &lanes)

	w.log.Info("worker stopping: no more receives; running jobs may finish", "within", w.cfg.DrainTimeout.String())
	cutoff := time.AfterFunc(w.cfg.StopBudget-time.Second, func() {
		w.log.Warn("stop budget spent: abandoning the SQS calls still under way; their messages return after their visibility timeout")
		stopCalls()
	})
	defer cutoff.Stop()
	w.releaseWaiting()
	drain := time.AfterFunc(w.cfg.DrainTimeout, func() {
		w.log.Warn("jobs still running at the end of the drain: cancelling them; their messages are released")
		stopJobs(errShuttingDown)
	})
	drained := make(chan struct{})
	loops.Go(func() {
		select {
		case <-w.hurry:
			w.log.Warn("drain cut short: cancelling the running jobs now; their messages are released")
			stopJobs(errShuttingDown)
		case <-drained:
		}
	})
	lanes.Wait()
	close(drained)
	drain.Stop()
	stopJobs(errShuttingDown)
	stopHeartbeat()
	loops.Wait()
	w.releaseAll()
	w.log.Info("worker stopped")
	return nil
}
