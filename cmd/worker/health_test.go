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
	tests := []struct {
		name     string
		problems []string
		code     int
		status   string
	}{
		{"healthy", nil, 200, "ok"},
		{"stuck", []string{"poll loop stuck"}, 503, "unhealthy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := healthHandler(func() healthReport {
				return healthReport{Version: "v1", ClientID: "acme", Astro: astroState{State: "ready"},
					Jobs: jobCounts{InFlight: 1, Succeeded: 2, Failed: 3}, LastActivityAt: timePtr(now), Problems: tt.problems}
			})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/health", nil))
			if rec.Code != tt.code {
				t.Errorf("code %d, want %d", rec.Code, tt.code)
			}
			var body map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			for _, key := range []string{"status", "version", "workspace", "clientId", "userId", "threadId", "branch", "astro", "jobs", "lastActivityAt", "idleShutdownAt"} {
				if _, ok := body[key]; !ok {
					t.Errorf("body lacks %q: %s", key, rec.Body)
				}
			}
			if body["status"] != tt.status {
				t.Errorf("status %v", body["status"])
			}
			jobs := body["jobs"].(map[string]any)
			if jobs["inFlight"] != 1.0 || jobs["succeeded"] != 2.0 || jobs["failed"] != 3.0 {
				t.Errorf("jobs %v", jobs)
			}
			if body["astro"].(map[string]any)["state"] != "ready" {
				t.Errorf("astro %v", body["astro"])
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
