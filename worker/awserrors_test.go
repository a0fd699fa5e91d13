package worker_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"

	"github.com/webordinary/claude-code-astro/internal/testkit/sqstest"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/worker"
)

// refusingClient is the real emulator client whose GetQueueAttributes
// fails as SQS does for the given error code (the emulator checks neither
// credentials nor policies).
type refusingClient struct {
	*sqs.Client
	code string
}

func (c refusingClient) GetQueueAttributes(context.Context, *sqs.GetQueueAttributesInput, ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	return nil, &smithy.GenericAPIError{Code: c.code, Message: "refused by the test"}
}

// TestErrorsRetryingCannotHealStopRun: a queue that does not exist,
// credentials SQS refuses, access denied, and an endpoint that does not
// answer as SQS stop Run at once with one line naming the variable and what
// to fix, instead of retrying for ever.
func TestErrorsRetryingCannotHealStopRun(t *testing.T) {
	emu := sqstest.Start(t)
	jq := emu.CreateQueue(t, "unhealable-jobs", sqstest.QueueOptions{})
	rq := emu.CreateQueue(t, "unhealable-responses", sqstest.QueueOptions{})
	notSQS := &http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go notSQS.Serve(ln)
	t.Cleanup(func() { notSQS.Close() })
	tests := []struct {
		name         string
		client       worker.SQSClient
		jobQ, respQ  string
		want1, want2 string
	}{
		{"no job queue", emu.SQS(), "http://localhost:4566/000000000000/no-such-queue", rq.URL, "JOB_QUEUE_URL", "does not exist"},
		{"no response queue", emu.SQS(), jq.URL, "http://localhost:4566/000000000000/no-such-queue", "RESPONSE_QUEUE_URL", "does not exist"},
		{"bad credentials", refusingClient{emu.SQS(), "InvalidClientTokenId"}, jq.URL, rq.URL, "JOB_QUEUE_URL", "AWS_ACCESS_KEY_ID"},
		{"access denied", refusingClient{emu.SQS(), "AccessDenied"}, jq.URL, rq.URL, "JOB_QUEUE_URL", "access denied"},
		{"not SQS", sqs.NewFromConfig(sqstest.AWSConfig(), func(o *sqs.Options) { o.BaseEndpoint = aws.String("http://" + ln.Addr().String()) }),
			jq.URL, rq.URL, "JOB_QUEUE_URL", "AWS_ENDPOINT_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := worker.New(tt.client, worker.Config{JobQueueURL: tt.jobQ, ResponseQueueURL: tt.respQ, Handler: &recorder{},
				BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err = w.Run(ctx)
			if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), tt.want1) || !strings.Contains(err.Error(), tt.want2) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Run = %v; want one line at once naming %s and %q", err, tt.want1, tt.want2)
			}
		})
	}
}

// TestRetryingSaysWhy: while SQS cannot be reached (an error that can heal)
// the worker retries and says why; once it answers, it says nothing.
func TestRetryingSaysWhy(t *testing.T) {
	e := newEnv(t, false, 30*time.Second)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	client := sqs.NewFromConfig(sqstest.AWSConfig(), func(o *sqs.Options) { o.BaseEndpoint = aws.String("http://" + addr) })
	w, _ := e.start(t, client, worker.Config{Handler: &recorder{}, BackoffMin: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond})
	wait.For(t, 20*time.Second, "the worker to say why it retries", func() bool {
		return strings.Contains(w.Retrying(), "JOB_QUEUE_URL") && strings.Contains(w.Retrying(), "refused")
	})
	if !w.Healthy() {
		t.Error("a worker retrying for a few seconds says it is unhealthy")
	}
}
