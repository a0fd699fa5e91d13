package main

import (
	"strings"
	"testing"

	"github.com/webordinary/claude-code-astro/internal/testkit/gotool"
)

// TestProductionBinaryHasNoLocalParts: the image's binary (-tags nolocal)
// links neither the embedded SQS emulator nor the demo agent of `worker
// local`, and no test kit.
func TestProductionBinaryHasNoLocalParts(t *testing.T) {
	out, err := gotool.Command(t, ".", []string{"list", "-deps", "-tags", "nolocal", "-f", "{{.ImportPath}}", "."}).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	const mod = "github.com/webordinary/claude-code-astro/"
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps printed %q", out)
	}
	for _, forbidden := range []string{"internal/demoagent", "internal/localsqs", "internal/testkit"} {
		for _, d := range deps {
			if d == mod+forbidden || strings.HasPrefix(d, mod+forbidden+"/") {
				t.Errorf("the production binary links %s", d)
			}
		}
	}
}
