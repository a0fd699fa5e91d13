package bench

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
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
	if got := shellWords(string(m[1])); !slices.Equal(got, productBuild) {
		t.Errorf("the Dockerfile builds with go %q, the benchmarks with go %q", got, productBuild)
	}
}

// shellWords splits a command line as sh does for the plain words and double
// quotes the Dockerfile uses (no escapes, no variables).
func shellWords(line string) []string {
	var words []string
	var word strings.Builder
	inWord, quoted := false, false
	for _, r := range line {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case r == ' ' && !quoted:
			if inWord {
				words = append(words, word.String())
				word.Reset()
				inWord = false
			}
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, word.String())
	}
	return words
}
