// Package fakeanthropic is a fake Anthropic Messages API for tests that run
// the real Claude Code CLI. It listens on 127.0.0.1, answers
// POST /v1/messages as a server-sent event stream from a script of steps
// (tool uses, a final text, or faults) and records every request.
//
// The server picks the step from the request's own conversation: the number
// of assistant messages since the last user prompt. A retried request
// therefore gets the same answer again, and a resumed session starts its new
// prompt at the beginning of the script. Helper requests that the CLI makes
// on the side (titles, summaries: requests without tools) get a short text
// and do not consume the script.
//
// Newer CLIs (2.1.332) may declare tools deferred (`defer_loading`): the
// model sees only their names and loads them with the ToolSearch tool
// before calling them. When a step calls a tool that the request declares
// deferred and ToolSearch is offered, the server first answers a ToolSearch
// call selecting it, as a model would; that answer is not a script step.
// Newer CLIs also send the environment (working directory, platform) as a
// `role: "system"` message inside messages: Request.SystemText reads both.
package fakeanthropic

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/webordinary/claude-code-astro/internal/messagesapi"
)

// SideText is the answer to side requests.
const SideText = "Fake session"

// Decider chooses the answer to a scripted Messages API request. req.Turn
// holds the script position. It is called from the server's goroutines.
type Decider func(req *Request) Step

// Server is a running fake Messages API. Its methods are safe for
// concurrent use.
type Server struct {
	// URL is the base URL to give the CLI as ANTHROPIC_BASE_URL.
	URL string

	srv    *httptest.Server
	closed chan struct{}
	once   sync.Once
	ids    atomic.Int64

	mu       sync.Mutex
	script   []Step
	decider  Decider
	requests []Request
	key      string // when set, the only x-api-key accepted
	reported Usage  // the usage every answer reported, summed
}

// Usage is what the fake API reported in its answers' usage objects.
type Usage struct {
	InputTokens, OutputTokens, CacheReadTokens, CacheWriteTokens int64
}

// RequireKey makes the server answer 401 (authentication_error) to any
// request whose x-api-key is not key, as the real API does; "" accepts any.
func (s *Server) RequireKey(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.key = key
}

// Reported returns the sum of the usage the server reported in every answer
// (scripted and side requests alike).
func (s *Server) Reported() Usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reported
}

// New starts a fake API answering from script and closes it when the test
// ends.
func New(tb testing.TB, script ...Step) *Server {
	tb.Helper()
	s := &Server{closed: make(chan struct{}), script: script}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	s.URL = s.srv.URL
	tb.Cleanup(s.Close)
	return s
}

// Close stops the server, releasing any hanging request first.
func (s *Server) Close() {
	s.once.Do(func() {
		close(s.closed)
		s.srv.CloseClientConnections()
		s.srv.Close()
	})
}

// SetScript replaces the script (and removes any Decider).
func (s *Server) SetScript(script ...Step) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script = script
	s.decider = nil
}

// SetDecider makes d choose every scripted answer instead of the script.
func (s *Server) SetDecider(d Decider) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.decider = d
}

// Requests returns a copy of every request received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// MessageRequests returns the scripted (non-side) Messages API requests.
func (s *Server) MessageRequests() []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Path == "/v1/messages" && !r.Side {
			out = append(out, r)
		}
	}
	return out
}

// LastMessageRequest returns the last scripted Messages API request, and
// false when there was none.
func (s *Server) LastMessageRequest() (Request, bool) {
	reqs := s.MessageRequests()
	if len(reqs) == 0 {
		return Request{}, false
	}
	return reqs[len(reqs)-1], true
}

// isSide reports whether a Messages API request is a helper request that
// must not consume the script: the CLI's agent loop always sends tools.
func isSide(r *Request) bool {
	return len(r.Tools) == 0
}

func (s *Server) serveHTTP(w http.ResponseWriter, hr *http.Request) {
	body, err := io.ReadAll(hr.Body)
	if err != nil {
		messagesapi.WriteError(w, http.StatusBadRequest, "invalid_request_error", "read body: "+err.Error())
		return
	}
	req := Request{
		Method:   hr.Method,
		Path:     hr.URL.Path,
		RawQuery: hr.URL.RawQuery,
		Header:   hr.Header.Clone(),
		Body:     body,
		Turn:     -1,
	}
	_ = json.Unmarshal(body, &req.JSON) // a body that is not JSON leaves JSON nil

	s.mu.Lock()
	key := s.key
	s.mu.Unlock()
	if key != "" && hr.Header.Get("X-Api-Key") != key {
		s.record(req)
		messagesapi.WriteError(w, http.StatusUnauthorized, "authentication_error", "invalid x-api-key")
		return
	}

	switch {
	case hr.Method == http.MethodPost && req.Path == "/v1/messages":
		req.parseMessages()
		step := s.decide(&req)
		s.record(req)
		s.answer(w, hr, &req, step)
	case hr.Method == http.MethodPost && req.Path == "/v1/messages/count_tokens":
		s.record(req)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"input_tokens":%d}`, len(body)/4+1)
	default:
		s.record(req)
		if hr.Method == http.MethodHead {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		messagesapi.WriteError(w, http.StatusNotFound, "not_found_error", "not found: "+req.Path)
	}
}

// decide picks the step for a Messages API request and marks it.
func (s *Server) decide(req *Request) Step {
	if isSide(req) {
		req.Side = true
		return Text(SideText)
	}
	req.Turn = turn(req.Messages)
	s.mu.Lock()
	d, script := s.decider, s.script
	s.mu.Unlock()
	var step Step
	switch {
	case d != nil:
		step = d(req)
	case req.Turn < len(script):
		step = script[req.Turn]
	default:
		step = Text("Done.")
	}
	if names := req.toLoad(step); len(names) > 0 {
		// The step's tools are deferred: load them first, as a model
		// must; the step itself answers the next request.
		req.Loading = names
		return Tool(ToolSearch, map[string]any{"query": "select:" + strings.Join(names, ",")})
	}
	return step
}

func (s *Server) record(req Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, req)
}

// answer writes step as the response to req.
func (s *Server) answer(w http.ResponseWriter, hr *http.Request, req *Request, step Step) {
	switch step.Fault {
	case FaultBadRequest:
		messagesapi.WriteError(w, http.StatusBadRequest, "invalid_request_error", orDefault(step.Message, "bad request"))
		return
	case FaultOverloaded:
		messagesapi.WriteError(w, 529, "overloaded_error", orDefault(step.Message, "Overloaded"))
		return
	case FaultStatus:
		messagesapi.WriteError(w, step.Status, orDefault(step.ErrorType, "api_error"), orDefault(step.Message, "refused"))
		return
	case FaultHang:
		select {
		case <-hr.Context().Done():
		case <-s.closed:
		}
		return
	}
	n := s.ids.Add(1)
	model := orDefault(req.Model, "claude-fake")
	used := Usage{InputTokens: int64(len(req.Body)/4 + 1), CacheReadTokens: 7, CacheWriteTokens: 3, OutputTokens: int64(10 + len(step.Text)/4)}
	st := messagesapi.Start(w, fmt.Sprintf("msg_fake_%d", n), model, messagesapi.Usage{
		InputTokens: used.InputTokens, CacheReadTokens: used.CacheReadTokens, CacheWriteTokens: used.CacheWriteTokens})
	if step.Text != "" {
		if step.Fault == FaultDrop {
			// Send half, then cut the connection mid-stream.
			st.TextStart(step.Text[:len(step.Text)/2])
			panic(http.ErrAbortHandler)
		}
		st.Text(step.Text)
	}
	if step.Fault == FaultDrop {
		panic(http.ErrAbortHandler)
	}
	for i, tool := range step.Tools {
		st.Tool(messagesapi.ToolUse{ID: fmt.Sprintf("toolu_fake_%d_%d", n, i), Name: tool.Name, Input: tool.Input})
	}
	st.End(step.stopReason(), used.OutputTokens)
	s.mu.Lock()
	s.reported.InputTokens += used.InputTokens
	s.reported.OutputTokens += used.OutputTokens
	s.reported.CacheReadTokens += used.CacheReadTokens
	s.reported.CacheWriteTokens += used.CacheWriteTokens
	s.mu.Unlock()
}

func orDefault(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	return s
}
