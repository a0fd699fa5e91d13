// Package messagesapi writes answers of the Anthropic Messages API as its
// streaming endpoint sends them (server-sent events), for the servers that
// stand in for the API on loopback: the demo agent of `worker local` and
// the tests' fake API. It holds no model and no client.
package messagesapi

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Usage is what an answer reports as used.
type Usage struct {
	InputTokens, OutputTokens, CacheReadTokens, CacheWriteTokens int64
}

// ToolUse is one tool call of an answer.
type ToolUse struct {
	ID    string
	Name  string
	Input any // marshalled to the tool's JSON input; nil is {}
}

// Stream writes one streamed answer: the events of a message, its content
// blocks and its end. Create it with Start; every event is flushed.
type Stream struct {
	w     http.ResponseWriter
	index int
}

// Start writes the response headers and message_start.
func Start(w http.ResponseWriter, messageID, model string, usage Usage) *Stream {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("request-id", "req_"+messageID)
	w.WriteHeader(http.StatusOK)
	s := &Stream{w: w}
	s.Event("message_start", map[string]any{
		"type": "message_start",
		"message": map[string]any{
			"id": messageID, "type": "message", "role": "assistant",
			"model": model, "content": []any{}, "stop_reason": nil, "stop_sequence": nil,
			"usage": map[string]any{"input_tokens": usage.InputTokens, "output_tokens": 1,
				"cache_read_input_tokens": usage.CacheReadTokens, "cache_creation_input_tokens": usage.CacheWriteTokens},
		},
	})
	return s
}

// Event writes one server-sent event and flushes it.
func (s *Stream) Event(name string, data any) {
	b, err := json.Marshal(data)
	if err != nil {
		panic(fmt.Sprintf("messagesapi: marshal %s: %v", name, err)) // only maps of plain values are passed
	}
	fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", name, b)
	if f, ok := s.w.(http.Flusher); ok {
		f.Flush()
	}
}

// TextStart opens a text block and writes its first delta; TextEnd closes
// it. Between them a caller may stop writing (a connection cut midway).
func (s *Stream) TextStart(text string) {
	s.Event("content_block_start", map[string]any{
		"type": "content_block_start", "index": s.index,
		"content_block": map[string]any{"type": "text", "text": ""},
	})
	s.Event("content_block_delta", map[string]any{
		"type": "content_block_delta", "index": s.index,
		"delta": map[string]any{"type": "text_delta", "text": text},
	})
}

// TextEnd closes the text block TextStart opened.
func (s *Stream) TextEnd() {
	s.Event("content_block_stop", map[string]any{"type": "content_block_stop", "index": s.index})
	s.index++
}

// Text writes a whole text block.
func (s *Stream) Text(text string) {
	s.TextStart(text)
	s.TextEnd()
}

// Tool writes a tool_use block.
func (s *Stream) Tool(t ToolUse) {
	input, err := json.Marshal(t.Input)
	if err != nil || t.Input == nil {
		input = []byte("{}")
	}
	s.Event("content_block_start", map[string]any{
		"type": "content_block_start", "index": s.index,
		"content_block": map[string]any{"type": "tool_use", "id": t.ID, "name": t.Name, "input": map[string]any{}},
	})
	s.Event("content_block_delta", map[string]any{
		"type": "content_block_delta", "index": s.index,
		"delta": map[string]any{"type": "input_json_delta", "partial_json": string(input)},
	})
	s.Event("content_block_stop", map[string]any{"type": "content_block_stop", "index": s.index})
	s.index++
}

// End writes message_delta with the stop reason ("end_turn", "tool_use")
// and message_stop.
func (s *Stream) End(stopReason string, outputTokens int64) {
	s.Event("message_delta", map[string]any{
		"type":  "message_delta",
		"delta": map[string]any{"stop_reason": stopReason, "stop_sequence": nil},
		"usage": map[string]any{"output_tokens": outputTokens},
	})
	s.Event("message_stop", map[string]any{"type": "message_stop"})
}

// WriteError writes an API error object with its status.
func WriteError(w http.ResponseWriter, status int, typ, message string) {
	b, _ := json.Marshal(map[string]any{ // a map of strings always marshals
		"type":  "error",
		"error": map[string]any{"type": typ, "message": message},
	})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("x-should-retry", fmt.Sprint(status >= 500 || status == 429))
	w.WriteHeader(status)
	_, _ = w.Write(b) // a client that went away needs no answer
}
