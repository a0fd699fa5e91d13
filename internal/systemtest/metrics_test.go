package systemtest

import (
	"strings"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/emf"
	"github.com/webordinary/claude-code-astro/internal/testkit/fakeanthropic"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/jobs"
)

// TestMetricsOfARealJob: the worker binary runs an init and an execute
// (the real CLI against the fake API); the metric lines it writes are valid
// embedded metric format and their values are the answers' own.
func TestMetricsOfARealJob(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	p := h.start(nil)
	h.send(initJob("m-init", "mia", "t1"))
	if r := h.final("m-init", time.Minute); r.Status != jobs.StatusSucceeded {
		t.Fatalf("init: %+v", r.Error)
	}
	page := h.projectDir("mia") + "/src/pages/index.astro"
	h.api.SetScript(fakeanthropic.EditFile(page, "<h1>Hello</h1>", "<h1>Metrics</h1>", "done")...)
	h.send(execJob("m-exec", "mia", "t1", "Change the heading"))
	exec := h.final("m-exec", time.Minute)
	if exec.Status != jobs.StatusSucceeded || exec.Claude == nil || exec.Claude.Usage == nil {
		t.Fatalf("execute: %+v %+v", exec, exec.Error)
	}

	// The line of each answer, found by its job type.
	byType := map[string][]emf.Metric{}
	wait.For(t, 10*time.Second, "a metric line for each answer", func() bool {
		byType = map[string][]emf.Metric{}
		for _, line := range strings.Split(p.logs.String(), "\n") {
			ms, ok, err := emf.Parse(line)
			if !ok {
				continue
			}
			if err != nil {
				t.Fatalf("invalid EMF line: %v\n%s", err, line)
			}
			for _, m := range ms {
				if m.Name == "Jobs" {
					byType[m.Dimensions[0]["JobType"]] = ms
				}
			}
		}
		return byType["init"] != nil && byType["execute"] != nil
	})
	value := func(ms []emf.Metric, name string) (emf.Metric, bool) {
		for _, m := range ms {
			if m.Name == name {
				return m, true
			}
		}
		return emf.Metric{}, false
	}
	checks := []struct {
		name string
		want float64
		unit string
	}{
		{"Jobs", 1, "Count"},
		{"JobDuration", float64(exec.DurationMs), "Milliseconds"},
		{"AgentDuration", float64(exec.Claude.DurationMs), "Milliseconds"},
		{"CostUSD", exec.Claude.CostUSD, "None"},
		{"InputTokens", float64(exec.Claude.Usage.InputTokens), "Count"},
		{"OutputTokens", float64(exec.Claude.Usage.OutputTokens), "Count"},
	}
	for _, c := range checks {
		m, ok := value(byType["execute"], c.name)
		if !ok {
			t.Errorf("the execute's line has no %s", c.name)
			continue
		}
		if m.Value != c.want || m.Unit != c.unit || m.Namespace != "ClaudeCodeAstro" {
			t.Errorf("%s = %v %s (%s), the answer says %v %s", c.name, m.Value, m.Unit, m.Namespace, c.want, c.unit)
		}
		if d := m.Dimensions[0]; d["Service"] != "worker" || d["Status"] != "succeeded" || d["ErrorCode"] != "none" {
			t.Errorf("%s dimensions %v", c.name, m.Dimensions)
		}
	}
	// The queue wait: from the send to startedAt, so below the whole time
	// from the send to the answer and at least zero.
	wait, ok := value(byType["execute"], "QueueWait")
	started, _ := time.Parse(time.RFC3339Nano, exec.StartedAt)
	received, _ := time.Parse(time.RFC3339Nano, exec.ReceivedAt)
	if !ok || wait.Value < float64(started.Sub(received).Milliseconds()) || wait.Value > 60_000 {
		t.Errorf("QueueWait %+v: want at least the time from receipt to start (%s) and under a minute", wait, started.Sub(received))
	}
	if _, ok := value(byType["init"], "CostUSD"); ok {
		t.Error("the init's line has a cost")
	}
	for _, id := range []string{"m-exec", "m-init", `"mia"`} {
		for _, line := range strings.Split(p.logs.String(), "\n") {
			if strings.Contains(line, `"_aws"`) && strings.Contains(line, id) {
				t.Errorf("a metric line holds the id %s: %s", id, line)
			}
		}
	}
}
