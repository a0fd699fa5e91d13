package taskprotect_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/taskprotect"
	"github.com/webordinary/claude-code-astro/internal/testkit/ecsagent"
	"github.com/webordinary/claude-code-astro/internal/testkit/sqstest"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/worker"
)

// sleeper is a job handler that takes the time its instruction names.
type sleeper struct{}

func (sleeper) Handle(ctx context.Context, job jobs.Job, _ jobs.ProgressFunc) (jobs.Response, error) {
	d, err := time.ParseDuration(job.Instruction)
	if err != nil {
		return jobs.Response{}, jobs.Errorf(jobs.CodeInternal, "bad duration")
	}
	select {
	case <-time.After(d):
		return jobs.Response{}, nil
	case <-ctx.Done():
		return jobs.Response{}, ctx.Err()
	}
}

// run starts k until the test ends.
func run(t *testing.T, k *taskprotect.Keeper) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { k.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// TestProtectedWhileAJobRuns: a worker told of its jobs through a Keeper
// protects its task while a job runs, renews the protection on a long job
// before it expires, and clears it once idle; every request has the shape
// the agent documents (checked by the fake agent).
func TestProtectedWhileAJobRuns(t *testing.T) {
	agent := ecsagent.Start(t)
	keeper := taskprotect.New(taskprotect.Config{Setter: taskprotect.Agent{URI: agent.URI()}, Expires: 2 * time.Minute, Renew: 300 * time.Millisecond})
	run(t, keeper)

	emu := sqstest.Start(t)
	jq := emu.CreateQueue(t, "protect-jobs", sqstest.QueueOptions{VisibilityTimeout: 30 * time.Second})
	rq := emu.CreateQueue(t, "protect-responses", sqstest.QueueOptions{})
	responses := sqstest.NewResponses(rq)
	w, err := worker.New(emu.SQS(), worker.Config{JobQueueURL: jq.URL, ResponseQueueURL: rq.URL, Handler: sleeper{},
		Activity: keeper, WaitTime: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = w.Run(ctx) }) // Run's error is nil on a stop
	t.Cleanup(func() { cancel(); wg.Wait() })

	if agent.Protected() {
		t.Fatal("protected before any job")
	}
	jq.SendJob(t, jobs.Job{Type: jobs.TypeExecute, JobID: "long", ClientID: "acme", UserID: "u1", ThreadID: "t1", Instruction: "2s"})
	wait.For(t, 15*time.Second, "the task to be protected while the job runs", agent.Protected)
	wait.For(t, 15*time.Second, "the protection to be renewed during the job", func() bool {
		n := 0
		for _, r := range agent.Requests() {
			if r.ProtectionEnabled {
				n++
			}
		}
		return n >= 3
	})
	if st := w.Stats(); st.InFlight != 1 {
		t.Errorf("renewals counted, yet %d jobs in flight: the job should still run", st.InFlight)
	}
	responses.WaitFinal(t, 1, 20*time.Second)
	wait.For(t, 15*time.Second, "the protection to be cleared once idle", func() bool { return !agent.Protected() })
	reqs := agent.Requests()
	last := reqs[len(reqs)-1]
	if last.ProtectionEnabled || last.ExpiresInMinutes != 0 {
		t.Errorf("last request %+v, want a clear without ExpiresInMinutes", last)
	}
	for _, r := range reqs {
		if r.ProtectionEnabled && r.ExpiresInMinutes != 2 {
			t.Errorf("protection asked for %d minutes, want 2", r.ExpiresInMinutes)
		}
	}
}

// TestHoldsAreCounted: protection stays while any holder remains (a job,
// a preview lease), and goes when the last lets go.
func TestHoldsAreCounted(t *testing.T) {
	agent := ecsagent.Start(t)
	keeper := taskprotect.New(taskprotect.Config{Setter: taskprotect.Agent{URI: agent.URI()}})
	run(t, keeper)
	job := keeper.Begin()
	lease := keeper.Hold()
	wait.For(t, 10*time.Second, "protection", agent.Protected)
	job()
	job() // twice is fine
	lease2 := keeper.Hold()
	lease()
	n := len(agent.Requests())
	lease2()
	wait.For(t, 10*time.Second, "protection to be cleared", func() bool { return !agent.Protected() })
	for _, r := range agent.Requests()[:n] {
		if !r.ProtectionEnabled {
			t.Errorf("cleared while a holder remained: %+v", agent.Requests())
		}
	}
}

// TestAgentErrors: the agent's failure and error answers are errors naming
// what it said.
func TestAgentErrors(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   any
		want   string
	}{
		{"error", http.StatusBadRequest, map[string]any{"error": map[string]string{"Code": "AccessDeniedException", "Message": "no ecs:UpdateTaskProtection"}}, "AccessDeniedException"},
		{"failure", http.StatusOK, map[string]any{"failure": map[string]string{"Reason": "TASK_NOT_VALID", "Detail": "not in a service"}}, "TASK_NOT_VALID"},
		{"status", http.StatusInternalServerError, "", "status 500"},
		{"unconfirmed", http.StatusOK, map[string]any{"protection": map[string]any{"ProtectionEnabled": false}}, "does not confirm"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				json.NewEncoder(w).Encode(tt.body)
			}))
			defer srv.Close()
			err := taskprotect.Agent{URI: srv.URL, Client: srv.Client()}.Set(context.Background(), true, time.Minute)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Set = %v, want an error with %q", err, tt.want)
			}
		})
	}
}
