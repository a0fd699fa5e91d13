// Package gotool runs the go command from tests with an explicit
// environment: a temporary HOME, and the build and module caches the test's
// own go uses (so nothing is fetched or built twice), never the rest of the
// machine's environment.
package gotool

import (
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// cacheVars are the go settings a child go needs to reuse this machine's
// caches and toolchain.
var cacheVars = []string{"GOROOT", "GOPATH", "GOCACHE", "GOMODCACHE", "GOPROXY", "GOSUMDB", "GOTOOLCHAIN", "GOFLAGS"}

var settings = sync.OnceValues(func() ([]string, error) {
	out, err := exec.Command("go", append([]string{"env"}, cacheVars...)...).Output()
	if err != nil {
		return nil, err
	}
	values := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	env := make([]string, 0, len(cacheVars))
	for i, name := range cacheVars {
		if i < len(values) && values[i] != "" {
			env = append(env, name+"="+values[i])
		}
	}
	return env, nil
})

// Command returns `go args...` run in dir with an explicit environment: PATH,
// a temporary HOME, the go caches and toolchain of this machine, and extra
// ("KEY=value").
func Command(tb testing.TB, dir string, args []string, extra ...string) *exec.Cmd {
	tb.Helper()
	env, err := settings()
	if err != nil {
		tb.Fatalf("go env: %v", err)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = append(append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + tb.TempDir()}, env...), extra...)
	return cmd
}
