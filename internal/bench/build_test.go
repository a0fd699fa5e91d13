package bench

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// TestBenchBuildsTheImagesBinary: the benchmarks build the worker as the
// Dockerfile does, so rows 1a, 2 and the rest measure what ships.
func TestBenchBuildsTheImagesBinary(t *testing.T) {
	dockerfile, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)CGO_ENABLED=0 go (build .*) -o \S+ \./cmd/worker$`).FindSubmatch(dockerfile)
	if m == nil {
		t.Fatal("the Dockerfile has no `CGO_ENABLED=0 go build ... -o ... ./cmd/worker` line")
	}
	// Split as a shell would, by BuildKit's own word lexer (no variables).
	got, err := shell.NewLex('\\').ProcessWords(string(m[1]), shell.EnvsFromSlice(nil))
	if err != nil {
		t.Fatalf("split the Dockerfile's go build: %v", err)
	}
	if !slices.Equal(got, productBuild) {
		t.Errorf("the Dockerfile builds with go %q, the benchmarks with go %q", got, productBuild)
	}
}
