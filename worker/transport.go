package worker

// Every SQS call but the receive: answers, deletes, releases, the
// visibility heartbeat. Each is made once: the AWS SDK's retryer is the one
// retry layer (it backs off between its attempts and stops when the call's
// context ends), and every call is bounded by CallTimeout under the
// worker's calls context, so a failing queue cannot hold a stop past its
// budget. A message whose answer or delete fails comes back after its
// visibility timeout and is answered from its record.

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/webordinary/claude-code-astro/internal/backoff"
	"github.com/webordinary/claude-code-astro/internal/ledger"
	"github.com/webordinary/claude-code-astro/jobs"
)

// call returns the context of one SQS call.
func (w *Worker) call() (context.Context, context.CancelFunc) {
	return context.WithTimeout(w.calls, w.cfg.CallTimeout)
}

// visibilityTimeout returns the configured timeout or the queue's, and
// notes the queue's maxReceiveCount. It tries until the queue answers or
// ctx ends: the worker cannot start without it.
func (w *Worker) visibilityTimeout(ctx context.Context) (time.Duration, error) {
	bo := backoff.Backoff{Min: w.cfg.BackoffMin, Max: w.cfg.BackoffMax}
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
		d := bo.Next()
		w.log.Warn("cannot read the job queue's attributes; retrying", "error", err, "retry_in", d.String(), "attempt", bo.Attempt())
		if !backoff.Sleep(ctx, d) {
			return 0, ctx.Err()
		}
	}
}

// progress returns the job's ProgressFunc: each call sends a progress
// response, in order, before the final one.
func (w *Worker) progress(d *delivery) jobs.ProgressFunc {
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
		if err := w.send(r, d.group, id); err != nil {
			d.log.Warn("cannot send a progress response", "error", err)
		}
	}
}

// answer sends the final response and notes in the job's record (when there
// is one) that this message was answered. If the response cannot be sent,
// the message is released: it comes back and is answered from the job's
// record.
func (w *Worker) answer(d *delivery, resp jobs.Response, rec *ledger.Record) bool {
	if resp.FinishedAt == "" {
		resp.Finish(d.receivedAt, d.startedAt, time.Now())
	}
	if resp.Error != nil {
		resp.Error.Message = w.cfg.Redactor.String(resp.Error.Message)
	}
	if err := w.send(resp, d.group, dedupID(resp.JobID, string(resp.Status))); err != nil {
		d.log.Error("final response not sent: leaving the message for redelivery", "error", err)
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
			d.log.Warn("cannot write the job's record", "error", err)
		}
	}
	return true
}

// send puts one response on the response queue; on a FIFO queue in the
// given group, with the given deduplication id.
func (w *Worker) send(resp jobs.Response, group, dedup string) error {
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
	ctx, cancel := w.call()
	defer cancel()
	if _, err := w.sqs.SendMessage(ctx, in); err != nil {
		return fmt.Errorf("send response: %w", err)
	}
	return nil
}

// delete removes an answered message from the job queue. One that cannot
// be deleted comes back after its visibility timeout and is only deleted
// then (its record says it was answered).
func (w *Worker) delete(d *delivery) bool {
	w.forget(d, false)
	ctx, cancel := w.call()
	defer cancel()
	if _, err := w.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{
		QueueUrl: aws.String(w.cfg.JobQueueURL), ReceiptHandle: d.msg.ReceiptHandle,
	}); err != nil {
		d.log.Warn("cannot delete an answered message", "error", err)
		return false
	}
	return true
}

// release makes a message visible again at once, for another receive.
func (w *Worker) release(d *delivery) { w.releaseAfter(d, 0) }

// releaseAfter makes a message visible again after delay.
func (w *Worker) releaseAfter(d *delivery, delay time.Duration) {
	// Forgotten first, and after any heartbeat call that holds it: such a
	// call landing after the release would hide the message again.
	w.forget(d, true)
	ctx, cancel := w.call()
	defer cancel()
	_, err := w.sqs.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl: aws.String(w.cfg.JobQueueURL), ReceiptHandle: d.msg.ReceiptHandle, VisibilityTimeout: int32((delay + time.Second - 1) / time.Second),
	})
	if err != nil {
		d.log.Warn("cannot release a message; it returns after its visibility timeout", "error", err)
		return
	}
	d.log.Info("message released for redelivery")
}

// releaseAll releases whatever is still held, at the very end of Run, ten
// messages a call.
func (w *Worker) releaseAll() {
	w.mu.Lock()
	rest := make([]*delivery, 0, len(w.inflight))
	for _, d := range w.inflight {
		rest = append(rest, d)
	}
	w.mu.Unlock()
	for _, d := range rest {
		w.forget(d, true)
	}
	for start := 0; start < len(rest); start += 10 {
		batch := rest[start:min(start+10, len(rest))]
		entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(batch))
		delay := int32((w.stopRelease() + time.Second - 1) / time.Second)
		for i, d := range batch {
			entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: d.msg.ReceiptHandle, VisibilityTimeout: delay}
		}
		ctx, cancel := w.call()
		out, err := w.sqs.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(w.cfg.JobQueueURL), Entries: entries})
		cancel()
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
				d.log.Info("message released for redelivery")
			}
		}
	}
}

// forget stops tracking a message and frees its slot. With waitBeats it
// also waits until no heartbeat call holds its receipt handle (the calls
// themselves run without the lock).
func (w *Worker) forget(d *delivery, waitBeats bool) {
	w.mu.Lock()
	delete(w.inflight, aws.ToString(d.msg.ReceiptHandle))
	d.gone = true
	for waitBeats && d.beating > 0 {
		w.beats.Wait()
	}
	w.mu.Unlock()
	w.signalFree()
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
		w.mu.Lock()
		held := make([]*delivery, 0, len(w.inflight))
		for _, d := range w.inflight {
			if !d.gone {
				d.beating++
				held = append(held, d)
			}
		}
		w.mu.Unlock()
		for start := 0; start < len(held); start += 10 {
			w.beat(ctx, held[start:min(start+10, len(held))], vis)
		}
	}
}

// beat extends the visibility of one batch, then lets releases of its
// messages go on.
func (w *Worker) beat(ctx context.Context, batch []*delivery, vis time.Duration) {
	defer func() {
		w.mu.Lock()
		for _, d := range batch {
			d.beating--
		}
		w.beats.Broadcast()
		w.mu.Unlock()
	}()
	entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(batch))
	for i, d := range batch {
		entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{
			Id: aws.String(strconv.Itoa(i)), ReceiptHandle: d.msg.ReceiptHandle, VisibilityTimeout: int32(vis / time.Second),
		}
	}
	hctx, cancel := context.WithTimeout(ctx, w.cfg.CallTimeout)
	defer cancel()
	out, err := w.sqs.ChangeMessageVisibilityBatch(hctx, &sqs.ChangeMessageVisibilityBatchInput{
		QueueUrl: aws.String(w.cfg.JobQueueURL), Entries: entries,
	})
	if err != nil {
		w.log.Warn("visibility heartbeat failed", "messages", len(batch), "error", err)
		return
	}
	for _, f := range out.Failed {
		// A message deleted since the snapshot fails here: expected.
		w.log.Debug("visibility heartbeat: entry failed", "code", aws.ToString(f.Code), "message", aws.ToString(f.Message))
	}
}
