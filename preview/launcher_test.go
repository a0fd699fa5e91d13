package preview

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/webordinary/claude-code-astro/internal/testkit/repo"
)

// TestLauncherIgnoresTheCLIsTemporaryFiles checks the watch rule of the dev
// server launcher against the names the Claude Code CLI gives its temporary
// files, and that the pinned CLI still names them so: its atomic write (Edit,
// Write) creates `${file}.tmp.${process.pid}.${randomBytes(6) hex}` beside
// the file and renames it over the file; its other writes use
// `${file}.tmp.${randomBytes(4) hex}` (2.1.218 and 2.1.332 alike).
func TestLauncherIgnoresTheCLIsTemporaryFiles(t *testing.T) {
	m := regexp.MustCompile(`const cliTempFile = /(.+)/;`).FindSubmatch(launcherJS)
	if m == nil {
		t.Fatal("no cliTempFile in devserver.mjs")
	}
	rule := regexp.MustCompile(string(m[1])) // the JavaScript pattern is RE2 too
	tests := []struct {
		name   string
		ignore bool
	}{
		{"/site/src/pages/index.astro.tmp.10655.f8523c29786c", true}, // issue 22's
		{"/site/src/components/Card.astro.tmp.7.0123456789ab", true},
		{"/site/src/pages/about.astro.tmp.89abcdef", true},
		{"/site/src/pages/about.astro.tmp.4242.1733140000000", true},
		{"/site/src/pages/index.astro", false},
		{"/site/src/pages/notes.tmp", false},
		{"/site/src/pages/tmp.astro", false},
		{"/site/src/pages/release.tmp.md", false},
	}
	for _, tt := range tests {
		if got := rule.MatchString(tt.name); got != tt.ignore {
			t.Errorf("%s: ignored %v, want %v", tt.name, got, tt.ignore)
		}
	}

	bin, err := filepath.EvalSymlinks(repo.ClaudeBin(t))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, template := range []string{"`.tmp.${process.pid}.${", "}.tmp.${"} {
		if !bytes.Contains(cli, []byte(template)) {
			t.Errorf("the pinned CLI (%s) has no %q: it names its temporary files differently now", bin, template)
		}
	}
}
