package demoagent

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestDecideRereadsAfterUnchanged: a Read answered "file unchanged" (the
// CLI's read dedup) is sent again with other bounds, then the heading is
// edited; a page that truly has no <h1> is said so.
func TestDecideRereadsAfterUnchanged(t *testing.T) {
	const stub = "File unchanged since last read. The content from the earlier Read tool_result in this conversation is still current \u2014 refer to that instead of re-reading."
	msg := func(role string, content any) message {
		b, _ := json.Marshal(content)
		return message{Role: role, Content: b}
	}
	read := msg("assistant", []map[string]any{{"type": "tool_use", "name": "Read", "id": "r"}})
	result := func(text string) message {
		return msg("user", []map[string]any{{"type": "tool_result", "tool_use_id": "r", "content": text}})
	}
	tests := []struct {
		name     string
		messages []message
		tool     string
		input    map[string]any
		text     string
	}{
		{"first turn reads", []message{msg("user", "Hello")}, "Read", map[string]any{"file_path": "/p/" + Page}, ""},
		{"unchanged: reads again, other bounds", []message{msg("user", "Hello"), read, result(stub)},
			"Read", map[string]any{"file_path": "/p/" + Page, "offset": 1, "limit": rereadLimit + 1}, ""},
		{"the re-read edits", []message{msg("user", "Hello"), read, result(stub), read, result("1\t<h1>Old</h1>\n")},
			"Edit", map[string]any{"file_path": "/p/" + Page, "old_string": "<h1>Old</h1>", "new_string": "<h1>Hello</h1>"}, ""},
		{"unchanged three times: gives up", []message{msg("user", "Hello"), read, result(stub), read, result(stub), read, result(stub)},
			"", nil, "has no <h1>"},
		{"no heading", []message{msg("user", "Hello"), read, result("1\t<p>none</p>\n")}, "", nil, "has no <h1>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sys, _ := json.Marshal("Working directory: /p")
			got := decide(request{System: sys, Messages: tt.messages})
			if tt.tool == "" {
				if got.tool != nil || !strings.Contains(got.text, tt.text) {
					t.Errorf("decide = %+v %q, want text with %q", got.tool, got.text, tt.text)
				}
				return
			}
			if got.tool == nil || got.tool.Name != tt.tool {
				t.Fatalf("decide = %+v %q, want %s", got.tool, got.text, tt.tool)
			}
			gotIn, _ := json.Marshal(got.tool.Input)
			wantIn, _ := json.Marshal(tt.input)
			if string(gotIn) != string(wantIn) {
				t.Errorf("input %s, want %s", gotIn, wantIn)
			}
		})
	}
}
