package worker

// Receiving and scheduling: the long-poll loop, and the lanes that run each
// user's messages in order, one at a time, users in parallel up to
// MaxConcurrentUsers.

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/webordinary/claude-code-astro/internal/backoff"
	"github.com/webordinary/claude-code-astro/jobs"
)

// lane holds one user's messages, run in order.
type lane struct {
	queue []*delivery
	// answering is set (under Worker.mu) once the running job's handler
	// has returned: the lane only answers and deletes, and counts as free
	// for the next receive, which so overlaps those calls.
	answering bool
}

// receive long-polls the job queue until ctx is done; jobs run under run.
func (w *Worker) receive(ctx, run context.Context, lanes *sync.WaitGroup) {
	bo := backoff.Backoff{Min: w.cfg.BackoffMin, Max: w.cfg.BackoffMax}
	for ctx.Err() == nil {
		want := w.want()
		if want <= 0 {
			w.lastLoop.Store(time.Now().UnixNano()) // busy, not stuck
			select {                                // nothing more can start: wait for a lane to free
			case <-w.slotFree:
			case <-time.After(5 * time.Second):
			case <-ctx.Done():
			}
			continue
		}
		w.pollEnds.Store(time.Now().Add(w.cfg.WaitTime + time.Second).UnixNano())
		out, err := w.sqs.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(w.cfg.JobQueueURL),
			MaxNumberOfMessages:         int32(want),
			WaitTimeSeconds:             int32(w.cfg.WaitTime / time.Second),
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			d := bo.Next()
			w.log.Warn("receive from the job queue failed; backing off", "error", err, "retry_in", d.String(), "attempt", bo.Attempt())
			backoff.Sleep(ctx, d)
			continue
		}
		w.lastLoop.Store(time.Now().UnixNano())
		if bo.Attempt() > 0 {
			w.log.Info("job queue reachable again", "after_attempts", bo.Attempt())
			bo.Reset()
		}
		for _, m := range out.Messages {
			w.accept(ctx, run, m, lanes)
		}
	}
}

// want returns how many messages the receive loop may ask for now: one
// per free lane (a lane is a user with a message here, running or waiting
// for a slot; one whose job only has its answer and delete left counts as
// free), so a backlog stays visible to other workers and to the scaler. With every lane busy it asks for none, cancels included: a
// cancel then waits in the queue, counted in the backlog, until a lane
// frees here or on another worker. (A spare message taken for cancels
// would be the last of a backlog as often as not, held here while another
// worker has a free lane.) With MaxHeld set it prefetches instead.
func (w *Worker) want() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cfg.MaxHeld > 0 {
		return min(w.cfg.MaxHeld-len(w.inflight), 10)
	}
	busy := 0
	for _, l := range w.lanes {
		if !l.answering || len(l.queue) > 0 {
			busy++
		}
	}
	return min(max(w.cfg.MaxConcurrentUsers-busy, 0), 10)
}

// signalFree wakes the receive loop when it waits for want to grow.
func (w *Worker) signalFree() {
	select {
	case w.slotFree <- struct{}{}:
	default:
	}
}

// accept decodes a message and queues it in its user's lane; a cancel runs
// at once.
func (w *Worker) accept(ctx, run context.Context, m types.Message, lanes *sync.WaitGroup) {
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
	d.log = w.log.With("job_id", job.JobID, "client_id", job.ClientID, "user_id", job.UserID,
		"thread_id", job.ThreadID, "message_id", msgID, "type", string(job.Type))

	if d.invalid == nil && job.Type == jobs.TypeCancel {
		// A cancel waits for nothing: not for its user's lane, which may be
		// running the very job it stops, nor for a free slot.
		w.mu.Lock()
		w.inflight[aws.ToString(m.ReceiptHandle)] = d
		w.mu.Unlock()
		lanes.Go(func() { w.process(run, d) })
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
		lanes.Go(func() { w.runLane(ctx, run, key, l) })
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

// runLane runs one user's messages in order, one at a time, until the lane
// is empty or ctx ends (a stop: what was not started is released); jobs
// run under run.
func (w *Worker) runLane(ctx, run context.Context, key string, l *lane) {
	for {
		w.mu.Lock()
		if len(l.queue) == 0 || ctx.Err() != nil {
			delete(w.lanes, key)
			w.mu.Unlock()
			w.signalFree()
			return
		}
		d := l.queue[0]
		l.queue = l.queue[1:]
		l.answering = false
		w.mu.Unlock()
		d.handled = func() {
			w.mu.Lock()
			l.answering = true
			w.mu.Unlock()
			w.signalFree()
		}

		if !w.acquire(ctx, d) {
			w.releaseAfter(d, w.stopRelease()) // stopping: not started, another worker takes it
			continue
		}
		completed := w.process(run, d)
		<-w.sem
		if !completed && w.fifoJobs() && ctx.Err() == nil {
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
		return ctx.Err() == nil || w.releaseSlot()
	default:
	}
	w.markQueued(d)
	select {
	case w.sem <- struct{}{}:
		return ctx.Err() == nil || w.releaseSlot()
	case <-ctx.Done():
		return false
	}
}

// releaseSlot gives back a slot just taken and returns false.
func (w *Worker) releaseSlot() bool {
	<-w.sem
	return false
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

// stopRelease returns the delay of a release during a stop: until the
// last long poll has surely ended. A poll the worker gave up may still be
// served by the queue (SQS says so of a cancelled long poll, and the
// emulator does it): a message visible before it ends would be handed to
// it, and nobody would read it until its visibility timeout.
func (w *Worker) stopRelease() time.Duration {
	return max(0, time.Until(time.Unix(0, w.pollEnds.Load())))
}

// releaseWaiting releases, at a stop, every message of every lane that
// has not started: another worker takes it at once.
func (w *Worker) releaseWaiting() {
	w.mu.Lock()
	var rest []*delivery
	for _, l := range w.lanes {
		rest = append(rest, l.queue...)
		l.queue = nil
	}
	w.mu.Unlock()
	delay := w.stopRelease()
	for _, d := range rest {
		w.releaseAfter(d, delay)
	}
}
