package claudecode

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const cliPackage = "@anthropic-ai/claude-code"

// pinned reads the CLI's exact version from dir's package.json and checks
// that its lockfile locks that version, its native packages included.
func pinned(t *testing.T, dir string) string {
	t.Helper()
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	readJSON(t, filepath.Join(dir, "package.json"), &pkg)
	want := pkg.Dependencies[cliPackage]
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(want) {
		t.Fatalf("%s/package.json: %s is %q, want an exact version", dir, cliPackage, want)
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	readJSON(t, filepath.Join(dir, "package-lock.json"), &lock)
	natives := 0
	for path, p := range lock.Packages {
		name, ok := strings.CutPrefix(path, "node_modules/")
		if !ok || (name != cliPackage && !strings.HasPrefix(name, cliPackage+"-")) {
			continue
		}
		if p.Version != want {
			t.Errorf("%s/package-lock.json: %s locked at %q, package.json says %q", dir, name, p.Version, want)
		}
		if name != cliPackage {
			natives++
		}
	}
	if natives == 0 {
		t.Errorf("%s/package-lock.json locks no native package of the CLI", dir)
	}
	return want
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
}

// older reports whether release a comes before release b.
func older(t *testing.T, a, b string) bool {
	t.Helper()
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := range pa {
		x, err1 := strconv.Atoi(pa[i])
		y, err2 := strconv.Atoi(pb[i])
		if err1 != nil || err2 != nil {
			t.Fatalf("versions %q and %q", a, b)
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// TestPins: the pinned CLI and the oldest supported one are exact versions
// that their lockfiles agree with, and the oldest is not newer than the
// pinned one (at a rollback both name the same release).
func TestPins(t *testing.T) {
	current := pinned(t, ".")
	oldest := pinned(t, filepath.Base(OldestDir))
	if older(t, current, oldest) {
		t.Errorf("the oldest supported CLI (%s) is newer than the pinned one (%s)", oldest, current)
	}
	if Dir+"/oldest" != OldestDir || !strings.HasPrefix(OldestBin, OldestDir+"/") {
		t.Errorf("OldestDir %q, OldestBin %q", OldestDir, OldestBin)
	}
}
