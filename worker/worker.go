// Package worker receives jobs from the SQS job queue and runs them: long
// polling with backoff, one lane per user (one job at a time per user, users
// in parallel up to a limit), a visibility heartbeat for every message it
// holds, exactly one final response per job on the response queue, deletion
// only after that response is sent, idempotency by job id, and a graceful
// stop that releases what it did not finish. It knows queues, not git.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/webordinary/claude-code-astro/internal/ledger"
	"github.com/webordinary/claude-code-astro/internal/logging"
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
	// Redactor masks secrets in responses as a last line of defence.
	Redactor *redact.Redactor
	Logger   *slog.Logger

	MaxConcurrentUsers int           // jobs of different users at once; default 2
	MaxHeld            int           // messages received and not finished; default 10 per user slot
	WaitTime           time.Duration // long poll; default 20s
	// VisibilityTimeout is the job queue's; 0 reads it from the queue.
	VisibilityTimeout time.Duration
	JobTimeout        time.Duration // a job's hard limit; default 15m
	BackoffMin        time.Duration // default 200ms
	BackoffMax        time.Duration // default 20s
	// StuckAfter is how long the receive loop may go without turning before
	// Healthy says false; default the long poll plus a minute.
	StuckAfter time.Duration
	// CancelPoll is how often a running job's cancel mark is looked for on
	// the root (a cancel received by another worker); default 250ms.
	CancelPoll time.Duration
}

// releaseGrace is how long Run waits, after its last receive was cancelled,
// before releasing the messages it holds.
const releaseGrace = 250 * time.Millisecond

// Worker runs jobs from the job queue. Create it with New and call Run once.
// Its methods other than Run are safe for concurrent use.
type Worker struct {
	sqs  SQSClient
	cfg  Config
	log  *slog.Logger
	fifo bool

	sem      chan struct{} // one token per running job
	slotFree chan struct{} // signalled when a held message is done

	// hbMu orders heartbeats and releases: a release never overlaps a
	// heartbeat that could make the released message invisible again.
	hbMu     sync.Mutex
	mu       sync.Mutex
	inflight map[string]*delivery               // by receipt handle: received, not yet deleted or released
	lanes    map[string]*lane                   // by user key
	active   map[string]context.CancelCauseFunc // running jobs by user key and job id: what stops each

	// maxReceives is the job queue's redrive maxReceiveCount, 0 without a
	// dead-letter queue. Set by Run before any receive.
	maxReceives int

	created   time.Time
	lastLoop  atomic.Int64 // unix nanoseconds of the receive loop's last turn
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
}

// invalidGroup is the lane and the response queue's FIFO group of invalid
// messages that name no valid user and came without a group of their own.
const invalidGroup = "invalid-messages"

// lane holds one user's messages, run in order.
type lane struct {
	queue []*delivery
}

// New returns a Worker using client.
func New(client SQSClient, cfg Config) (*Worker, error) {
	if cfg.JobQueueURL == "" || cfg.ResponseQueueURL == "" || cfg.Handler == nil {
		return nil, errors.New("worker: JobQueueURL, ResponseQueueURL and Handler are required")
	}
	if cfg.MaxConcurrentUsers <= 0 {
		cfg.MaxConcurrentUsers = 2
	}
	if cfg.MaxHeld <= 0 {
		// Room for a full receive batch (10) per user slot: one user's burst
		// cannot hold every slot and keep another user's job from being
		// received (SQS returns no more of a group while it is in flight).
		cfg.MaxHeld = 10 * cfg.MaxConcurrentUsers
	}
	if cfg.WaitTime <= 0 {
		cfg.WaitTime = 20 * time.Second
	}
	if cfg.JobTimeout <= 0 {
		cfg.JobTimeout = 15 * time.Minute
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
	return &Worker{
		sqs:      client,
		cfg:      cfg,
		log:      cfg.Logger,
		fifo:     isFIFO(cfg.ResponseQueueURL),
		sem:      make(chan struct{}, cfg.MaxConcurrentUsers),
		slotFree: make(chan struct{}, 1),
		inflight: make(map[string]*delivery),
		lanes:    make(map[string]*lane),
		active:   make(map[string]context.CancelCauseFunc),
		created:  time.Now(),
	}, nil
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

// Run receives and runs jobs until ctx is done. Then it stops receiving,
// cancels running jobs (their messages are released for redelivery, not
// answered), releases messages it had not started, and returns nil.
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

	var lanes, loops sync.WaitGroup
	hbCtx, stopHeartbeat := context.WithCancel(context.WithoutCancel(ctx))
	loops.Go(func() { w.heartbeat(hbCtx, vis) })

	w.receive(ctx, &lanes)

	w.log.Info("worker stopping: no more receives; cancelling running jobs")
	lanes.Wait() // running jobs see ctx done and stop; their messages stay held
	// Release only after the queue has seen the last long poll end: a
	// message released while the server still serves that poll would be
	// handed to it, and nobody would read the answer.
	sleep(context.Background(), releaseGrace)
	stopHeartbeat()
	loops.Wait()
	w.releaseAll()
	w.log.Info("worker stopped")
	return nil
}

// visibilityTimeout returns the configured timeout or the queue's, and
// notes the queue's maxReceiveCount.
func (w *Worker) visibilityTimeout(ctx context.Context) (time.Duration, error) {
	bo := backoff{min: w.cfg.BackoffMin, max: w.cfg.BackoffMax}
	for {
		out, err := w.sqs.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
			QueueUrl: aws.String(w.cfg.JobQueueURL),
			AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameVisibilityTimeout,
				types.QueueAttributeNameRedrivePolicy},
		})
		if err == nil {
			w.maxReceives = maxReceiveCount(out.Attributes[string(types.QueueAttributeNameRedrivePolicy)])
			if w.cfg.VisibilityTimeout > 0 {
				return w.cfg.VisibilityTimeout, nil
			}
			secs, perr := strconv.Atoi(out.Attributes[string(types.QueueAttributeNameVisibilityTimeout)])
			if perr != nil || secs <= 0 {
				secs = 30
			}
			return time.Duration(secs) * time.Second, nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if isMissingQueue(err) {
			return 0, fmt.Errorf("JOB_QUEUE_URL: the queue does not exist: %w", err)
		}
		d := bo.next()
		w.log.Warn("cannot read the job queue's attributes; retrying", "error", err, "retry_in", d.String(), "attempt", bo.attempt)
		if !sleep(ctx, d) {
			return 0, ctx.Err()
		}
	}
}

// receive long-polls the job queue until ctx is done.
func (w *Worker) receive(ctx context.Context, lanes *sync.WaitGroup) {
	bo := backoff{min: w.cfg.BackoffMin, max: w.cfg.BackoffMax}
	for ctx.Err() == nil {
		free := w.cfg.MaxHeld - w.held()
		if free <= 0 {
			w.lastLoop.Store(time.Now().UnixNano()) // busy, not stuck
			select {                                // every slot holds a message: wait for one to finish
			case <-w.slotFree:
			case <-time.After(5 * time.Second):
			case <-ctx.Done():
			}
			continue
		}
		out, err := w.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(w.cfg.JobQueueURL),
			MaxNumberOfMessages:         int32(min(free, 10)),
			WaitTimeSeconds:             int32(w.cfg.WaitTime / time.Second),
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d := bo.next()
			w.log.Warn("receive from the job queue failed; backing off", "error", err, "retry_in", d.String(), "attempt", bo.attempt)
			sleep(ctx, d)
			continue
		}
		w.lastLoop.Store(time.Now().UnixNano())
		if bo.attempt > 0 {
			w.log.Info("job queue reachable again", "after_attempts", bo.attempt)
			bo.reset()
		}
		for _, m := range out.Messages {
			w.accept(ctx, m, lanes)
		}
	}
}

// held returns how many received messages are not yet deleted or released.
func (w *Worker) held() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.inflight)
}

// accept decodes a message and queues it in its user's lane.
func (w *Worker) accept(ctx context.Context, m types.Message, lanes *sync.WaitGroup) {
	body, msgID := aws.ToString(m.Body), aws.ToString(m.MessageId)
	d := &delivery{msg: m, receivedAt: time.Now()}
	job, err := jobs.Decode([]byte(body), msgID)
	if err != nil {
		// Every message gets one answer: an invalid one is answered
		// invalid_job, echoing only its valid ids, in its user's lane when it
		// names one, else in its own group's.
		var ie *jobs.InvalidError
		if !errors.As(err, &ie) {
			ie = &jobs.InvalidError{Reason: err.Error()}
		}
		d.invalid = ie
		job = ie.Echo(msgID)
	}
	d.job = job
	d.group = responseGroup(job, m)

	if d.invalid == nil && job.Type == jobs.TypeCancel {
		// A cancel waits for nothing: not for its user's lane, which may be
		// running the very job it stops, nor for a free slot.
		w.mu.Lock()
		w.inflight[aws.ToString(m.ReceiptHandle)] = d
		w.mu.Unlock()
		lanes.Go(func() { w.process(ctx, d) })
		return
	}

	key := d.group
	w.mu.Lock()
	w.inflight[aws.ToString(m.ReceiptHandle)] = d
	l, running := w.lanes[key]
	if !running {
		l = &lane{}
		w.lanes[key] = l
	}
	l.queue = insertInOrder(l.queue, d)
	w.mu.Unlock()
	if !running {
		lanes.Go(func() { w.runLane(ctx, key, l) })
	} else {
		w.markQueued(d) // it waits behind its user's running job
	}
}

// insertInOrder queues d behind every message of its lane that came before
// it. On a FIFO queue that is SequenceNumber order: SQS delivers a group in
// order, but a message released (or dropped by a dead worker) can come back
// after its successors were received in a later batch.
func insertInOrder(queue []*delivery, d *delivery) []*delivery {
	seq := d.msg.Attributes[string(types.MessageSystemAttributeNameSequenceNumber)]
	i := len(queue)
	if seq != "" {
		for i > 0 && seqLess(seq, queue[i-1].msg.Attributes[string(types.MessageSystemAttributeNameSequenceNumber)]) {
			i--
		}
	}
	return slices.Insert(queue, i, d)
}

// seqLess compares two SQS sequence numbers: decimal strings of up to 128
// digits. An empty one (a standard queue) never sorts first.
func seqLess(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// runLane runs one user's messages in order, one at a time.
func (w *Worker) runLane(ctx context.Context, key string, l *lane) {
	for {
		w.mu.Lock()
		if len(l.queue) == 0 {
			delete(w.lanes, key)
			w.mu.Unlock()
			return
		}
		d := l.queue[0]
		l.queue = l.queue[1:]
		w.mu.Unlock()

		completed := false
		if w.acquire(ctx, d) {
			if ctx.Err() == nil {
				completed = w.process(ctx, d)
			}
			<-w.sem
		}
		if ctx.Err() != nil {
			continue // shutting down: Run releases whatever is still held
		}
		if !completed && w.fifoJobs() {
			// The group's order must hold: what came after an unfinished
			// message goes back to the queue behind it.
			w.releaseLane(l)
		}
	}
}

// acquire takes a slot for d, waiting while every slot is busy (d then
// counts as queued for a cancel); false when ctx ended first.
func (w *Worker) acquire(ctx context.Context, d *delivery) bool {
	select {
	case w.sem <- struct{}{}:
		return true
	default:
	}
	w.markQueued(d)
	select {
	case w.sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (w *Worker) fifoJobs() bool { return isFIFO(w.cfg.JobQueueURL) }

// releaseLane releases every message still queued in the lane.
func (w *Worker) releaseLane(l *lane) {
	w.mu.Lock()
	rest := l.queue
	l.queue = nil
	w.mu.Unlock()
	for _, d := range rest {
		w.release(d)
	}
}

// process runs one delivery to its final response. It reports whether the
// message was answered and deleted.
func (w *Worker) process(ctx context.Context, d *delivery) bool {
	job := d.job
	log := w.log.With("job_id", job.JobID, "client_id", job.ClientID, "user_id", job.UserID,
		"thread_id", job.ThreadID, "message_id", aws.ToString(d.msg.MessageId), "type", string(job.Type))
	if w.cfg.Activity != nil {
		defer w.cfg.Activity.Begin()()
	}
	d.startedAt = time.Now()
	if d.invalid != nil {
		log.Warn("invalid job: answering invalid_job", "error", d.invalid)
		resp := jobs.NewResponse(job, jobs.StatusFailed)
		resp.Error = jobs.ErrorBodyOf(d.invalid)
		resp.Finish(d.receivedAt, d.startedAt, time.Now())
		return w.answer(ctx, d, resp, nil, log)
	}

	rec := ledger.Record{JobID: job.JobID}
	if w.cfg.Ledger != nil {
		prev, found, err := w.cfg.Ledger.Get(job)
		switch {
		case err != nil:
			// Without the record the job might run twice: try again later.
			log.Warn("cannot read the job's record: releasing the message to try again", "error", err)
			w.release(d)
			return false
		case found && prev.State == ledger.StateFinished && prev.Response != nil && prev.Answered(aws.ToString(d.msg.MessageId)):
			log.Info("message redelivered after its job was answered: deleting it")
			return w.delete(ctx, d)
		case found && prev.State == ledger.StateFinished && prev.Response != nil:
			log.Info("job already finished: answering again from its record", "status", string(prev.Response.Status))
			return w.answer(ctx, d, *prev.Response, &prev, log)
		case found && prev.State == ledger.StateQueued:
			rec = prev // it waited here or on another worker: a first run
		case found:
			rec = prev
			log.Info("job was started before and did not finish: running it again", "attempts", prev.Attempts)
		}
		if job.Type != jobs.TypeCancel {
			if mark, ok := w.cancelMark(job, log); ok {
				log.Info("job cancelled before it started: answering cancelled without running it", "cancelled_by", mark.By)
				final := jobs.NewResponse(job, jobs.StatusFailed)
				final.Error = &jobs.ErrorBody{Code: jobs.CodeCancelled, Message: cancelledMessage(cancelCause(mark.By), false)}
				final.Finish(d.receivedAt, d.startedAt, time.Now())
				answered := w.finish(ctx, d, job, rec, final, log)
				w.clearCancel(job, log)
				return answered
			}
		}
		rec.Attempts++
		rec.State = ledger.StateRunning
		rec.StartedAt = d.startedAt.UTC()
		if err := w.cfg.Ledger.Put(job, rec); err != nil {
			log.Warn("cannot write the job's record", "error", err)
		}
	}
	d.attempt = max(rec.Attempts, 1)

	if n, _ := strconv.Atoi(d.msg.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]); w.maxReceives > 0 && n >= w.maxReceives {
		// The last delivery before the dead-letter queue: answer it, so
		// upstream hears of it, rather than let it vanish unanswered.
		log.Error("job delivered too often without finishing: answering it as failed", "receives", n)
		final := jobs.NewResponse(job, jobs.StatusFailed)
		final.Error = &jobs.ErrorBody{Code: jobs.CodeInternal, Message: fmt.Sprintf(
			"the job was delivered %d times without finishing (the queue's maxReceiveCount); it was not run again", n)}
		final.Finish(d.receivedAt, d.startedAt, time.Now())
		return w.finish(ctx, d, job, rec, final, log)
	}

	if job.Type == jobs.TypeCancel {
		resp, err := w.cancel(job, log)
		final := jobs.NewResponse(job, jobs.StatusSucceeded)
		mergeResult(&final, resp)
		if err != nil {
			final.Status = jobs.StatusFailed
			final.Error = jobs.ErrorBodyOf(err)
		}
		final.Finish(d.receivedAt, d.startedAt, time.Now())
		return w.finish(ctx, d, job, rec, final, log)
	}

	w.running.Add(1)
	w.current.Store(&job)
	log.Info("job started")
	stoppable, stop := context.WithCancelCause(ctx)
	jobCtx, cancel := context.WithTimeout(stoppable, w.cfg.JobTimeout)
	// Every line logged with the job's context, in any package, names the job.
	jobCtx = logging.With(jobCtx, "job_id", job.JobID, "client_id", job.ClientID, "user_id", job.UserID,
		"thread_id", job.ThreadID, "message_id", aws.ToString(d.msg.MessageId))
	unwatch := w.watchCancel(jobCtx, job, stop, log)
	resp, err := w.handle(jobCtx, job, w.progress(ctx, d, log))
	unwatch()
	timedOut := errors.Is(jobCtx.Err(), context.DeadlineExceeded)
	stoppedBy := context.Cause(stoppable)
	cancelled := errors.Is(stoppedBy, jobs.ErrCancelled)
	cancel()
	stop(nil)
	w.running.Add(-1)

	if errors.Is(err, jobs.ErrRetryLater) {
		log.Warn("job cannot start now: its message comes back later", "error", err, "after", retryLaterDelay.String())
		w.releaseAfter(d, retryLaterDelay)
		return false
	}
	if err != nil && ctx.Err() != nil {
		// Shutdown, not the job's fault: another worker runs it again.
		log.Warn("job cancelled by shutdown: its message is released for redelivery", "error", err)
		return false
	}

	final := jobs.NewResponse(job, jobs.StatusSucceeded)
	mergeResult(&final, resp)
	if err != nil && cancelled {
		err = cancelledError(err, stoppedBy)
	}
	if err != nil {
		var je *jobs.Error
		if timedOut && (!errors.As(err, &je) || je.Code == jobs.CodeInternal) {
			err = &jobs.Error{Code: jobs.CodeTimeout, Msg: fmt.Sprintf("the job ran past JOB_TIMEOUT (%s)", w.cfg.JobTimeout), Err: err}
		}
		final.Status = jobs.StatusFailed
		final.Error = jobs.ErrorBodyOf(err)
		final.Error.Message = w.cfg.Redactor.String(final.Error.Message)
	}
	final.Finish(d.receivedAt, d.startedAt, time.Now())
	if err != nil {
		log.Warn("job failed", "code", string(final.Error.Code), "error", final.Error.Message, "duration_ms", final.DurationMs)
	} else {
		log.Info("job succeeded", "duration_ms", final.DurationMs, "commit", final.Commit)
	}
	answered := w.finish(ctx, d, job, rec, final, log)
	w.clearCancel(job, log) // answered: a cancel that comes now is too late
	return answered
}

// finish records the job's final response in the ledger, then answers it.
func (w *Worker) finish(ctx context.Context, d *delivery, job jobs.Job, rec ledger.Record, final jobs.Response, log *slog.Logger) bool {
	var finished *ledger.Record
	if w.cfg.Ledger != nil {
		rec.State = ledger.StateFinished
		rec.Response = &final
		if err := w.cfg.Ledger.Put(job, rec); err != nil {
			log.Warn("cannot write the job's record", "error", err)
		}
		finished = &rec
	}
	return w.answer(ctx, d, final, finished, log)
}

// handle calls the handler, turning a panic into an internal error.
func (w *Worker) handle(ctx context.Context, job jobs.Job, progress jobs.ProgressFunc) (resp jobs.Response, err error) {
	defer func() {
		if p := recover(); p != nil {
			w.log.Error("job handler panicked", "job_id", job.JobID, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = jobs.Errorf(jobs.CodeInternal, "the worker failed while running the job")
		}
	}()
	return w.cfg.Handler.Handle(ctx, job, progress)
}

// mergeResult copies the handler's own fields into the final response.
func mergeResult(dst *jobs.Response, src jobs.Response) {
	if src.Branch != "" {
		dst.Branch = src.Branch
	}
	dst.Resumed = src.Resumed
	dst.Commit = src.Commit
	dst.Pushed = src.Pushed
	dst.PushError = src.PushError
	dst.FilesChanged = src.FilesChanged
	dst.PreviewURL = src.PreviewURL
	dst.Claude = src.Claude
	dst.ForkedFrom = src.ForkedFrom
	dst.Cancelled = src.Cancelled
	dst.RevertedCommits = src.RevertedCommits
}

// progress returns the job's ProgressFunc: each call sends a progress
// response, in order, before the final one.
func (w *Worker) progress(ctx context.Context, d *delivery, log *slog.Logger) jobs.ProgressFunc {
	var mu sync.Mutex
	seq := 0
	return func(_ context.Context, p jobs.Progress) {
		mu.Lock()
		defer mu.Unlock()
		seq++
		r := jobs.NewResponse(d.job, jobs.StatusProgress)
		r.Progress = &p
		r.Finish(d.receivedAt, d.startedAt, time.Now())
		id := dedupID(d.job.JobID, "progress", strconv.Itoa(d.attempt), strconv.Itoa(seq))
		if err := w.send(ctx, r, d.group, id); err != nil {
			log.Warn("cannot send a progress response", "error", err)
		}
	}
}

// answer sends the final response, notes in the job's record (when there is
// one) that this message was answered, and deletes the message. If the
// response cannot be sent, the message is released: it comes back and is
// answered from the job's record.
func (w *Worker) answer(ctx context.Context, d *delivery, resp jobs.Response, rec *ledger.Record, log *slog.Logger) bool {
	bo := backoff{min: w.cfg.BackoffMin, max: 2 * time.Second}
	var err error
	for range 4 {
		if err = w.send(ctx, resp, d.group, dedupID(resp.JobID, string(resp.Status))); err == nil {
			break
		}
		log.Warn("cannot send the final response; retrying", "error", err)
		sleep(context.WithoutCancel(ctx), bo.next())
	}
	if err != nil {
		log.Error("final response not sent: leaving the message for redelivery", "error", err)
		w.release(d)
		return false
	}
	if resp.Status == jobs.StatusSucceeded {
		w.succeeded.Add(1)
	} else {
		w.failed.Add(1)
	}
	if rec != nil {
		rec.AnsweredMessages = append(rec.AnsweredMessages, aws.ToString(d.msg.MessageId))
		if err := w.cfg.Ledger.Put(d.job, *rec); err != nil {
			log.Warn("cannot write the job's record", "error", err)
		}
	}
	return w.delete(ctx, d)
}

// send puts one response on the response queue; on a FIFO queue in the
// given group, with the given deduplication id.
func (w *Worker) send(ctx context.Context, resp jobs.Response, group, dedup string) error {
	body, err := json.Marshal(resp)
	if err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	in := &sqs.SendMessageInput{
		QueueUrl:    aws.String(w.cfg.ResponseQueueURL),
		MessageBody: aws.String(w.cfg.Redactor.String(string(body))),
	}
	if w.fifo {
		in.MessageGroupId = aws.String(group)
		in.MessageDeduplicationId = aws.String(dedup)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if _, err := w.sqs.SendMessage(sctx, in); err != nil {
		return fmt.Errorf("send response: %w", err)
	}
	return nil
}

// delete removes an answered message from the job queue.
func (w *Worker) delete(ctx context.Context, d *delivery) bool {
	defer w.forget(d)
	bo := backoff{min: w.cfg.BackoffMin, max: 2 * time.Second}
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			sleep(context.Background(), bo.next())
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		_, err = w.sqs.DeleteMessage(dctx, &sqs.DeleteMessageInput{
			QueueUrl: aws.String(w.cfg.JobQueueURL), ReceiptHandle: d.msg.ReceiptHandle,
		})
		cancel()
		if err == nil {
			break
		}
	}
	if err != nil {
		// Answered but not deleted: it comes back and is answered from its record.
		w.log.Warn("cannot delete an answered message", "message_id", aws.ToString(d.msg.MessageId), "error", err)
		return false
	}
	return true
}

// retryLaterDelay is how long a job that could not start stays invisible.
const retryLaterDelay = 15 * time.Second

// release makes a message visible again at once, for another receive.
func (w *Worker) release(d *delivery) { w.releaseAfter(d, 0) }

// releaseAfter makes a message visible again after delay.
func (w *Worker) releaseAfter(d *delivery, delay time.Duration) {
	// Forget it first, under the heartbeat's lock: a heartbeat in flight
	// would otherwise hide the message again right after the release.
	w.hbMu.Lock()
	defer w.hbMu.Unlock()
	w.forget(d)
	rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := w.sqs.ChangeMessageVisibility(rctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(w.cfg.JobQueueURL), ReceiptHandle: d.msg.ReceiptHandle, VisibilityTimeout: int32(delay / time.Second),
	})
	if err != nil {
		w.log.Warn("cannot release a message; it returns after its visibility timeout",
			"message_id", aws.ToString(d.msg.MessageId), "error", err)
		return
	}
	w.log.Info("message released for redelivery", "message_id", aws.ToString(d.msg.MessageId), "job_id", d.job.JobID)
}

// releaseAll releases whatever is still held, at the very end of Run, ten
// messages a call, under one deadline.
func (w *Worker) releaseAll() {
	w.mu.Lock()
	rest := make([]*delivery, 0, len(w.inflight))
	for _, d := range w.inflight {
		rest = append(rest, d)
	}
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for start := 0; start < len(rest); start += 10 {
		batch := rest[start:min(start+10, len(rest))]
		entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(batch))
		for i, d := range batch {
			w.forget(d)
			entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: d.msg.ReceiptHandle}
		}
		out, err := w.sqs.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(w.cfg.JobQueueURL), Entries: entries})
		if err != nil {
			w.log.Warn("cannot release messages; they return after their visibility timeout", "messages", len(batch), "error", err)
			continue
		}
		failed := map[string]bool{}
		for _, f := range out.Failed {
			failed[aws.ToString(f.Id)] = true
			w.log.Warn("cannot release a message; it returns after its visibility timeout", "code", aws.ToString(f.Code))
		}
		for i, d := range batch {
			if !failed[strconv.Itoa(i)] {
				w.log.Info("message released for redelivery", "message_id", aws.ToString(d.msg.MessageId), "job_id", d.job.JobID)
			}
		}
	}
}

// forget stops tracking a message and frees its slot.
func (w *Worker) forget(d *delivery) {
	w.mu.Lock()
	delete(w.inflight, aws.ToString(d.msg.ReceiptHandle))
	w.mu.Unlock()
	select {
	case w.slotFree <- struct{}{}:
	default:
	}
}

// heartbeat keeps every held message invisible, refreshing at half the
// visibility timeout, until ctx is done.
func (w *Worker) heartbeat(ctx context.Context, vis time.Duration) {
	t := time.NewTicker(max(vis/2, 500*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.hbMu.Lock()
		w.mu.Lock()
		handles := make([]string, 0, len(w.inflight))
		for h := range w.inflight {
			handles = append(handles, h)
		}
		w.mu.Unlock()
		for start := 0; start < len(handles); start += 10 {
			batch := handles[start:min(start+10, len(handles))]
			entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(batch))
			for i, h := range batch {
				entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{
					Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(h), VisibilityTimeout: int32(vis / time.Second),
				}
			}
			hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			out, err := w.sqs.ChangeMessageVisibilityBatch(hctx, &sqs.ChangeMessageVisibilityBatchInput{
				QueueUrl: aws.String(w.cfg.JobQueueURL), Entries: entries,
			})
			cancel()
			if err != nil {
				w.log.Warn("visibility heartbeat failed", "messages", len(batch), "error", err)
				continue
			}
			for _, f := range out.Failed {
				// A message deleted since the snapshot fails here: expected.
				w.log.Debug("visibility heartbeat: entry failed", "code", aws.ToString(f.Code), "message", aws.ToString(f.Message))
			}
		}
		w.hbMu.Unlock()
	}
}
