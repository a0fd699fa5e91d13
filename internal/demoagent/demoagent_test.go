package demoagent_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/agent"
	"github.com/webordinary/claude-code-astro/internal/demoagent"
	"github.com/webordinary/claude-code-astro/internal/messagesapi"
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

// TestDemoAgentCopesWithTheCLIsReadDedup: the real CLI answers a Read of a
// file it has read before with the same bounds, unchanged since, with "file
// unchanged" instead of its content (its read dedup). The demo agent then
// reads again with other bounds and still makes its edit: after a job
// stopped midway (here: after its Read, while the CLI waited for the model),
// and when the page is read twice in one job, job after job.
func TestDemoAgentCopesWithTheCLIsReadDedup(t *testing.T) {
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
	if err := os.WriteFile(page, []byte("<main>\n  <h1>Welcome</h1>\n</main>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A job stopped (Ctrl-C, a cancel) after its Read, while the CLI waited
	// for the model's next answer: the front holds that call until the run
	// is cancelled.
	target, err := url.Parse(demo.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	var hold atomic.Bool
	var reread struct {
		atomic.Bool
		name string // the instruction of the job whose page is read twice
	}
	reread.name = "Second"
	held := make(chan struct{}, 1)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		prompt := bytes.LastIndex(body, []byte(`"`+reread.name+`"`))
		if reread.Load() && prompt >= 0 && bytes.Count(body[prompt:], []byte(`"tool_result"`)) == 1 {
			// The model reads the page a second time, as a real one may:
			// the CLI answers "unchanged" (its read dedup).
			reread.Store(false)
			st := messagesapi.Start(w, "msg_front_reread", demoagent.Model, messagesapi.Usage{InputTokens: 1})
			st.Tool(messagesapi.ToolUse{ID: "toolu_front_reread", Name: "Read", Input: map[string]any{"file_path": page}})
			st.End("tool_use", 1)
			return
		}
		if hold.Load() && bytes.Contains(body, []byte(`"tool_result"`)) {
			select {
			case held <- struct{}{}:
			default:
			}
			<-r.Context().Done()
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	hold.Store(true)
	stopped := agent.NewRunner(agent.Config{Bin: repo.ClaudeBin(t), APIKey: "demo", BaseURL: front.URL, PATH: os.Getenv("PATH"), MaxTurns: 10})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-held:
		case <-time.After(3 * time.Minute):
		}
		cancel()
	}()
	res, err := stopped.Run(ctx, agent.Request{Instruction: "Stopped", ProjectDir: project, ConfigDir: filepath.Join(root, ".claude"), HomeDir: root}, nil)
	cancel()
	if err == nil || res.SessionID == "" {
		t.Fatalf("the stopped run: %+v, %v; want an error and a session", res, err)
	}
	hold.Store(false)
	session := res.SessionID
	r := agent.NewRunner(agent.Config{Bin: repo.ClaudeBin(t), APIKey: "demo", BaseURL: front.URL, PATH: os.Getenv("PATH"), MaxTurns: 10})
	for _, heading := range []string{"First", "Second", "Third"} {
		reread.Store(heading == reread.name)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		res, err := r.Run(ctx, agent.Request{Instruction: heading, SessionID: session,
			ProjectDir: project, ConfigDir: filepath.Join(root, ".claude"), HomeDir: root}, nil)
		cancel()
		if err != nil {
			t.Fatalf("Run %q: %v", heading, err)
		}
		if res.FreshSession || res.SessionID != session {
			t.Fatalf("the session was not resumed: %+v", res)
		}
		session = res.SessionID
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		if reread.Load() {
			t.Fatalf("the page was not read twice in %q", heading)
		}
		if want := "<main>\n  <h1>" + heading + "</h1>\n</main>\n"; string(b) != want {
			t.Fatalf("after %q the page is:\n%s\nthe agent said: %s", heading, b, res.Result)
		}
	}
}
