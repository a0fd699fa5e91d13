package main

// GET /health: what the worker is doing, 200 while it is healthy and 503
// with the same body when it is not (CONTRACT.md section 4).

import (
	"encoding/json"
	"net/http"
	"time"
)

// healthReport is the body of /health.
type healthReport struct {
	Status         string     `json:"status"` // "ok" or "unhealthy"
	Version        string     `json:"version"`
	Workspace      string     `json:"workspace"`
	ClientID       string     `json:"clientId"`
	UserID         string     `json:"userId"`
	ThreadID       string     `json:"threadId"`
	Branch         string     `json:"branch"`
	Astro          astroState `json:"astro"`
	Jobs           jobCounts  `json:"jobs"`
	LastActivityAt *time.Time `json:"lastActivityAt"`
	IdleShutdownAt *time.Time `json:"idleShutdownAt"` // null while busy or when idle shutdown is off
	// Problems says why the worker is unhealthy.
	Problems []string `json:"problems,omitempty"`
}

// astroState is the dev server's state.
type astroState struct {
	State string `json:"state"`
}

// jobCounts counts the worker's jobs.
type jobCounts struct {
	InFlight  int64 `json:"inFlight"`
	Succeeded int64 `json:"succeeded"`
	Failed    int64 `json:"failed"`
}

// Handler serves the report that report returns: 200 when its Problems are
// empty, 503 otherwise.
func healthHandler(report func() healthReport) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		rep := report()
		code := http.StatusOK
		rep.Status = "ok"
		if len(rep.Problems) > 0 {
			rep.Status = "unhealthy"
			code = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		if r.Method == http.MethodGet {
			_ = json.NewEncoder(w).Encode(rep) // the client went away: nothing to do
		}
	})
}

// timePtr returns &t in UTC, or nil for the zero time.
func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}
