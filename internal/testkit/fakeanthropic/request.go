package fakeanthropic

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
)

// Request is one request the fake API received, as recorded.
type Request struct {
	// Method, Path and RawQuery are from the request line.
	Method   string
	Path     string
	RawQuery string
	// Header is a copy of the request's headers (x-api-key included: this
	// is a test server).
	Header http.Header
	// Body is the raw request body.
	Body []byte
	// JSON is the body parsed as a JSON object; nil when it is not one.
	JSON map[string]any

	// Model, MaxTokens, System, Tools, Deferred and Messages are read from
	// a Messages API body; zero for other requests.
	Model     string
	MaxTokens int
	// System is the text of the top-level system field. Newer CLIs also
	// send `role: "system"` messages inside Messages (the environment:
	// working directory, platform): SystemText joins both.
	System string
	// Tools are the tools the request declares loaded, in order; Deferred
	// are those it declares with defer_loading (newer CLIs always send a
	// DeferredToolPlaceholder so): the model must load one through
	// ToolSearch before calling it.
	Tools    []string
	Deferred []string
	Messages []Message

	// Side is true for a Messages API request that the server answered
	// outside the script (a title, summary or other helper request).
	Side bool
	// Turn is the script position the request was answered from: the
	// number of assistant messages since the last user prompt (those that
	// only called ToolSearch left out). -1 for side requests and other
	// endpoints.
	Turn int
	// Loading names the deferred tools the answer loaded through
	// ToolSearch instead of answering the script's step.
	Loading []string
}

// Message is one message of a Messages API request.
type Message struct {
	Role    string
	Content []Block
}

// Block is one content block of a message. A string content is one text block.
type Block struct {
	Type      string          `json:"type"`
	Text      string          `json:"text,omitempty"`
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
	ToolUseID string          `json:"tool_use_id,omitempty"`
	Content   json.RawMessage `json:"content,omitempty"`
	IsError   bool            `json:"is_error,omitempty"`
}

// ResultText returns the text of a tool_result block, whether its content is
// a string or a list of text blocks.
func (b Block) ResultText() string {
	if len(b.Content) == 0 {
		return ""
	}
	var s string
	if err := json.Unmarshal(b.Content, &s); err == nil {
		return s
	}
	var blocks []Block
	if err := json.Unmarshal(b.Content, &blocks); err != nil {
		return string(b.Content)
	}
	var sb strings.Builder
	for _, c := range blocks {
		sb.WriteString(c.Text)
	}
	return sb.String()
}

// Contains reports whether the raw body holds s.
func (r Request) Contains(s string) bool {
	return bytes.Contains(r.Body, []byte(s))
}

// SystemText returns the top-level system prompt and the text of every
// `role: "system"` message, joined by newlines.
func (r Request) SystemText() string {
	parts := []string{r.System}
	for _, m := range r.Messages {
		if m.Role == "system" {
			parts = append(parts, m.Text())
		}
	}
	return strings.Join(parts, "\n")
}

// ToolResults returns the request's tool_result blocks, in order.
func (r Request) ToolResults() []Block {
	var out []Block
	for _, m := range r.Messages {
		for _, b := range m.Content {
			if b.Type == "tool_result" {
				out = append(out, b)
			}
		}
	}
	return out
}

// IsPrompt reports whether m is a user prompt rather than a user message
// carrying tool results.
func (m Message) IsPrompt() bool {
	if m.Role != "user" {
		return false
	}
	for _, b := range m.Content {
		if b.Type == "tool_result" {
			return false
		}
	}
	return true
}

// Text returns the concatenated text blocks of m.
func (m Message) Text() string {
	var sb strings.Builder
	for _, b := range m.Content {
		sb.WriteString(b.Text)
	}
	return sb.String()
}

// ToolSearch is the tool through which a newer CLI lets the model load a
// deferred tool: {"query": "select:Read,Edit"}.
const ToolSearch = "ToolSearch"

// searchOnly reports whether m is an assistant message whose only tool
// calls load deferred tools (ToolSearch): not a step of the script.
func (m Message) searchOnly() bool {
	if m.Role != "assistant" {
		return false
	}
	found := false
	for _, b := range m.Content {
		if b.Type != "tool_use" {
			continue
		}
		if b.Name != ToolSearch {
			return false
		}
		found = true
	}
	return found
}

// turn returns the number of assistant messages after the last user prompt,
// leaving out those that only loaded deferred tools.
func turn(msgs []Message) int {
	n := 0
	for _, m := range msgs {
		switch {
		case m.IsPrompt():
			n = 0
		case m.Role == "assistant" && !m.searchOnly():
			n++
		}
	}
	return n
}

// loaded returns the deferred tools that the conversation's ToolSearch
// calls selected by name ("select:Read,Edit").
func loaded(msgs []Message) map[string]bool {
	out := map[string]bool{}
	for _, m := range msgs {
		if m.Role != "assistant" {
			continue
		}
		for _, b := range m.Content {
			if b.Type != "tool_use" || b.Name != ToolSearch {
				continue
			}
			var in struct {
				Query string `json:"query"`
			}
			if json.Unmarshal(b.Input, &in) != nil {
				continue
			}
			if names, ok := strings.CutPrefix(in.Query, "select:"); ok {
				for _, n := range strings.Split(names, ",") {
					out[strings.TrimSpace(n)] = true
				}
			}
		}
	}
	return out
}

// toLoad returns the tools of step that req declares deferred and that its
// conversation has not loaded yet, when req offers ToolSearch to load them.
func (r *Request) toLoad(step Step) []string {
	if !slices.Contains(r.Tools, ToolSearch) || len(r.Deferred) == 0 {
		return nil
	}
	done := loaded(r.Messages)
	var out []string
	for _, t := range step.Tools {
		if slices.Contains(r.Deferred, t.Name) && !slices.Contains(r.Tools, t.Name) && !done[t.Name] && !slices.Contains(out, t.Name) {
			out = append(out, t.Name)
		}
	}
	return out
}

// messagesBody is the part of a Messages API body the server reads.
type messagesBody struct {
	Model     string          `json:"model"`
	MaxTokens int             `json:"max_tokens"`
	System    json.RawMessage `json:"system"`
	Tools     []struct {
		Name         string `json:"name"`
		DeferLoading bool   `json:"defer_loading"`
	} `json:"tools"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
}

// parseMessages fills the Messages API fields of r from its body.
func (r *Request) parseMessages() {
	var b messagesBody
	if err := json.Unmarshal(r.Body, &b); err != nil {
		return
	}
	r.Model = b.Model
	r.MaxTokens = b.MaxTokens
	r.System = textOf(b.System)
	for _, t := range b.Tools {
		if t.DeferLoading {
			r.Deferred = append(r.Deferred, t.Name)
		} else {
			r.Tools = append(r.Tools, t.Name)
		}
	}
	for _, m := range b.Messages {
		r.Messages = append(r.Messages, Message{Role: m.Role, Content: blocksOf(m.Content)})
	}
}

// blocksOf reads a content field that is either a string or a block list.
func blocksOf(raw json.RawMessage) []Block {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return []Block{{Type: "text", Text: s}}
	}
	var blocks []Block
	if err := json.Unmarshal(raw, &blocks); err != nil {
		return nil
	}
	return blocks
}

// textOf joins the text of a string or block-list field.
func textOf(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var sb strings.Builder
	for _, b := range blocksOf(raw) {
		sb.WriteString(b.Text)
	}
	return sb.String()
}
