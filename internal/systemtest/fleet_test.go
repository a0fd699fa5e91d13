package systemtest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/ecsagent"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/jobs"
)

// TestServiceTaskProtects: a worker in an ECS service
// (said by ECS_TASK_MODE, or by the task metadata's ServiceName) protects
// its task from scale-in while a job runs and clears the protection after;
// idle, it neither calls StopTask nor exits (nor names a time it would,
// on /health): the service's scaler decides.
func TestServiceTaskProtects(t *testing.T) {
	tests := []struct {
		name, mode, serviceName string
	}{
		{"service", "service", ""},
		{"auto", "", "workers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessOptions{})
			cluster, task := h.emu.RunTask(t, queueName(t))
			meta := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				md := map[string]any{"Cluster": cluster, "TaskARN": task, "Family": "worker", "DesiredStatus": "RUNNING", "LaunchType": "FARGATE"}
				if tt.serviceName != "" {
					md["ServiceName"] = tt.serviceName
				}
				json.NewEncoder(w).Encode(md)
			}))
			t.Cleanup(meta.Close)
			agent := ecsagent.Start(t)

			p := h.start(map[string]string{"AUTO_SHUTDOWN_MINUTES": "0.05", "ECS_CONTAINER_METADATA_URI_V4": meta.URL + "/v4/c",
				"ECS_AGENT_URI": agent.URI(), "ECS_TASK_MODE": tt.mode})
			const idleLine = "idle: in an ECS service the task is not stopped"
			wait.For(t, 30*time.Second, "the worker to be idle", func() bool { return strings.Contains(p.logs.String(), idleLine) })
			if agent.Protected() || len(agent.Requests()) != 0 {
				t.Errorf("idle from the start, yet the agent was asked %+v", agent.Requests())
			}

			h.send(initJob("i1", "sam", "t1"))
			if r := h.final("i1", 60*time.Second); r.Status != jobs.StatusSucceeded {
				t.Fatalf("init: %+v", r.Error)
			}
			wait.For(t, 30*time.Second, "the protection to be cleared after the job", func() bool {
				reqs := agent.Requests()
				return len(reqs) >= 2 && reqs[0].ProtectionEnabled && !reqs[len(reqs)-1].ProtectionEnabled && !agent.Protected()
			})
			wait.For(t, 30*time.Second, "the worker to be idle again", func() bool { return strings.Count(p.logs.String(), idleLine) >= 2 })
			select {
			case <-p.done:
				t.Fatalf("the worker exited (%d) in a service", p.status)
			default:
			}
			if status, reason := h.emu.DescribeTask(t, cluster, task); status == "STOPPED" {
				t.Errorf("the task was stopped (%q) in a service", reason)
			}
			if code, body := p.health(); code != http.StatusOK || body["idleShutdownAt"] != nil {
				t.Errorf("/health %d, idleShutdownAt %v while idle in a service: want 200 and none (the task does not stop itself)", code, body["idleShutdownAt"])
			}
		})
	}
}
