package config_test

import (
	"strings"
	"testing"

	"github.com/webordinary/claude-code-astro/internal/testkit/gotool"
)

// TestConfigDependsOnNoPackageItConfigures: config reads and checks the
// environment with rules of small packages of their own (ident, pricing),
// never with the packages it configures, which take their defaults from
// it: `go list -deps ./internal/config` names no other package of this
// module.
func TestConfigDependsOnNoPackageItConfigures(t *testing.T) {
	out, err := gotool.Command(t, ".", []string{"list", "-deps", "-f", "{{.ImportPath}}", "."}).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	const mod = "github.com/webordinary/claude-code-astro/"
	allowed := map[string]bool{mod + "internal/config": true, mod + "internal/ident": true, mod + "internal/pricing": true}
	deps := strings.Fields(string(out))
	if len(deps) < 2 {
		t.Fatalf("go list -deps printed %q", out)
	}
	for _, d := range deps {
		if strings.HasPrefix(d, mod) && !allowed[d] {
			t.Errorf("the config package depends on %s", d)
		}
	}
}
