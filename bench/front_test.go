package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/webordinary/claude-code-astro/testkit/sqstest"
)

// nudgeDelay keeps a nudge message invisible for longer than any benchmark.
const nudgeDelay = 900 // seconds, the SQS maximum

// front is an HTTP front of the emulator that works around one limitation
// of kumo v0.33.1: a long poll wakes only when a message is sent, not when
// a FIFO message group unlocks (its in-flight message deleted or released).
// Real SQS answers such a poll at once; on kumo the worker's next job of the
// same user would wait out the 20 s poll, and the benchmark would measure
// the emulator. After every delete or visibility change on a FIFO queue the
// front sends a "nudge": a message of its own group, delayed for 15 minutes,
// whose send wakes the pollers and which nobody ever receives.
type front struct {
	URL    string
	emu    *sqstest.Emulator
	direct *sqs.Client
	seq    atomic.Int64
	nudges atomic.Int64
}

// startFront serves a front of emu on loopback until the benchmark ends.
func startFront(tb testing.TB, emu *sqstest.Emulator) *front {
	tb.Helper()
	target, err := url.Parse(emu.URL)
	if err != nil {
		tb.Fatal(err)
	}
	f := &front{emu: emu, direct: emu.SQS()}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) {
		w.WriteHeader(http.StatusBadGateway) // a client gave up (a long poll cancelled at shutdown)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		action := r.Header.Get("X-Amz-Target")
		if !unlocks(action) {
			proxy.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		proxy.ServeHTTP(rec, r)
		var in struct {
			QueueURL string `json:"QueueUrl"`
		}
		if rec.status == http.StatusOK && json.Unmarshal(body, &in) == nil && strings.HasSuffix(in.QueueURL, ".fifo") {
			f.nudge(r.Context(), in.QueueURL)
		}
	}))
	tb.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// unlocks reports whether an SQS action can unlock a FIFO message group.
func unlocks(action string) bool {
	switch action {
	case "AmazonSQS.DeleteMessage", "AmazonSQS.DeleteMessageBatch",
		"AmazonSQS.ChangeMessageVisibility", "AmazonSQS.ChangeMessageVisibilityBatch":
		return true
	}
	return false
}

// nudge wakes the long polls of queueURL.
func (f *front) nudge(ctx context.Context, queueURL string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	id := "nudge-" + strconv.FormatInt(f.seq.Add(1), 10)
	if _, err := f.direct.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl: aws.String(queueURL), MessageBody: aws.String(`{"nudge":true}`), DelaySeconds: nudgeDelay,
		MessageGroupId: aws.String("bench-nudge"), MessageDeduplicationId: aws.String(id),
	}); err == nil {
		f.nudges.Add(1)
	}
}

// SQS returns a client that goes through the front.
func (f *front) SQS() *sqs.Client {
	return sqs.NewFromConfig(sqstest.AWSConfig(), func(o *sqs.Options) { o.BaseEndpoint = aws.String(f.URL) })
}

// queue returns q with a client that goes through the front.
func (f *front) queue(q sqstest.Queue) sqstest.Queue {
	return sqstest.Queue{URL: q.URL, Client: f.SQS()}
}

// statusRecorder remembers the status code written through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// Flush passes flushes on, for the reverse proxy.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
