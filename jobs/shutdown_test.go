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
		{"the drain, a job's last steps and its answer, in the job loop's bound", jobs.ShutdownDrain + jobs.FinishTimeout + jobs.ShutdownAnswer, jobs.ShutdownStop},
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
		"ShutdownDrain": jobs.ShutdownDrain, "ShutdownAnswer": jobs.ShutdownAnswer, "FinishTimeout": jobs.FinishTimeout,
	} {
		if d < time.Second {
			t.Errorf("%s is %s: the budget leaves it no time", name, d)
		}
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
