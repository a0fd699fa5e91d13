package fakeanthropic

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
)

// event is one server-sent event.
type event struct {
	Name string
	Data map[string]any
}

// post sends a Messages API request with the given messages and tools.
func post(t *testing.T, ctx context.Context, url string, messages []map[string]any, tools bool) (*http.Response, error) {
	t.Helper()
	var decl []map[string]any
	if tools {
		decl = []map[string]any{{"name": "Read"}, {"name": "Edit"}}
	}
	return postTools(t, ctx, url, messages, decl)
}

// postTools sends a Messages API request with the given messages and tool
// declarations (none when nil).
func postTools(t *testing.T, ctx context.Context, url string, messages []map[string]any, tools []map[string]any) (*http.Response, error) {
	t.Helper()
	body := map[string]any{"model": "claude-test", "max_tokens": 1000, "messages": messages, "stream": true}
	if tools != nil {
		body["tools"] = tools
	}
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/v1/messages?beta=true", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("x-api-key", "sk-test-key")
	req.Header.Set("content-type", "application/json")
	return http.DefaultClient.Do(req)
}

// readEvents parses an SSE body.
func readEvents(t *testing.T, r io.Reader) ([]event, error) {
	t.Helper()
	var events []event
	var name string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			var data map[string]any
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &data); err != nil {
				t.Fatalf("event %s data: %v", name, err)
			}
			if data["type"] != name {
				t.Errorf("event %q carries type %v", name, data["type"])
			}
			events = append(events, event{Name: name, Data: data})
		}
	}
	return events, sc.Err()
}

func names(events []event) string {
	var s []string
	for _, e := range events {
		s = append(s, e.Name)
	}
	return strings.Join(s, ",")
}

func user(text string) map[string]any {
	return map[string]any{"role": "user", "content": text}
}

func assistantTool(id string) map[string]any {
	return map[string]any{"role": "assistant", "content": []map[string]any{{"type": "tool_use", "id": id, "name": "Read", "input": map[string]any{}}}}
}

func toolResult(id string) map[string]any {
	return map[string]any{"role": "user", "content": []map[string]any{{"type": "tool_result", "tool_use_id": id, "content": "ok"}}}
}

func TestScriptFollowsConversation(t *testing.T) {
	s := New(t, EditFile("/p/index.md", "a", "b", "Edited.")...)
	tests := []struct {
		name       string
		messages   []map[string]any
		wantEvents string
		wantTool   string // tool of the tool_use block, "" for text
		wantStop   string
		wantTurn   int
	}{
		{
			name:       "first turn reads",
			messages:   []map[string]any{user("edit it")},
			wantEvents: "message_start,content_block_start,content_block_delta,content_block_stop,message_delta,message_stop",
			wantTool:   "Read", wantStop: "tool_use", wantTurn: 0,
		},
		{
			name:     "after one tool result, edit",
			messages: []map[string]any{user("edit it"), assistantTool("t1"), toolResult("t1")},
			wantTool: "Edit", wantStop: "tool_use", wantTurn: 1,
		},
		{
			name:     "after two, the final text",
			messages: []map[string]any{user("edit it"), assistantTool("t1"), toolResult("t1"), assistantTool("t2"), toolResult("t2")},
			wantStop: "end_turn", wantTurn: 2,
		},
		{
			name: "a resumed conversation starts the script again at its new prompt",
			messages: []map[string]any{user("edit it"), assistantTool("t1"), toolResult("t1"),
				{"role": "assistant", "content": "Edited."}, user("again")},
			wantTool: "Read", wantStop: "tool_use", wantTurn: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := post(t, context.Background(), s.URL, tt.messages, true)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			events, err := readEvents(t, resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantEvents != "" && names(events) != tt.wantEvents {
				t.Errorf("events = %s, want %s", names(events), tt.wantEvents)
			}
			var tool, stop, partial string
			for _, e := range events {
				switch e.Name {
				case "content_block_start":
					cb := e.Data["content_block"].(map[string]any)
					if cb["type"] == "tool_use" {
						tool = cb["name"].(string)
					}
				case "content_block_delta":
					d := e.Data["delta"].(map[string]any)
					if d["type"] == "input_json_delta" {
						partial = d["partial_json"].(string)
					}
				case "message_delta":
					stop = e.Data["delta"].(map[string]any)["stop_reason"].(string)
				}
			}
			if tool != tt.wantTool || stop != tt.wantStop {
				t.Errorf("tool %q stop %q, want %q %q", tool, stop, tt.wantTool, tt.wantStop)
			}
			if tool != "" && !json.Valid([]byte(partial)) {
				t.Errorf("input_json_delta %q is not JSON", partial)
			}
			reqs := s.Requests()
			if last := reqs[len(reqs)-1]; last.Turn != tt.wantTurn || last.Side {
				t.Errorf("recorded turn %d side %v, want turn %d", last.Turn, last.Side, tt.wantTurn)
			}
		})
	}
}

func TestSideRequestsDoNotConsumeScript(t *testing.T) {
	s := New(t, Text("main answer"))
	resp, err := post(t, context.Background(), s.URL, []map[string]any{user("write a title")}, false)
	if err != nil {
		t.Fatal(err)
	}
	events, err := readEvents(t, resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(names(events), "message_stop") {
		t.Errorf("side request events = %s", names(events))
	}
	reqs := s.Requests()
	if len(reqs) != 1 || !reqs[0].Side || reqs[0].Turn != -1 {
		t.Errorf("recorded %+v, want one side request", reqs)
	}
	if n := len(s.MessageRequests()); n != 0 {
		t.Errorf("MessageRequests holds %d side requests", n)
	}
}

func TestFaults(t *testing.T) {
	tests := []struct {
		name       string
		step       Step
		wantStatus int
		wantType   string
	}{
		{"bad request", BadRequest("no good"), http.StatusBadRequest, "invalid_request_error"},
		{"overloaded", Overloaded(), 529, "overloaded_error"},
		{"refused", Refuse(http.StatusForbidden, "permission_error", "not yours"), http.StatusForbidden, "permission_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(t, tt.step)
			resp, err := post(t, context.Background(), s.URL, []map[string]any{user("hi")}, true)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Type  string `json:"type"`
				Error struct {
					Type    string `json:"type"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus || body.Type != "error" || body.Error.Type != tt.wantType || body.Error.Message == "" {
				t.Errorf("got %d %+v, want %d %s", resp.StatusCode, body, tt.wantStatus, tt.wantType)
			}
		})
	}

	t.Run("drop", func(t *testing.T) {
		s := New(t, Drop("half of this answer"))
		resp, err := post(t, context.Background(), s.URL, []map[string]any{user("hi")}, true)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		events, err := readEvents(t, resp.Body)
		if err == nil {
			t.Errorf("stream ended cleanly after %s, want a broken connection", names(events))
		}
		if strings.Contains(names(events), "message_stop") {
			t.Errorf("dropped stream sent message_stop")
		}
	})

	t.Run("hang until the client gives up", func(t *testing.T) {
		s := New(t, Hang())
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			resp, err := post(t, ctx, s.URL, []map[string]any{user("hi")}, true)
			if err == nil {
				resp.Body.Close()
			}
			errc <- err
		}()
		wait.For(t, 10*time.Second, "the request to be recorded", func() bool { return len(s.Requests()) == 1 })
		select {
		case err := <-errc:
			t.Fatalf("hanging request answered: %v", err)
		default:
		}
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("client error = %v, want context.Canceled", err)
		}
	})

	t.Run("close releases a hanging request", func(t *testing.T) {
		s := New(t, Hang())
		errc := make(chan error, 1)
		go func() {
			resp, err := post(t, context.Background(), s.URL, []map[string]any{user("hi")}, true)
			if err == nil {
				resp.Body.Close()
			}
			errc <- err
		}()
		wait.For(t, 10*time.Second, "the request to be recorded", func() bool { return len(s.Requests()) == 1 })
		s.Close()
		<-errc
	})
}

func TestOtherEndpointsAndRecording(t *testing.T) {
	s := New(t)
	head, err := http.Head(s.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	head.Body.Close()
	if head.StatusCode != http.StatusNotFound {
		t.Errorf("HEAD / = %d, want 404", head.StatusCode)
	}
	ct, err := http.Post(s.URL+"/v1/messages/count_tokens?beta=true", "application/json", strings.NewReader(`{"messages":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	var count struct {
		InputTokens int `json:"input_tokens"`
	}
	if err := json.NewDecoder(ct.Body).Decode(&count); err != nil || ct.StatusCode != http.StatusOK || count.InputTokens <= 0 {
		t.Errorf("count_tokens = %d %+v %v", ct.StatusCode, count, err)
	}
	ct.Body.Close()

	resp, err := post(t, context.Background(), s.URL, []map[string]any{user("remember me")}, true)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	reqs := s.Requests()
	if len(reqs) != 3 {
		t.Fatalf("recorded %d requests, want 3", len(reqs))
	}
	last, ok := s.LastMessageRequest()
	if !ok || last.Method != http.MethodPost || last.Path != "/v1/messages" || last.RawQuery != "beta=true" {
		t.Fatalf("last message request = %+v", last)
	}
	if last.Header.Get("X-Api-Key") != "sk-test-key" || last.Model != "claude-test" || last.JSON["stream"] != true {
		t.Errorf("recorded header/body wrong: key %q model %q", last.Header.Get("X-Api-Key"), last.Model)
	}
	if len(last.Messages) != 1 || last.Messages[0].Text() != "remember me" || !last.Contains("remember me") {
		t.Errorf("recorded messages = %+v", last.Messages)
	}
	if got := strings.Join(last.Tools, ","); got != "Read,Edit" {
		t.Errorf("recorded tools = %q", got)
	}
}

func TestDecider(t *testing.T) {
	s := New(t)
	s.SetDecider(func(r *Request) Step {
		if r.Messages[0].Text() == "fail" {
			return BadRequest("decided")
		}
		return Text("fine")
	})
	for _, tt := range []struct {
		prompt string
		want   int
	}{{"fail", http.StatusBadRequest}, {"ok", http.StatusOK}} {
		resp, err := post(t, context.Background(), s.URL, []map[string]any{user(tt.prompt)}, true)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: status %d, want %d", tt.prompt, resp.StatusCode, tt.want)
		}
	}
}

// answerOf reads a streamed answer: its tool_use blocks (name and input) or
// its text, and its stop reason.
func answerOf(t *testing.T, resp *http.Response) (tools []Block, text, stop string) {
	t.Helper()
	defer resp.Body.Close()
	events, err := readEvents(t, resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		switch e.Name {
		case "content_block_start":
			cb := e.Data["content_block"].(map[string]any)
			if cb["type"] == "tool_use" {
				tools = append(tools, Block{Type: "tool_use", ID: cb["id"].(string), Name: cb["name"].(string)})
			}
		case "content_block_delta":
			d := e.Data["delta"].(map[string]any)
			switch d["type"] {
			case "input_json_delta":
				tools[len(tools)-1].Input = json.RawMessage(d["partial_json"].(string))
			case "text_delta":
				text += d["text"].(string)
			}
		case "message_delta":
			stop = e.Data["delta"].(map[string]any)["stop_reason"].(string)
		}
	}
	return tools, text, stop
}

// TestDeferredToolsAreLoadedFirst: a request that declares Read and Edit
// deferred (as newer CLIs may) and offers ToolSearch gets a ToolSearch call
// selecting the step's tool first; the step follows once it is loaded, and
// the loading call is not a step of the script.
func TestDeferredToolsAreLoadedFirst(t *testing.T) {
	s := New(t, Read("/p/index.md"), Edit("/p/index.md", "a", "b"), Text("Edited."))
	tools := []map[string]any{{"name": ToolSearch}, {"name": "Grep"},
		{"name": "Read", "defer_loading": true}, {"name": "Edit", "defer_loading": true},
		{"name": "DeferredToolPlaceholder", "defer_loading": true}}
	search := func(id, query string) map[string]any {
		return map[string]any{"role": "assistant", "content": []map[string]any{{"type": "tool_use", "id": id, "name": ToolSearch, "input": map[string]any{"query": query}}}}
	}
	tests := []struct {
		name      string
		messages  []map[string]any
		wantTool  string
		wantInput string
		wantTurn  int
	}{
		{"Read is deferred: load it", []map[string]any{user("edit it")}, ToolSearch, `{"query":"select:Read"}`, 0},
		{"Read loaded: the first step", []map[string]any{user("edit it"), search("s1", "select:Read"), toolResult("s1")}, "Read", `{"file_path":"/p/index.md"}`, 0},
		{"Edit is deferred: load it", []map[string]any{user("edit it"), search("s1", "select:Read"), toolResult("s1"), assistantTool("t1"), toolResult("t1")},
			ToolSearch, `{"query":"select:Edit"}`, 1},
		{"both loaded at once: the second step", []map[string]any{user("edit it"), search("s1", "select:Read,Edit"), toolResult("s1"), assistantTool("t1"), toolResult("t1")},
			"Edit", "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := postTools(t, context.Background(), s.URL, tt.messages, tools)
			if err != nil {
				t.Fatal(err)
			}
			got, _, stop := answerOf(t, resp)
			if len(got) != 1 || got[0].Name != tt.wantTool || stop != "tool_use" {
				t.Fatalf("answer %+v stop %q, want one %s call", got, stop, tt.wantTool)
			}
			if tt.wantInput != "" && string(got[0].Input) != tt.wantInput {
				t.Errorf("input %s, want %s", got[0].Input, tt.wantInput)
			}
			last, _ := s.LastMessageRequest()
			if last.Turn != tt.wantTurn || last.Side {
				t.Errorf("recorded turn %d side %v, want turn %d", last.Turn, last.Side, tt.wantTurn)
			}
			if strings.Join(last.Tools, ",") != ToolSearch+",Grep" || strings.Join(last.Deferred, ",") != "Read,Edit,DeferredToolPlaceholder" {
				t.Errorf("recorded tools %v deferred %v", last.Tools, last.Deferred)
			}
		})
	}

	t.Run("without ToolSearch the step is answered as it is", func(t *testing.T) {
		resp, err := postTools(t, context.Background(), s.URL, []map[string]any{user("edit it")}, tools[1:])
		if err != nil {
			t.Fatal(err)
		}
		if got, _, _ := answerOf(t, resp); len(got) != 1 || got[0].Name != "Read" {
			t.Errorf("answer %+v, want the scripted Read", got)
		}
	})

	t.Run("only deferred tools: a side request", func(t *testing.T) {
		resp, err := postTools(t, context.Background(), s.URL, []map[string]any{user("a title")}, tools[4:])
		if err != nil {
			t.Fatal(err)
		}
		if got, text, _ := answerOf(t, resp); len(got) != 0 || text != SideText {
			t.Errorf("answer %+v %q, want the side text", got, text)
		}
	})
}

// TestSystemMessages: the environment that newer CLIs send as a
// `role: "system"` message is read with the system prompt, and neither
// starts nor advances the script.
func TestSystemMessages(t *testing.T) {
	s := New(t, Read("/p/index.md"), Text("Done here."))
	env := map[string]any{"role": "system", "content": "# Environment\n - Primary working directory: /p"}
	resp, err := post(t, context.Background(), s.URL, []map[string]any{user("look"), env, assistantTool("t1"), toolResult("t1")}, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, text, stop := answerOf(t, resp); text != "Done here." || stop != "end_turn" {
		t.Errorf("answer %q %q, want the script's second step", text, stop)
	}
	last, _ := s.LastMessageRequest()
	if last.Turn != 1 || !strings.Contains(last.SystemText(), "Primary working directory: /p") {
		t.Errorf("turn %d, system text %q", last.Turn, last.SystemText())
	}
}
