package agent

import (
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/redact"
	"github.com/webordinary/claude-code-astro/internal/sandbox"
)

func TestStreamParserProgress(t *testing.T) {
	long := strings.Repeat("é", 300)
	tests := []struct {
		name string
		line string
		want []Progress
	}{
		{
			name: "read inside the project",
			line: `{"type":"assistant","message":{"content":[{"type":"tool_use","name":"Read","input":{"file_path":"/p/src/index.astro"}}]}}`,
			want: []Progress{{Kind: KindToolUse, Tool: "Read", Summary: "src/index.astro"}},
		},
		{
			name: "write outside the project keeps the absolute path",
			line: `{"type":"assistant","message":{"content":[{"type":"tool_use","name":"Write","input":{"file_path":"/other/x"}}]}}`,
			want: []Progress{{Kind: KindToolUse, Tool: "Write", Summary: "/other/x"}},
		},
		{
			name: "bash command on one line, secret masked",
			line: `{"type":"assistant","message":{"content":[{"type":"tool_use","name":"Bash","input":{"command":"git log\n  --oneline sk-secret-value"}}]}}`,
			want: []Progress{{Kind: KindToolUse, Tool: "Bash", Summary: "git log --oneline " + redact.Mask}},
		},
		{
			name: "grep pattern and path",
			line: `{"type":"assistant","message":{"content":[{"type":"tool_use","name":"Grep","input":{"pattern":"TODO","path":"/p/src"}}]}}`,
			want: []Progress{{Kind: KindToolUse, Tool: "Grep", Summary: "TODO in src"}},
		},
		{
			name: "unknown tool input",
			line: `{"type":"assistant","message":{"content":[{"type":"tool_use","name":"Mystery","input":{"x":1}}]}}`,
			want: []Progress{{Kind: KindToolUse, Tool: "Mystery"}},
		},
		{
			name: "text cut to 200 characters",
			line: `{"type":"assistant","message":{"content":[{"type":"text","text":"` + long + `"}]}}`,
			want: []Progress{{Kind: KindText, Summary: strings.Repeat("é", 199) + "…"}},
		},
		{
			name: "text and tool in one message, in order",
			line: `{"type":"assistant","message":{"content":[{"type":"text","text":"Let me look."},{"type":"tool_use","name":"Read","input":{"file_path":"/p/a"}}]}}`,
			want: []Progress{{Kind: KindText, Summary: "Let me look."}, {Kind: KindToolUse, Tool: "Read", Summary: "a"}},
		},
		{name: "blank text ignored", line: `{"type":"assistant","message":{"content":[{"type":"text","text":" \n"}]}}`},
		{name: "not JSON ignored", line: `Warning: something odd`},
		{name: "broken JSON ignored", line: `{"type":"assistant",`},
		{name: "user line ignored", line: `{"type":"user","message":{"content":[{"type":"tool_result","content":"x"}]}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []Progress
			p := &streamParser{
				log:        slog.New(slog.DiscardHandler),
				redactor:   redact.New("sk-secret-value"),
				projectDir: "/p",
				progress:   func(pr Progress) { got = append(got, pr) },
				started:    time.Now(),
			}
			// Written in two pieces, split mid-line, as a pipe may deliver it.
			line := []byte(tt.line + "\n")
			p.Write(line[:len(line)/2])
			p.Write(line[len(line)/2:])
			if !slices.Equal(got, tt.want) {
				t.Errorf("progress = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestStreamParserResult(t *testing.T) {
	p := &streamParser{log: slog.New(slog.DiscardHandler), started: time.Now()}
	huge := `{"type":"user","x":"` + strings.Repeat("a", maxLineBytes) + `"}` + "\n"
	out := `{"type":"system","subtype":"init","session_id":"s-1","model":"m"}` + "\n" +
		huge +
		`{"type":"result","subtype":"error_max_turns","is_error":true,"api_error_status":null,"num_turns":4,"duration_ms":1234,"total_cost_usd":0.5,"session_id":"s-1","errors":["Reached maximum number of turns (3)"]}`
	for chunk := range slices.Chunk([]byte(out), 4096) {
		p.Write(chunk)
	}
	p.flush() // the result line has no trailing newline
	sid, initAt, res := p.state()
	if sid != "s-1" || initAt <= 0 {
		t.Errorf("session %q init after %v", sid, initAt)
	}
	want := cliResult{Subtype: "error_max_turns", IsError: true, NumTurns: 4, DurationMs: 1234, CostUSD: 0.5,
		Errors: []string{"Reached maximum number of turns (3)"}, SessionID: "s-1"}
	if res == nil || res.Subtype != want.Subtype || res.IsError != want.IsError || res.NumTurns != want.NumTurns ||
		res.DurationMs != want.DurationMs || res.CostUSD != want.CostUSD || !slices.Equal(res.Errors, want.Errors) {
		t.Errorf("result = %+v, want %+v", res, want)
	}
}

func TestCoalescer(t *testing.T) {
	var got []Progress
	delivered := make(chan struct{}, 10)
	c := newCoalescer(time.Hour, func(p Progress) {
		got = append(got, p)
		delivered <- struct{}{}
	})
	c.add(Progress{Summary: "1"})
	<-delivered // the first goes out at once
	c.add(Progress{Summary: "2"})
	c.add(Progress{Summary: "3"})
	c.close() // within the interval: only the latest, flushed on close
	want := []Progress{{Summary: "1"}, {Summary: "3"}}
	if !slices.Equal(got, want) {
		t.Errorf("delivered %+v, want %+v", got, want)
	}
}

func TestArgs(t *testing.T) {
	r := NewRunner(Config{Model: "claude-x", MaxTurns: 7})
	tests := []struct {
		name    string
		req     Request
		resume  bool
		want    []string
		notWant []string
	}{
		{
			name: "new execute session",
			req:  Request{Mode: ModeExecute, SessionID: "id-1"},
			want: []string{"-p", "--output-format stream-json", "--verbose", "--max-turns 7", "--model claude-x",
				"--session-id id-1", "--permission-mode dontAsk", "--setting-sources  --settings",
				"--tools Read,Edit,MultiEdit,Write,Glob,Grep"},
			notWant: []string{"--resume", "Bash", "--allowedTools"},
		},
		{
			name:    "resumed plan session",
			req:     Request{Mode: ModePlan, SessionID: "id-2"},
			resume:  true,
			want:    []string{"--resume id-2", "--permission-mode plan", "--tools Read,Glob,Grep"},
			notWant: []string{"--session-id", "dontAsk", "Edit,", "Write", "--fork-session"},
		},
		{
			name:    "forked session",
			req:     Request{Mode: ModeExecute, SessionID: "id-3", ForkSession: true},
			resume:  true,
			want:    []string{"--resume id-3 --fork-session"},
			notWant: []string{"--session-id"},
		},
		{
			name:    "fork of nothing starts a new session",
			req:     Request{Mode: ModeExecute, SessionID: "id-4", ForkSession: true},
			want:    []string{"--session-id id-4"},
			notWant: []string{"--resume", "--fork-session"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := r.args(tt.req, tt.resume)
			joined := strings.Join(args, " ")
			i := slices.Index(args, "--settings")
			if i < 0 || i+1 >= len(args) {
				t.Fatalf("args %q have no --settings", joined)
			}
			var settings struct {
				Permissions     struct{ Allow, Deny []string }
				DisableAllHooks bool
			}
			if err := json.Unmarshal([]byte(args[i+1]), &settings); err != nil {
				t.Fatalf("--settings %q: %v", args[i+1], err)
			}
			if !settings.DisableAllHooks || !slices.Equal(settings.Permissions.Allow, []string{"Read(./**)", "Edit(./**)"}) ||
				!slices.Contains(settings.Permissions.Deny, "Edit(./.git/**)") {
				t.Errorf("--settings %s: want the project rules and no hooks", args[i+1])
			}
			for _, w := range tt.want {
				if !strings.Contains(joined, w) {
					t.Errorf("args %q lack %q", joined, w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(joined, w) {
					t.Errorf("args %q hold %q", joined, w)
				}
			}
		})
	}
}

func TestEnv(t *testing.T) {
	t.Setenv("GITHUB_TOKEN", "ghp_parent")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAPARENT")
	r := NewRunner(Config{
		APIKey:   "sk-key",
		BaseURL:  "http://127.0.0.1:1",
		ExtraEnv: []string{"HTTPS_PROXY=http://proxy:3128", "ANTHROPIC_API_KEY=override", "HOME=/override"},
	})
	env := r.env(Request{HomeDir: "/home/u", ConfigDir: "/home/u/.claude", TmpDir: "/tmp/x"})
	want := []string{
		"PATH=" + sandbox.DefaultPATH, "HOME=/home/u", "ANTHROPIC_API_KEY=sk-key", "ANTHROPIC_BASE_URL=http://127.0.0.1:1",
		"CLAUDE_CONFIG_DIR=/home/u/.claude", "CLAUDE_CODE_TMPDIR=/tmp/x", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
		"CLAUDE_CODE_MAX_RETRIES=2", "DISABLE_AUTOUPDATER=1", "HTTPS_PROXY=http://proxy:3128",
	}
	for _, w := range want {
		if !slices.Contains(env, w) {
			t.Errorf("env lacks %q: %q", w, env)
		}
	}
	seen := map[string]bool{}
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if seen[k] {
			t.Errorf("env sets %s twice", k)
		}
		seen[k] = true
		if k == "GITHUB_TOKEN" || strings.HasPrefix(k, "AWS_") {
			t.Errorf("env holds %s", kv)
		}
	}
}

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{max: 10}
	b.Write([]byte("first line\nsecond\n"))
	b.Write([]byte("third\n"))
	if got := b.String(); got != "third\n" {
		t.Errorf("tail = %q, want the last whole line", got)
	}
}

func TestSessionPath(t *testing.T) {
	got := SessionPath("/w/c/u/.claude", "/w/c/u/project_1.x", "abc")
	if want := "/w/c/u/.claude/projects/-w-c-u-project-1-x/abc.jsonl"; got != want {
		t.Errorf("SessionPath = %q, want %q", got, want)
	}
}

// TestStreamParserRoundsCost: the CLI's cost, a float sum, is kept to six
// decimals (0.00009, not 0.00008999999999999999) for the answer and the logs.
func TestStreamParserRoundsCost(t *testing.T) {
	p := &streamParser{log: slog.New(slog.DiscardHandler), started: time.Now()}
	p.Write([]byte(`{"type":"result","subtype":"success","num_turns":1,"total_cost_usd":0.00008999999999999999,"session_id":"s-1"}` + "\n"))
	_, _, res := p.state()
	if res == nil {
		t.Fatal("no result")
	}
	if b, _ := json.Marshal(res.CostUSD); string(b) != "0.00009" {
		t.Errorf("cost prints as %s, want 0.00009", b)
	}
}
