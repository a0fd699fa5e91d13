package fakeanthropic

import (
	"bytes"
	"encoding/json"
	"net/http"
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

	// Model, MaxTokens, System, Tools and Messages are read from a
	// Messages API body; zero for other requests.
	Model     string
	MaxTokens int
	System    string
	Tools     []string
	Messages  []Message

	// Side is true for a Messages API request that the server answered
	// outside the script (a title, summary or other helper request).
	Side bool
	// Turn is the script position the request was answered from: the
	// number of assistant messages since the last user prompt. -1 for
	// side requests and other endpoints.
	Turn int
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

// turn returns the number of assistant messages after the last user prompt.
func turn(msgs []Message) int {
	n := 0
	for _, m := range msgs {
		switch {
		case m.IsPrompt():
			n = 0
		case m.Role == "assistant":
			n++
		}
	}
	return n
}

// messagesBody is the part of a Messages API body the server reads.
type messagesBody struct {
	Model     string          `json:"model"`
	MaxTokens int             `json:"max_tokens"`
	System    json.RawMessage `json:"system"`
	Tools     []struct {
		Name string `json:"name"`
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
		r.Tools = append(r.Tools, t.Name)
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
