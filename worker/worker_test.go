package worker_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/webordinary/claude-code-astro/internal/ledger"
	"github.com/webordinary/claude-code-astro/internal/logging"
	"github.com/webordinary/claude-code-astro/internal/testkit/logbuf"
	"github.com/webordinary/claude-code-astro/internal/testkit/sqstest"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/worker"
)

// span is when one job ran.
type span struct {
	job        jobs.Job
	start, end time.Time
}

// recorder is a test handler: it records every call and, for an execute job
// whose instruction is "sleep:DURATION", takes that long (or until cancelled).
type recorder struct {
	mu    sync.Mutex
	spans []span
	calls atomic.Int64
}

func (r *recorder) Handle(ctx context.Context, job jobs.Job, progress jobs.ProgressFunc) (jobs.Response, error) {
	r.calls.Add(1)
	start := time.Now()
	if d, ok := strings.CutPrefix(job.Instruction, "sleep:"); ok {
		dur, err := time.ParseDuration(d)
		if err != nil {
			return jobs.Response{}, jobs.Errorf(jobs.CodeInternal, "bad sleep")
		}
		progress(ctx, jobs.Progress{Kind: "text", Summary: "sleeping " + d})
		select {
		case <-time.After(dur):
		case <-ctx.Done():
			return jobs.Response{}, ctx.Err()
		}
	}
	if job.Instruction == "fail" {
		return jobs.Response{}, jobs.Errorf(jobs.CodeAgentFailed, "the agent failed")
	}
	r.mu.Lock()
	r.spans = append(r.spans, span{job, start, time.Now()})
	r.mu.Unlock()
	return jobs.Response{Commit: "c-" + job.JobID}, nil
}

func (r *recorder) Spans() []span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]span(nil), r.spans...)
}

type env struct {
	emu       *sqstest.Emulator
	jobsQ     sqstest.Queue
	responses *sqstest.Responses
	respQ     sqstest.Queue
}

func newEnv(t *testing.T, fifo bool, vis time.Duration) *env {
	t.Helper()
	emu := sqstest.Start(t)
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, t.Name())
	jq := emu.CreateQueue(t, name+"-jobs", sqstest.QueueOptions{FIFO: fifo, VisibilityTimeout: vis})
	rq := emu.CreateQueue(t, name+"-responses", sqstest.QueueOptions{FIFO: fifo})
	return &env{emu: emu, jobsQ: jq, respQ: rq, responses: sqstest.NewResponses(rq)}
}

// start runs a worker until the returned stop is called (or the test ends).
func (e *env) start(t *testing.T, client worker.SQSClient, cfg worker.Config) (w *worker.Worker, stop func()) {
	t.Helper()
	cfg.JobQueueURL, cfg.ResponseQueueURL = e.jobsQ.URL, e.respQ.URL
	if cfg.WaitTime == 0 {
		cfg.WaitTime = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = logging.New(testWriter{t}, logging.Options{Format: "text"})
	}
	if client == nil {
		client = e.emu.SQS()
	}
	w, err := worker.New(client, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(25 * time.Second):
				t.Error("worker did not stop within 25s")
			}
		})
	}
	t.Cleanup(stop)
	return w, stop
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func job(typ jobs.Type, id, client, user, thread, instruction string) jobs.Job {
	return jobs.Job{Type: typ, JobID: id, ClientID: client, UserID: user, ThreadID: thread, Instruction: instruction}
}

func TestJobsReachHandlerAndAreAnsweredAndDeleted(t *testing.T) {
	for _, fifo := range []bool{true, false} {
		t.Run(fmt.Sprintf("fifo=%v", fifo), func(t *testing.T) {
			e := newEnv(t, fifo, 30*time.Second)
			rec := &recorder{}
			e.start(t, nil, worker.Config{Handler: rec, Ledger: ledger.New(t.TempDir())})
			e.jobsQ.SendJob(t, jobs.Job{Type: jobs.TypeInit, JobID: "j-init", ClientID: "acme", UserID: "u1", ThreadID: "t1"})
			e.jobsQ.SendJob(t, job(jobs.TypeExecute, "j-exec", "acme", "u1", "t1", "make it blue"))
			final := e.responses.WaitFinal(t, 2, 20*time.Second)
			for i, want := range []string{"j-init", "j-exec"} {
				got := final[i]
				if got.JobID != want || got.Status != jobs.StatusSucceeded || got.ClientID != "acme" || got.UserID != "u1" ||
					got.ThreadID != "t1" || got.Branch != "thread-t1" || got.Commit != "c-"+want {
					t.Errorf("response %d = %+v", i, got)
				}
				if _, err := time.Parse(time.RFC3339Nano, got.ReceivedAt); err != nil {
					t.Errorf("receivedAt %q: %v", got.ReceivedAt, err)
				}
			}
			if final[0].Type != jobs.TypeInit || final[1].Type != jobs.TypeExecute {
				t.Errorf("types not echoed: %v %v", final[0].Type, final[1].Type)
			}
			waitQueueEmpty(t, e.jobsQ)
		})
	}
}

func waitQueueEmpty(t *testing.T, q sqstest.Queue) {
	t.Helper()
	wait.For(t, 10*time.Second, "the job queue to be empty", func() bool {
		v, f := q.Count(t)
		return v == 0 && f == 0
	})
}

func TestPerUserOrderAndParallelUsers(t *testing.T) {
	e := newEnv(t, true, 30*time.Second)
	rec := &recorder{}
	e.start(t, nil, worker.Config{Handler: rec, MaxConcurrentUsers: 3})
	users := []string{"ann", "bob", "cat"}
	for i := range 5 {
		for _, u := range users {
			e.jobsQ.SendJob(t, job(jobs.TypeExecute, fmt.Sprintf("%s-%d", u, i), "acme", u, "t1", "sleep:150ms"))
		}
	}
	final := e.responses.WaitFinal(t, 15, 60*time.Second)
	spans := rec.Spans()
	byUser := map[string][]span{}
	for _, s := range spans {
		byUser[s.job.UserID] = append(byUser[s.job.UserID], s)
	}
	for _, u := range users {
		got := byUser[u]
		if len(got) != 5 {
			t.Fatalf("user %s ran %d jobs, want 5", u, len(got))
		}
		for i, s := range got {
			if want := fmt.Sprintf("%s-%d", u, i); s.job.JobID != want {
				t.Errorf("user %s job %d = %s, want %s (send order)", u, i, s.job.JobID, want)
			}
			if i > 0 && s.start.Before(got[i-1].end) {
				t.Errorf("user %s: %s started before %s ended", u, s.job.JobID, got[i-1].job.JobID)
			}
		}
	}
	overlap := false
	for _, a := range spans {
		for _, b := range spans {
			if a.job.UserID != b.job.UserID && a.start.Before(b.end) && b.start.Before(a.end) {
				overlap = true
			}
		}
	}
	if !overlap {
		t.Error("jobs of different users never overlapped in time")
	}
	// Responses per user arrive in order.
	seen := map[string]int{}
	for _, r := range final {
		if want := fmt.Sprintf("%s-%d", r.UserID, seen[r.UserID]); r.JobID != want {
			t.Errorf("response for %s = %s, want %s", r.UserID, r.JobID, want)
		}
		seen[r.UserID]++
	}
}

// TestStartedAtExcludesTheWaitInTheLane: three jobs of one user sent at
// once wait for each other; each answer's startedAt is at or after the
// previous answer's finishedAt, and durationMs is finishedAt - startedAt (the
// job's own time, not its wait). The ledger records the same start.
func TestStartedAtExcludesTheWaitInTheLane(t *testing.T) {
	e := newEnv(t, true, 30*time.Second)
	root := t.TempDir()
	e.start(t, nil, worker.Config{Handler: &recorder{}, Ledger: ledger.New(root)})
	for i := range 3 {
		e.jobsQ.SendJob(t, job(jobs.TypeExecute, fmt.Sprintf("wait-%d", i), "acme", "ann", "t1", "sleep:300ms"))
	}
	final := e.responses.WaitFinal(t, 3, 30*time.Second)
	parse := func(what, s string) time.Time {
		t.Helper()
		ts, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatalf("%s %q: %v", what, s, err)
		}
		return ts
	}
	var prevFinished time.Time
	for i, r := range final {
		if want := fmt.Sprintf("wait-%d", i); r.JobID != want {
			t.Fatalf("answer %d is %s, want %s", i, r.JobID, want)
		}
		received, started, finished := parse("receivedAt", r.ReceivedAt), parse("startedAt", r.StartedAt), parse("finishedAt", r.FinishedAt)
		if started.Before(received) || finished.Before(started) {
			t.Errorf("%s: received %s, started %s, finished %s: out of order", r.JobID, r.ReceivedAt, r.StartedAt, r.FinishedAt)
		}
		if i > 0 && started.Before(prevFinished) {
			t.Errorf("%s started at %s, before the previous job finished at %s", r.JobID, r.StartedAt, prevFinished.Format(time.RFC3339Nano))
		}
		if want := finished.Sub(started).Milliseconds(); r.DurationMs != want {
			t.Errorf("%s: durationMs %d, want finishedAt - startedAt = %d", r.JobID, r.DurationMs, want)
		}
		rec, found, err := ledger.New(root).Get(jobs.Job{JobID: r.JobID, ClientID: "acme", UserID: "ann"})
		if err != nil || !found || !rec.StartedAt.Equal(started) {
			t.Errorf("%s: ledger startedAt %s (found %v, %v), want %s", r.JobID, rec.StartedAt, found, err, r.StartedAt)
		}
		prevFinished = finished
	}
}

func TestLongJobIsNotRedelivered(t *testing.T) {
	e := newEnv(t, true, 2*time.Second)
	rec := &recorder{}
	e.start(t, nil, worker.Config{Handler: rec})
	e.jobsQ.SendJob(t, job(jobs.TypeExecute, "long", "acme", "u1", "t1", "sleep:5s"))
	final := e.responses.WaitFinal(t, 1, 30*time.Second)
	if final[0].Status != jobs.StatusSucceeded {
		t.Fatalf("response %+v", final[0])
	}
	if n := rec.calls.Load(); n != 1 {
		t.Errorf("handler called %d times for a job longer than the visibility timeout, want 1", n)
	}
	// And no second delivery turns up afterwards.
	e.responses.Poll(t, 3*time.Second)
	if n := len(e.responses.Final()); n != 1 {
		t.Errorf("%d final responses, want 1", n)
	}
	waitQueueEmpty(t, e.jobsQ)
}

// crashingClient is the real emulator client, except that DeleteMessage fails:
// the worker answers a job and then "dies" before deleting it.
type crashingClient struct {
	*sqs.Client
}

func (crashingClient) DeleteMessage(context.Context, *sqs.DeleteMessageInput, ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error) {
	return nil, errors.New("worker crashed before delete")
}

func TestRedeliveredJobRunsOnce(t *testing.T) {
	e := newEnv(t, true, 2*time.Second)
	root := t.TempDir()
	first := &recorder{}
	_, stop := e.start(t, crashingClient{e.emu.SQS()}, worker.Config{Handler: first, Ledger: ledger.New(root)})
	e.jobsQ.SendJob(t, job(jobs.TypeExecute, "once", "acme", "u1", "t1", "edit"))
	e.responses.WaitFinal(t, 1, 20*time.Second)
	stop()
	if v, f := e.jobsQ.Count(t); v+f != 1 {
		t.Fatalf("the undeleted message is gone: visible %d in flight %d", v, f)
	}

	second := &recorder{}
	e.start(t, nil, worker.Config{Handler: second, Ledger: ledger.New(root)})
	waitQueueEmpty(t, e.jobsQ)
	if first.calls.Load() != 1 || second.calls.Load() != 0 {
		t.Errorf("handler calls: first worker %d, second %d; want 1 and 0", first.calls.Load(), second.calls.Load())
	}
	e.responses.Poll(t, time.Second)
	final := e.responses.Final()
	if len(final) != 1 || final[0].Commit != "c-once" {
		t.Errorf("final responses %+v, want exactly one", final)
	}
}

// TestEveryInvalidMessageIsAnsweredOnce: a message that is not a valid job
// is answered invalid_job exactly once, echoing only its valid ids, with the
// SQS MessageId standing in for a missing or invalid job id, in the
// message's own FIFO group; the next job of the group still runs.
func TestEveryInvalidMessageIsAnsweredOnce(t *testing.T) {
	e := newEnv(t, true, 30*time.Second)
	rec := &recorder{}
	e.start(t, nil, worker.Config{Handler: rec})
	valid := `"clientId":"acme","userId":"u1","threadId":"t1"`
	poison := []struct {
		name, body string
		want       jobs.Response // the ids the answer echoes; JobID "" means the MessageId
	}{
		{"not json", `this is not json`, jobs.Response{}},
		{"wrong shape", `[1,2,3]`, jobs.Response{}},
		{"unknown type", `{"type":"deploy","jobId":"j-deploy",` + valid + `}`, jobs.Response{JobID: "j-deploy", ClientID: "acme", UserID: "u1", ThreadID: "t1"}},
		{"dotdot client", `{"type":"init","jobId":"j-dotdot","clientId":"../evil","userId":"u1","threadId":"t1"}`, jobs.Response{JobID: "j-dotdot", Type: jobs.TypeInit, UserID: "u1", ThreadID: "t1"}},
		{"slash user", `{"type":"init","clientId":"acme","userId":"u/1","threadId":"t1"}`, jobs.Response{Type: jobs.TypeInit, ClientID: "acme", ThreadID: "t1"}},
		{"dash client", `{"type":"init","jobId":"../x","clientId":"-rf","userId":"u1","threadId":"t1"}`, jobs.Response{Type: jobs.TypeInit, UserID: "u1", ThreadID: "t1"}},
		{"slash thread", `{"type":"init","clientId":"acme","userId":"u1","threadId":"a/b"}`, jobs.Response{Type: jobs.TypeInit, ClientID: "acme", UserID: "u1"}},
		{"empty thread", `{"type":"init","clientId":"acme","userId":"u1","threadId":""}`, jobs.Response{Type: jobs.TypeInit, ClientID: "acme", UserID: "u1"}},
		{"long thread", `{"type":"init","clientId":"acme","userId":"u1","threadId":"` + strings.Repeat("x", 200) + `"}`, jobs.Response{Type: jobs.TypeInit, ClientID: "acme", UserID: "u1"}},
	}
	msgIDs := make([]string, len(poison))
	for i, p := range poison {
		msgIDs[i] = e.jobsQ.SendRaw(t, p.body, "acme/u1", fmt.Sprintf("poison-%d", i))
	}
	e.jobsQ.SendJob(t, job(jobs.TypeExecute, "after-poison", "acme", "u1", "t1", "edit"))
	final := e.responses.WaitFinal(t, len(poison)+1, 30*time.Second)
	if last := final[len(final)-1]; last.JobID != "after-poison" || last.Status != jobs.StatusSucceeded {
		t.Errorf("the job after the poison = %+v", last)
	}
	for i, p := range poison {
		t.Run(p.name, func(t *testing.T) {
			got := final[i]
			want := p.want
			if want.JobID == "" {
				want.JobID = msgIDs[i]
			}
			if got.Status != jobs.StatusFailed || got.Error == nil || got.Error.Code != jobs.CodeInvalidJob || got.Error.Message == "" {
				t.Errorf("answer = %+v %+v, want failed invalid_job with a message", got, got.Error)
			}
			if got.JobID != want.JobID || got.Type != want.Type || got.ClientID != want.ClientID || got.UserID != want.UserID || got.ThreadID != want.ThreadID {
				t.Errorf("echoed ids = job %q type %q client %q user %q thread %q, want %q %q %q %q %q",
					got.JobID, got.Type, got.ClientID, got.UserID, got.ThreadID, want.JobID, want.Type, want.ClientID, want.UserID, want.ThreadID)
			}
			if g := e.responses.Groups[i]; g != "acme/u1" {
				t.Errorf("answer in FIFO group %q, want the message's own group acme/u1", g)
			}
			if got.ReceivedAt == "" || got.StartedAt == "" || got.FinishedAt == "" {
				t.Errorf("answer times = %q %q %q", got.ReceivedAt, got.StartedAt, got.FinishedAt)
			}
		})
	}
	waitQueueEmpty(t, e.jobsQ)
	if n := rec.calls.Load(); n != 1 {
		t.Errorf("handler called %d times, want 1 (only the valid job)", n)
	}
	e.responses.Poll(t, time.Second)
	if n := len(e.responses.Final()); n != len(poison)+1 {
		t.Errorf("%d final answers, want exactly %d", n, len(poison)+1)
	}
}

// TestInvalidMessageWithoutGroupIsAnsweredInAFixedGroup: a standard job
// queue's messages have no group; an invalid one naming no valid user is
// answered on the FIFO response queue in one fixed group.
func TestInvalidMessageWithoutGroupIsAnsweredInAFixedGroup(t *testing.T) {
	emu := sqstest.Start(t)
	name := strings.ReplaceAll(t.Name(), "/", "-")
	jq := emu.CreateQueue(t, name+"-jobs", sqstest.QueueOptions{VisibilityTimeout: 30 * time.Second})
	rq := emu.CreateQueue(t, name+"-responses", sqstest.QueueOptions{FIFO: true})
	e := &env{emu: emu, jobsQ: jq, respQ: rq, responses: sqstest.NewResponses(rq)}
	e.start(t, nil, worker.Config{Handler: &recorder{}})
	msgID := jq.SendRaw(t, `{"type":"init","clientId":"../evil"}`, "", "")
	got := e.responses.WaitFinal(t, 1, 20*time.Second)[0]
	if got.JobID != msgID || got.ClientID != "" || got.Error == nil || got.Error.Code != jobs.CodeInvalidJob {
		t.Errorf("answer = %+v %+v, want invalid_job for message %s with no client echoed", got, got.Error, msgID)
	}
	if g := e.responses.Groups[0]; g != "invalid-messages" {
		t.Errorf("answer in group %q, want invalid-messages", g)
	}
	waitQueueEmpty(t, jq)
}

// flakyProxy forwards to the emulator, or drops every new request while
// down (a request under way, such as a long poll, ends as it would).
type flakyProxy struct {
	down  atomic.Bool
	proxy *httputil.ReverseProxy
}

func (p *flakyProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.down.Load() {
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
				return
			}
		}
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	p.proxy.ServeHTTP(w, r)
}

func TestRecoversFromUnreachableSQS(t *testing.T) {
	e := newEnv(t, true, 30*time.Second)
	target, _ := url.Parse(e.emu.URL)
	fp := &flakyProxy{proxy: httputil.NewSingleHostReverseProxy(target)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: fp}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	var logs logbuf.Buffer
	client := sqs.NewFromConfig(sqstest.AWSConfig(), func(o *sqs.Options) { o.BaseEndpoint = aws.String("http://" + ln.Addr().String()) })
	rec := &recorder{}
	e.start(t, client, worker.Config{Handler: rec, BackoffMin: 50 * time.Millisecond, BackoffMax: 500 * time.Millisecond, WaitTime: time.Second,
		Logger: logging.New(&logs, logging.Options{Format: "json"})})
	e.jobsQ.SendJob(t, job(jobs.TypeExecute, "before", "acme", "u1", "t1", "edit"))
	e.responses.WaitFinal(t, 1, 20*time.Second)
	waitQueueEmpty(t, e.jobsQ)

	// SQS goes away: the long poll under way ends (WaitTime), the next ones
	// fail. A job sent meanwhile waits in the queue until SQS is back.
	fp.down.Store(true)
	wait.For(t, 20*time.Second, "the worker to back off twice from the unreachable SQS", func() bool {
		return strings.Count(logs.String(), "backing off") >= 2
	})
	e.jobsQ.SendJob(t, job(jobs.TypeExecute, "during", "acme", "u1", "t1", "edit"))
	fp.down.Store(false)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker log:\n%s", logs.String())
		}
	})
	final := e.responses.WaitFinal(t, 2, 30*time.Second)
	if final[1].JobID != "during" || final[1].Status != jobs.StatusSucceeded {
		t.Errorf("after the outage: %+v", final[1])
	}
	out := logs.String()
	if !strings.Contains(out, "backing off") || !strings.Contains(out, "reachable again") {
		t.Errorf("the outage was not logged:\n%s", out)
	}
}

func TestShutdownReleasesRunningAndWaitingJobs(t *testing.T) {
	e := newEnv(t, true, 30*time.Second)
	rec := &recorder{}
	w, stop := e.start(t, nil, worker.Config{Handler: rec, Ledger: ledger.New(t.TempDir())})
	e.jobsQ.SendJob(t, job(jobs.TypeExecute, "running", "acme", "u1", "t1", "sleep:1m"))
	e.jobsQ.SendJob(t, job(jobs.TypeExecute, "waiting", "acme", "u1", "t1", "edit"))
	wait.For(t, 15*time.Second, "the job to start", func() bool { return w.Stats().InFlight == 1 })
	start := time.Now()
	stop()
	if d := time.Since(start); d > 25*time.Second {
		t.Errorf("shutdown took %s", d)
	}
	// kumo counts a released message as in flight until the next receive
	// moves it back, so count both: nothing may have been deleted.
	if v, f := e.jobsQ.Count(t); v+f != 2 {
		t.Errorf("after shutdown the queue has %d visible, %d in flight; want both kept", v, f)
	}
	if n := len(e.responses.Final()); n != 0 {
		t.Errorf("a cancelled job was answered: %d responses", n)
	}
	// A new worker runs them, in order.
	rec2 := &recorder{}
	e.jobsQ.SendJob(t, job(jobs.TypeExecute, "later", "acme", "u1", "t1", "edit"))
	e.start(t, nil, worker.Config{Handler: rec2, Ledger: ledger.New(t.TempDir()), JobTimeout: 200 * time.Millisecond})
	// Released at once, not after the 30 s visibility timeout. (kumo does
	// not keep a FIFO group's order for released messages, real SQS does;
	// so only the set is checked here.)
	final := e.responses.WaitFinal(t, 3, 10*time.Second)
	got := map[string]bool{}
	for _, r := range final {
		got[r.JobID] = true
	}
	if !got["running"] || !got["waiting"] || !got["later"] {
		t.Errorf("after restart answered %v, want running, waiting and later", got)
	}
}

func TestFailureAndTimeoutAreAnswered(t *testing.T) {
	e := newEnv(t, false, 30*time.Second)
	e.start(t, nil, worker.Config{Handler: &recorder{}, JobTimeout: 300 * time.Millisecond})
	e.jobsQ.SendJob(t, job(jobs.TypeExecute, "fails", "acme", "u1", "t1", "fail"))
	final := e.responses.WaitFinal(t, 1, 20*time.Second)
	e.jobsQ.SendJob(t, job(jobs.TypeExecute, "slow", "acme", "u1", "t1", "sleep:10s"))
	final = e.responses.WaitFinal(t, 2, 20*time.Second)
	if r := final[0]; r.Status != jobs.StatusFailed || r.Error.Code != jobs.CodeAgentFailed {
		t.Errorf("failing job: %+v", r)
	}
	if r := final[1]; r.Status != jobs.StatusFailed || r.Error.Code != jobs.CodeTimeout || !strings.Contains(r.Error.Message, "JOB_TIMEOUT") {
		t.Errorf("slow job: %+v %+v", r, r.Error)
	}
	progress := 0
	for _, r := range e.responses.All {
		if r.Status == jobs.StatusProgress && r.JobID == "slow" && r.Progress != nil && r.Progress.Summary == "sleeping 10s" {
			progress++
		}
	}
	if progress != 1 {
		t.Errorf("%d progress responses for the slow job, want 1", progress)
	}
}

// hangingClient is the real emulator client whose receives never return
// until cancelled: a stuck poll loop.
type hangingClient struct {
	*sqs.Client
}

func (hangingClient) ReceiveMessage(ctx context.Context, _ *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestHealthyTurnsFalseWhenThePollLoopIsStuck(t *testing.T) {
	e := newEnv(t, true, 30*time.Second)
	healthy, _ := e.start(t, nil, worker.Config{Handler: &recorder{}, StuckAfter: 2 * time.Second})
	stuck, _ := e.start(t, hangingClient{e.emu.SQS()}, worker.Config{Handler: &recorder{}, StuckAfter: 2 * time.Second})
	wait.For(t, 20*time.Second, "a worker whose receive never returns to say it is unhealthy", func() bool { return !stuck.Healthy() })
	if !healthy.Healthy() {
		t.Error("a worker polling normally says it is not healthy")
	}
}

func TestMissingJobQueueStopsRun(t *testing.T) {
	emu := sqstest.Start(t)
	rq := emu.CreateQueue(t, "missing-queue-responses", sqstest.QueueOptions{})
	w, err := worker.New(emu.SQS(), worker.Config{
		JobQueueURL: "http://localhost:4566/000000000000/no-such-queue", ResponseQueueURL: rq.URL, Handler: &recorder{},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = w.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "JOB_QUEUE_URL") || ctx.Err() != nil {
		t.Errorf("Run with a missing queue = %v, want an error naming JOB_QUEUE_URL at once", err)
	}
}

// TestLastDeliveryBeforeDeadLetterIsAnswered: a job released by two
// shutdowns on a queue with maxReceiveCount 2 is answered as failed on its
// second delivery instead of vanishing into the dead-letter queue.
func TestLastDeliveryBeforeDeadLetterIsAnswered(t *testing.T) {
	emu := sqstest.Start(t)
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, t.Name())
	dlq := emu.CreateQueue(t, name+"-dlq", sqstest.QueueOptions{FIFO: true})
	jq := emu.CreateQueue(t, name+"-jobs", sqstest.QueueOptions{FIFO: true, Attributes: map[string]string{
		"RedrivePolicy": `{"deadLetterTargetArn":"` + dlq.ARN(t) + `","maxReceiveCount":2}`,
	}})
	rq := emu.CreateQueue(t, name+"-responses", sqstest.QueueOptions{FIFO: true})
	e := &env{emu: emu, jobsQ: jq, respQ: rq, responses: sqstest.NewResponses(rq)}

	first := &recorder{}
	w, stop := e.start(t, nil, worker.Config{Handler: first, Ledger: ledger.New(t.TempDir())})
	e.jobsQ.SendJob(t, job(jobs.TypeExecute, "doomed", "acme", "u1", "t1", "sleep:1m"))
	wait.For(t, 15*time.Second, "the job to start", func() bool { return w.Stats().InFlight == 1 })
	stop() // released: one receive counted

	second := &recorder{}
	e.start(t, nil, worker.Config{Handler: second, Ledger: ledger.New(t.TempDir())})
	final := e.responses.WaitFinal(t, 1, 20*time.Second)
	if r := final[0]; r.JobID != "doomed" || r.Status != jobs.StatusFailed || r.Error.Code != jobs.CodeInternal ||
		!strings.Contains(r.Error.Message, "delivered 2 times") {
		t.Errorf("last delivery answered %+v %+v", r, r.Error)
	}
	if n := second.calls.Load(); n != 0 {
		t.Errorf("the job ran again on its last delivery (%d calls)", n)
	}
	waitQueueEmpty(t, e.jobsQ)
}

// TestBurstOfOneUserDoesNotStarveAnother: a user with a dozen queued jobs
// does not keep another user's job from starting beside them: it starts
// while the burst's first (long) job still runs.
func TestBurstOfOneUserDoesNotStarveAnother(t *testing.T) {
	e := newEnv(t, true, 30*time.Second)
	rec := &recorder{}
	for i := range 12 {
		sleep := "sleep:10ms"
		if i == 0 {
			sleep = "sleep:3s"
		}
		e.jobsQ.SendJob(t, job(jobs.TypeExecute, fmt.Sprintf("burst-%02d", i), "acme", "busy", "t1", sleep))
	}
	// Queued before the worker starts, the burst comes in one full batch.
	w, _ := e.start(t, nil, worker.Config{Handler: rec, MaxConcurrentUsers: 2})
	wait.For(t, 15*time.Second, "the burst's first job to start", func() bool { return w.Stats().InFlight >= 1 })
	e.jobsQ.SendJob(t, job(jobs.TypeExecute, "other", "acme", "other", "t1", "sleep:10ms"))
	e.responses.WaitFinal(t, 13, 60*time.Second)
	var other, first span
	for _, s := range rec.Spans() {
		switch s.job.JobID {
		case "other":
			other = s
		case "burst-00":
			first = s
		}
	}
	if !other.end.Before(first.end) {
		t.Errorf("the other user's job ended at %s, after the burst's first job (%s): it waited for a free slot",
			other.end.Format(time.StampMilli), first.end.Format(time.StampMilli))
	}
}
