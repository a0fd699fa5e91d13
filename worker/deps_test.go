package worker_test

import (
	"strings"
	"testing"

	"github.com/webordinary/claude-code-astro/internal/testkit/gotool"
)

// TestWorkerKnowsQueuesNotGit: the queue loop depends on the job contract,
// never on the packages that do the work (git and files, the agent, the
// preview): `go list -deps ./worker` names none of them.
func TestWorkerKnowsQueuesNotGit(t *testing.T) {
	out, err := gotool.Command(t, ".", []string{"list", "-deps", "-f", "{{.ImportPath}}", "."}).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	const mod = "github.com/webordinary/claude-code-astro/"
	deps := strings.Fields(string(out))
	if len(deps) < 2 {
		t.Fatalf("go list -deps printed %q", out)
	}
	for _, forbidden := range []string{"workspace", "internal/agent", "preview", "jobs/site"} {
		for _, d := range deps {
			if d == mod+forbidden || strings.HasPrefix(d, mod+forbidden+"/") {
				t.Errorf("the worker package depends on %s", d)
			}
		}
	}
}
