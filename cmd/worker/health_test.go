package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestHealthHandler(t *testing.T) {
	now := time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)
	public := []string{"status", "version", "jobs", "lastActivityAt", "idleShutdownAt"}
	tenant := []string{"workspace", "clientId", "userId", "threadId", "branch", "astro", "previews"}
	tests := []struct {
		name       string
		problems   []string
		remoteAddr string
		code       int
		status     string
		detailed   bool
	}{
		{"healthy, from loopback", nil, "127.0.0.1:40000", 200, "ok", false},
		{"stuck, from loopback", []string{"poll loop stuck"}, "[::1]:40000", 503, "unhealthy", false},
		{"healthy, from elsewhere", nil, "203.0.113.7:40000", 200, "ok", false},
		{"stuck, from elsewhere", []string{"poll loop stuck"}, "10.0.0.5:40000", 503, "unhealthy", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := healthHandler(func() healthReport {
				return healthReport{Version: "v1", Jobs: jobCounts{InFlight: 1, Succeeded: 2, Failed: 3}, LastActivityAt: timePtr(now), Problems: tt.problems}
			})
			req := httptest.NewRequest("GET", "/health", nil)
			req.RemoteAddr = tt.remoteAddr
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.code {
				t.Errorf("code %d, want %d", rec.Code, tt.code)
			}
			var body map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			for _, key := range public {
				if _, ok := body[key]; !ok {
					t.Errorf("body lacks %q: %s", key, rec.Body)
				}
			}
			for _, key := range tenant {
				if _, ok := body[key]; ok != tt.detailed {
					t.Errorf("body has %q: %v, want %v (no tenant details over TCP): %s", key, ok, tt.detailed, rec.Body)
				}
			}
			if body["status"] != tt.status {
				t.Errorf("status %v", body["status"])
			}
			jobs := body["jobs"].(map[string]any)
			if jobs["inFlight"] != 1.0 || jobs["succeeded"] != 2.0 || jobs["failed"] != 3.0 {
				t.Errorf("jobs %v", jobs)
			}
		})
	}
}

func TestHandlerMethod(t *testing.T) {
	rec := httptest.NewRecorder()
	healthHandler(func() healthReport { return healthReport{} }).ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/health", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /health = %d", rec.Code)
	}
}
