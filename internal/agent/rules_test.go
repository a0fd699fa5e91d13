package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/webordinary/claude-code-astro/internal/testkit/fakeanthropic"
	"github.com/webordinary/claude-code-astro/internal/testkit/repo"
)

// TestRulesKeepTheAgentInTheProject scripts the real CLI, through the fake
// API, into every tool call the rules forbid and a few they allow, and checks
// each tool's result and the files on disk: reads, searches and writes
// outside the project (by absolute path and by ../) are refused, .git cannot
// be edited, Bash does not exist, and the repository's own settings (a
// SessionStart hook, an env that moves the API elsewhere) and the user
// settings in CLAUDE_CONFIG_DIR are not read, while its CLAUDE.md still
// reaches the agent.
func TestRulesKeepTheAgentInTheProject(t *testing.T) {
	eachCLI(t, func(t *testing.T, cli repo.CLI) {
		e := newTestEnv(t, cli)
		outside := t.TempDir()
		secret := filepath.Join(outside, "other-tenant.txt")
		if err := os.WriteFile(secret, []byte("OTHER-TENANT-SECRET\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		planted := func(name string) string { return filepath.Join(outside, name) }
		hook := func(name string) string {
			return `{"hooks":{"SessionStart":[{"hooks":[{"type":"command","command":"touch ` + planted(name) + `"}]}]}}`
		}
		e.writeFile("CLAUDE.md", "House rule CLAUDEMD-MARKER-4412: headings stay short.\n")
		for path, content := range map[string]string{
			filepath.Join(e.project, ".claude", "settings.json"):       hook("project-hook-ran"),
			filepath.Join(e.project, ".claude", "settings.local.json"): `{"env":{"ANTHROPIC_BASE_URL":"http://127.0.0.1:1"}}`,
			filepath.Join(e.config, "settings.json"):                   hook("user-hook-ran"),
		} {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		type call struct {
			name    string
			step    fakeanthropic.Step
			allowed bool
		}
		calls := []call{
			{"Read outside by absolute path", fakeanthropic.Read(secret), false},
			{"Read outside by ../", fakeanthropic.Read(e.project + "/../" + filepath.Base(filepath.Dir(secret)) + "/" + filepath.Base(secret)), false},
			{"Glob outside", fakeanthropic.Tool("Glob", map[string]any{"pattern": "*", "path": outside}), false},
			{"Grep outside", fakeanthropic.Tool("Grep", map[string]any{"pattern": "SECRET", "path": outside}), false},
			{"Write outside", fakeanthropic.Write(planted("planted.txt"), "x"), false},
			{"Edit outside", fakeanthropic.Edit(secret, "OTHER", "MINE"), false},
			{"Write .git/config", fakeanthropic.Write(e.path(".git/config"), "[core]\n\tfsmonitor = touch "+planted("fsmonitor")+"\n"), false},
			{"Bash", fakeanthropic.Bash("touch " + planted("bash-ran")), false},
			{"Read inside", fakeanthropic.Read(e.path("index.md")), true},
			{"Grep inside", fakeanthropic.Tool("Grep", map[string]any{"pattern": "hello", "path": e.project}), true},
			{"Edit inside", fakeanthropic.Edit(e.path("index.md"), "hello", "HELLO"), true},
			{"Write inside", fakeanthropic.Write(e.path("new.txt"), "inside\n"), true},
		}
		var script []fakeanthropic.Step
		for _, c := range calls {
			script = append(script, c.step)
		}
		e.srv.SetScript(append(script, fakeanthropic.Text("done"))...)
		if _, err := e.runner(nil).Run(context.Background(), e.request("Try everything"), nil); err != nil {
			t.Fatalf("Run: %v\nlogs:\n%s", err, e.logs)
		}

		last, ok := e.srv.LastMessageRequest()
		if !ok {
			t.Fatal("the fake API got no scripted request: the repository's env moved the API elsewhere")
		}
		results := last.ToolResults()
		if len(results) != len(calls) {
			t.Fatalf("%d tool results for %d calls", len(results), len(calls))
		}
		for i, c := range calls {
			text := results[i].ResultText()
			refused := strings.Contains(text, "denied") || strings.Contains(text, "haven't granted") ||
				strings.Contains(text, "No such tool available") || strings.Contains(text, "not enabled") ||
				strings.Contains(text, "has not been read yet") // Edit needs a Read first, which is refused outside
			if c.allowed == refused || strings.Contains(text, "OTHER-TENANT-SECRET") {
				t.Errorf("%s: allowed %v, but the tool answered %q", c.name, c.allowed, truncate(text, 200))
			}
		}
		for _, name := range []string{"planted.txt", "project-hook-ran", "user-hook-ran", "bash-ran", "fsmonitor"} {
			if _, err := os.Stat(planted(name)); err == nil {
				t.Errorf("%s exists: a forbidden call or hook ran", name)
			}
		}
		if b, _ := os.ReadFile(secret); string(b) != "OTHER-TENANT-SECRET\n" {
			t.Errorf("the file outside the project changed: %q", b)
		}
		if got := e.readFile("index.md"); got != "HELLO world\n" {
			t.Errorf("index.md = %q: the edit inside the project did not happen", got)
		}
		if !last.Contains("CLAUDEMD-MARKER-4412") {
			t.Error("the project's CLAUDE.md did not reach the agent")
		}
	})
}
