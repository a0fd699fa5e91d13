package demoagent_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/agent"
	"github.com/webordinary/claude-code-astro/internal/demoagent"
	"github.com/webordinary/claude-code-astro/internal/testkit/repo"
)

// TestDemoAgentEditsTheHeadingThroughTheCLI runs the real Claude Code CLI
// (each supported release: 2.1.332 sends the working directory in a
// `role: "system"` message, 2.1.218 in the system prompt) against the demo
// agent: the page's first heading becomes the instruction,
// the rest of the page stays, and the answer says it was the demo.
func TestDemoAgentEditsTheHeadingThroughTheCLI(t *testing.T) {
	for _, cli := range repo.CLIs(t) {
		t.Run(cli.Version, func(t *testing.T) {
			demo, err := demoagent.Start("127.0.0.1:0", nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = demo.Close(context.Background()) })

			root := t.TempDir()
			project := filepath.Join(root, "project")
			page := filepath.Join(project, filepath.FromSlash(demoagent.Page))
			if err := os.MkdirAll(filepath.Dir(page), 0o755); err != nil {
				t.Fatal(err)
			}
			const before = "---\nconst title = \"Home\";\n---\n<main>\n  <h1 id=\"title\" class=\"big\">Welcome</h1>\n  <h1>Second</h1>\n</main>\n"
			if err := os.WriteFile(page, []byte(before), 0o644); err != nil {
				t.Fatal(err)
			}
			r := agent.NewRunner(agent.Config{Bin: cli.Bin, APIKey: "demo", BaseURL: demo.URL, PATH: os.Getenv("PATH"), MaxTurns: 10})
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			res, err := r.Run(ctx, agent.Request{Instruction: "Hello from <the> demo\nsecond line ignored",
				ProjectDir: project, ConfigDir: filepath.Join(root, ".claude"), HomeDir: root}, nil)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			t.Logf("the agent answered: %s", res.Result)
			b, err := os.ReadFile(page)
			if err != nil {
				t.Fatal(err)
			}
			want := strings.Replace(before, ">Welcome<", ">Hello from &lt;the&gt; demo<", 1)
			if string(b) != want {
				t.Errorf("page after the demo agent:\n%s\nwant:\n%s", b, want)
			}
			if !strings.Contains(res.Result, "demo agent") || !strings.Contains(res.Result, "no model") {
				t.Errorf("the answer does not say it was the demo: %q", res.Result)
			}
		})
	}
}
