// Package ecsagent is a stand-in for the ECS agent's task-protection
// endpoint ($ECS_AGENT_URI/task-protection/v1/state), which no emulator
// covers. It checks each request's shape as the agent documents it and
// records the accepted ones; tests read the task's protection from it.
package ecsagent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// TaskARN is the task the fake agent serves.
const TaskARN = "arn:aws:ecs:us-east-1:000000000000:task/workers/0123456789abcdef0123456789abcdef"

// Request is one accepted PUT.
type Request struct {
	At                time.Time
	ProtectionEnabled bool
	ExpiresInMinutes  int // 0 when not given
}

// Agent is a running fake. Its methods are safe for concurrent use.
type Agent struct {
	srv *httptest.Server
	tb  testing.TB

	mu       sync.Mutex
	requests []Request
	bad      []string
	until    time.Time // protection's expiry; zero when off
}

// Start runs a fake agent on loopback until the test ends.
func Start(tb testing.TB) *Agent {
	tb.Helper()
	a := &Agent{tb: tb}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	tb.Cleanup(func() {
		a.srv.Close()
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, b := range a.bad {
			tb.Errorf("ECS agent fake: malformed request: %s", b)
		}
	})
	return a
}

// URI is the value of ECS_AGENT_URI.
func (a *Agent) URI() string { return a.srv.URL + "/api/" + "0123456789abcdef-123" }

func (a *Agent) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/0123456789abcdef-123/task-protection/v1/state" {
		a.reject(w, http.StatusNotFound, "path "+r.URL.Path)
		return
	}
	if r.Method == http.MethodGet {
		a.answer(w)
		return
	}
	if r.Method != http.MethodPut {
		a.reject(w, http.StatusMethodNotAllowed, "method "+r.Method)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		a.reject(w, http.StatusBadRequest, "Content-Type "+ct)
		return
	}
	var body map[string]json.RawMessage
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
	if err := dec.Decode(&body); err != nil {
		a.reject(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	var req Request
	for k, v := range body {
		var err error
		switch k {
		case "ProtectionEnabled":
			err = json.Unmarshal(v, &req.ProtectionEnabled)
		case "ExpiresInMinutes":
			err = json.Unmarshal(v, &req.ExpiresInMinutes)
			if err == nil && (req.ExpiresInMinutes < 1 || req.ExpiresInMinutes > 2880) {
				err = fmt.Errorf("out of 1..2880: %d", req.ExpiresInMinutes)
			}
		default:
			err = fmt.Errorf("unknown field")
		}
		if err != nil {
			a.reject(w, http.StatusBadRequest, k+": "+err.Error())
			return
		}
	}
	if _, ok := body["ProtectionEnabled"]; !ok {
		a.reject(w, http.StatusBadRequest, "no ProtectionEnabled")
		return
	}
	req.At = time.Now()
	a.mu.Lock()
	a.requests = append(a.requests, req)
	a.until = time.Time{}
	if req.ProtectionEnabled {
		m := req.ExpiresInMinutes
		if m == 0 {
			m = 120 // the agent's default
		}
		a.until = req.At.Add(time.Duration(m) * time.Minute)
	}
	a.mu.Unlock()
	a.answer(w)
}

func (a *Agent) answer(w http.ResponseWriter) {
	a.mu.Lock()
	p := map[string]any{"ProtectionEnabled": !a.until.IsZero(), "TaskArn": TaskARN, "ExpirationDate": nil}
	if !a.until.IsZero() {
		p["ExpirationDate"] = a.until.UTC().Format(time.RFC3339Nano)
	}
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"protection": p})
}

func (a *Agent) reject(w http.ResponseWriter, status int, why string) {
	a.mu.Lock()
	a.bad = append(a.bad, why)
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"Arn": TaskARN, "Code": "InvalidParameterException", "Message": why}})
}

// Protected reports whether the task is protected now.
func (a *Agent) Protected() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return !a.until.IsZero() && time.Now().Before(a.until)
}

// Requests returns the accepted requests so far.
func (a *Agent) Requests() []Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Request(nil), a.requests...)
}
