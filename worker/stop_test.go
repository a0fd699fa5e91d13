package worker_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/webordinary/claude-code-astro/internal/ledger"
	"github.com/webordinary/claude-code-astro/internal/testkit/sqstest"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/worker"
)

// failingFront is the emulator behind a switch that makes every call but
// receives and attribute reads hang.
type failingFront struct {
	url     string
	failing atomic.Bool
	failed  atomic.Int64
}

func newFailingFront(t *testing.T, target string) *failingFront {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	f := &failingFront{}
	quit := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "AmazonSQS.")
		if f.failing.Load() && op != "ReceiveMessage" && op != "GetQueueAttributes" {
			// The queue hangs: the call waits until its caller gives up.
			f.failed.Add(1)
			select {
			case <-r.Context().Done():
			case <-quit:
			}
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(quit) }) // first: a call a client left hanging ends
	f.url = srv.URL
	return f
}

// TestStopWithinBudgetWhileSQSFails: a stop while a job runs past the
// drain and every SQS call fails returns within the stop budget: the job
// is cancelled at the end of the drain and the failing calls are cut off,
// not retried past it.
func TestStopWithinBudgetWhileSQSFails(t *testing.T) {
	e := newEnv(t, true, 30*time.Second)
	front := newFailingFront(t, e.emu.URL)
	client := sqs.NewFromConfig(sqstest.AWSConfig(), func(o *sqs.Options) { o.BaseEndpoint = aws.String(front.url) })
	rec := &recorder{}
	const drain, budget = time.Second, 4 * time.Second
	_, stop := e.start(t, client, worker.Config{Handler: rec, Ledger: ledger.New(t.TempDir()),
		DrainTimeout: drain, StopBudget: budget, CallTimeout: time.Minute})
	e.jobsQ.SendJob(t, job(jobs.TypeExecute, "long", "acme", "u1", "t1", "sleep:60s"))
	wait.For(t, 20*time.Second, "the job to start", func() bool { return rec.calls.Load() == 1 })
	front.failing.Store(true)
	start := time.Now()
	stop()
	took := time.Since(start)
	t.Logf("stopped %s after the stop began; %d SQS calls failed meanwhile", took.Round(time.Millisecond), front.failed.Load())
	if took > budget+500*time.Millisecond {
		t.Errorf("the stop took %s, past its budget of %s", took, budget)
	}
	if front.failed.Load() == 0 {
		t.Error("no SQS call failed: the test did not test a failing queue")
	}
}

// TestStopLetsARunningJobFinish: a job that ends within the drain is
// answered, and one waiting behind it is released at once for another
// worker, not started.
func TestStopLetsARunningJobFinish(t *testing.T) {
	e := newEnv(t, false, 30*time.Second)
	root := t.TempDir()
	rec := &recorder{}
	w, stop := e.start(t, nil, worker.Config{Handler: rec, Ledger: ledger.New(root), DrainTimeout: 10 * time.Second})
	e.jobsQ.SendJob(t, job(jobs.TypeExecute, "finishing", "acme", "u1", "t1", "sleep:1500ms"))
	wait.For(t, 20*time.Second, "the job to start", func() bool { return rec.calls.Load() == 1 })
	e.jobsQ.SendJob(t, job(jobs.TypeExecute, "waiting", "acme", "u1", "t1", "sleep:10ms"))
	wait.For(t, 20*time.Second, "the second job to wait", func() bool {
		r, found, err := ledger.New(root).Get(jobs.Job{ClientID: "acme", UserID: "u1", JobID: "waiting"})
		return err == nil && found && r.State == ledger.StateQueued
	})
	stop()
	final := e.responses.WaitFinal(t, 1, 10*time.Second)
	if final[0].JobID != "finishing" || final[0].Status != jobs.StatusSucceeded {
		t.Errorf("the running job, stopped softly: %+v %+v", final[0], final[0].Error)
	}
	if rec.calls.Load() != 1 {
		t.Errorf("the waiting job was started during the stop (%d handler calls)", rec.calls.Load())
	}
	// Back on the queue for another worker, once the worker's last long
	// poll has surely ended (1 s here), long before its visibility timeout.
	// (The emulator wakes no waiting poll when a message becomes visible
	// again: poll, as a worker does.)
	wait.For(t, 20*time.Second, "another worker to receive the waiting job", func() bool {
		out, err := e.jobsQ.Client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(e.jobsQ.URL), WaitTimeSeconds: 1})
		return err == nil && len(out.Messages) == 1 && strings.Contains(aws.ToString(out.Messages[0].Body), `"waiting"`)
	})
	_ = w
}
