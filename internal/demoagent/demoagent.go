// Package demoagent is the demo agent of `worker local`: a stand-in for the
// Anthropic Messages API on loopback that answers the real Claude Code CLI
// with one fixed, visible edit, so that someone without an API key sees the
// whole loop (the CLI run as the tenant, the edit, the commit and push, the
// preview's page changing by itself) with no model at all.
//
// What it does, for every execute: read src/pages/index.astro, set the text
// of its first <h1> to the instruction, and say so. It understands nothing.
// It is linked into `worker local` only: the production binary is built with
// -tags nolocal, which leaves it out (a test checks it).
package demoagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/webordinary/claude-code-astro/internal/messagesapi"
)

// Model is the model name the demo agent answers as.
const Model = "demo-agent"

// Page is the file the demo agent edits, relative to the project.
const Page = "src/pages/index.astro"

// maxHeading bounds the heading it writes, in runes.
const maxHeading = 80

// Server is a running demo agent.
type Server struct {
	// URL is its base URL: ANTHROPIC_BASE_URL.
	URL string
	srv *http.Server
	ids atomic.Int64
	log *slog.Logger
}

// Start serves the demo agent on addr (host:port; 127.0.0.1:0 for any free
// port) until Close.
func Start(addr string, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("demo agent: listen on %s: %w", addr, err)
	}
	s := &Server{URL: "http://" + ln.Addr().String(), log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/messages", s.messages)
	mux.HandleFunc("POST /v1/messages/count_tokens", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 8<<20)) // a short read only lowers the count
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"input_tokens":%d}`, len(b)/4+1)
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("demo agent stopped", "error", err)
		}
	}()
	return s, nil
}

// Close stops the server.
func (s *Server) Close(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// request is what the demo agent reads of a Messages API request.
type request struct {
	System   json.RawMessage `json:"system"`
	Tools    []struct{}      `json:"tools"`
	Messages []message       `json:"messages"`
}

type message struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// block is a content block.
type block struct {
	Type    string          `json:"type"`
	Text    string          `json:"text"`
	Name    string          `json:"name"`    // a tool_use's tool
	Content json.RawMessage `json:"content"` // a tool_result's: a string or text blocks
}

func blocksOf(raw json.RawMessage) []block {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []block{{Type: "text", Text: s}}
	}
	var bs []block
	_ = json.Unmarshal(raw, &bs) // anything else has no blocks we use
	return bs
}

// textOf joins the text of a string or a list of text blocks.
func textOf(raw json.RawMessage) string {
	var parts []string
	for _, b := range blocksOf(raw) {
		if b.Type == "text" {
			parts = append(parts, b.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// messages answers one Messages API call.
func (s *Server) messages(w http.ResponseWriter, r *http.Request) {
	var req request
	if err := json.NewDecoder(io.LimitReader(r.Body, 32<<20)).Decode(&req); err != nil {
		messagesapi.WriteError(w, http.StatusBadRequest, "invalid_request_error", "the demo agent cannot read this request: "+err.Error())
		return
	}
	n := s.ids.Add(1)
	st := messagesapi.Start(w, fmt.Sprintf("msg_demo_%d", n), Model, messagesapi.Usage{InputTokens: 1})
	if len(req.Tools) == 0 {
		// A helper call of the CLI (a title, a summary): not the agent loop.
		st.Text("Demo")
		st.End("end_turn", 1)
		return
	}
	step := decide(req)
	if step.tool != nil {
		step.tool.ID = fmt.Sprintf("toolu_demo_%d", n)
		st.Tool(*step.tool)
		st.End("tool_use", 1)
		return
	}
	st.Text(step.text)
	st.End("end_turn", 1)
}

// step is one answer: a tool call or a final text.
type step struct {
	tool *messagesapi.ToolUse
	text string
}

// systemText is what the CLI tells the model about its environment: the
// system prompt, and the `role: "system"` messages in which newer CLIs
// (2.1.332) send the working directory.
func systemText(req request) string {
	parts := []string{textOf(req.System)}
	for _, m := range req.Messages {
		if m.Role == "system" {
			parts = append(parts, textOf(m.Content))
		}
	}
	return strings.Join(parts, "\n")
}

// workingDir finds the CLI's working directory in its system prompt.
var workingDir = regexp.MustCompile(`(?mi)working directory: (/\S+)`)

// numbered is the line prefix of the Read tool's output ("   12→" or "12\t").
var numbered = regexp.MustCompile(`(?m)^\s*\d+(?:→|\t)`)

// reminders are what the CLI adds to a prompt for the model.
var reminders = regexp.MustCompile(`(?s)<system-reminder>.*?</system-reminder>`)

// heading is the first <h1> of a page.
var heading = regexp.MustCompile(`(?s)<h1(\s[^>]*)?>(.*?)</h1>`)

// unchanged is how the CLI answers a Read of a file it read before with the
// same bounds and that has not changed since (its read dedup): no content,
// "refer to the earlier tool_result".
var unchanged = regexp.MustCompile(`(?i)file unchanged`)

// rereadLimit is the line limit of a Read sent again after the CLI answered
// "unchanged": other bounds than the Read it deduplicated (the CLI only
// deduplicates a Read with the same offset and limit as the file's last).
// A second re-read takes one more line, so no two Reads of one job match.
const rereadLimit = 100000

// decide is the whole demo agent: Read the page (again, with other bounds,
// when the CLI answers "unchanged"), Edit its first heading to the
// instruction, say what it did.
func decide(req request) step {
	prompt := ""
	var calls []string // the tools called since the prompt
	var lastResult string
	for _, m := range req.Messages {
		blocks := blocksOf(m.Content)
		isResult := false
		for _, b := range blocks {
			if b.Type == "tool_result" {
				isResult = true
				lastResult = textOf(b.Content)
			}
		}
		switch {
		case m.Role == "user" && !isResult:
			if t := strings.TrimSpace(reminders.ReplaceAllString(textOf(m.Content), "")); t != "" {
				prompt, calls = t, nil
			}
		case m.Role == "assistant":
			called := false
			for _, b := range blocks {
				if b.Type == "tool_use" {
					calls, called = append(calls, b.Name), true
				}
			}
			if !called {
				calls = append(calls, "")
			}
		}
	}
	m := workingDir.FindStringSubmatch(systemText(req))
	if m == nil {
		return step{text: "Demo agent: I cannot tell which project this is (no working directory in the system prompt)."}
	}
	page := filepath.Join(m[1], Page)
	want := headingText(prompt)
	last := ""
	if len(calls) > 0 {
		last = calls[len(calls)-1]
	}
	switch {
	case len(calls) == 0:
		return step{tool: &messagesapi.ToolUse{Name: "Read", Input: map[string]any{"file_path": page}}}
	case last == "Read":
		content := numbered.ReplaceAllString(lastResult, "")
		h := heading.FindStringSubmatch(content)
		if h == nil {
			if reads := countOf(calls, "Read"); unchanged.MatchString(lastResult) && reads < 3 {
				return step{tool: &messagesapi.ToolUse{Name: "Read", Input: map[string]any{
					"file_path": page, "offset": 1, "limit": rereadLimit + reads}}}
			}
			return step{text: "Demo agent: " + Page + " has no <h1> for me to change."}
		}
		old := h[0]
		updated := "<h1" + h[1] + ">" + html.EscapeString(want) + "</h1>"
		if old == updated {
			return step{text: fmt.Sprintf("Demo agent: the first heading already says %q.", want)}
		}
		return step{tool: &messagesapi.ToolUse{Name: "Edit", Input: map[string]any{
			"file_path": page, "old_string": old, "new_string": updated}}}
	}
	return step{text: fmt.Sprintf("Demo agent: the first heading of %s now says %q. This was the scripted demo agent of `worker local`: "+
		"no model was asked, and it does only this. Set ANTHROPIC_API_KEY for the real agent.", Page, want)}
}

// countOf counts name in calls.
func countOf(calls []string, name string) int {
	n := 0
	for _, c := range calls {
		if c == name {
			n++
		}
	}
	return n
}

// headingText is the heading the demo writes: the instruction's first line,
// at most maxHeading runes.
func headingText(prompt string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(prompt), "\n")
	if utf8.RuneCountInString(line) > maxHeading {
		line = string([]rune(line)[:maxHeading-1]) + "…"
	}
	if line == "" {
		return "Edited by the demo agent"
	}
	return line
}
