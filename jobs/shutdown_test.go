package jobs_test

import (
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/jobs"
)

// TestShutdownBudgetAddsUp: the parts of a stop fit in the whole, and the
// whole fits in the time ECS and the compose file give a stopping task.
func TestShutdownBudgetAddsUp(t *testing.T) {
	for _, tc := range []struct {
		what        string
		part, whole time.Duration
	}{
		{"the job loop and the close, in the budget", jobs.ShutdownLoop + jobs.ShutdownClose, jobs.ShutdownBudget},
		{"the job loop's own bound, in the binary's wait for it", jobs.ShutdownStop, jobs.ShutdownLoop - time.Second},
		{"the drain, a job's last steps in a stop and its answer, in the job loop's bound", jobs.ShutdownDrain + jobs.StopFinishTimeout + jobs.ShutdownAnswer, jobs.ShutdownStop},
		{"a job's last steps in a stop, in their bound outside one", jobs.StopFinishTimeout, jobs.FinishTimeout},
		{"a dev server's stop, in the close", jobs.DevServerStopTimeout, jobs.ShutdownClose - time.Second},
		{"the budget, in ECS's stopTimeout (infra/worker.yaml)", jobs.ShutdownBudget, seconds(t, "../infra/worker.yaml", `StopTimeout: (\d+)`) - time.Second},
		{"the budget, in the compose file's stop_grace_period", jobs.ShutdownBudget, seconds(t, "../docker-compose.yml", `stop_grace_period: (\d+)s`) - time.Second},
	} {
		if tc.part > tc.whole {
			t.Errorf("%s: %s > %s", tc.what, tc.part, tc.whole)
		}
	}
	for name, d := range map[string]time.Duration{
		"ShutdownClose": jobs.ShutdownClose, "DevServerStopTimeout": jobs.DevServerStopTimeout, "ShutdownStop": jobs.ShutdownStop,
		"ShutdownDrain": jobs.ShutdownDrain, "ShutdownAnswer": jobs.ShutdownAnswer, "StopFinishTimeout": jobs.StopFinishTimeout,
		"FinishTimeout": jobs.FinishTimeout, "LeftoversTimeout": jobs.LeftoversTimeout,
	} {
		if d < time.Second {
			t.Errorf("%s is %s: the budget leaves it no time", name, d)
		}
	}
}

// TestStop: a stop's FinishBy leaves the answer its time inside the job
// loop's bound, from the first Begin on; Begun ends then.
func TestStop(t *testing.T) {
	stop := jobs.NewStop()
	if by, stopping := stop.FinishBy(); stopping {
		t.Fatalf("a stop not begun says stopping, finish by %v", by)
	}
	if stop.Begun().Err() != nil {
		t.Fatal("Begun ended before the stop began")
	}
	at := time.Date(2026, 12, 2, 16, 0, 0, 0, time.UTC)
	stop.Begin(at)
	stop.Begin(at.Add(time.Minute)) // only the first counts
	by, stopping := stop.FinishBy()
	if !stopping || !by.Add(jobs.ShutdownAnswer).Equal(at.Add(jobs.ShutdownStop)) {
		t.Errorf("FinishBy %v, %v; want %v: the answer's %v before the job loop's bound", by, stopping, at.Add(jobs.ShutdownStop-jobs.ShutdownAnswer), jobs.ShutdownAnswer)
	}
	if stop.Begun().Err() == nil {
		t.Error("Begun has not ended once the stop began")
	}
}

// seconds reads the first number pattern's group matches in file.
func seconds(t *testing.T, file, pattern string) time.Duration {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(pattern).FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s: nothing matches %s", file, pattern)
	}
	n, err := strconv.Atoi(string(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	return time.Duration(n) * time.Second
}
