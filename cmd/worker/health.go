package main

// GET /health: what the worker is doing, 200 while it is healthy and 503
// with the same body when it is not (CONTRACT.md section 4).

import (
	"encoding/json"
	"net/http"
	"time"
)

// healthReport is the body of /health, and with its tenant fields that of
// `worker status`. /health leaves the tenant fields out for every request,
// loopback included: tenant processes share loopback.
type healthReport struct {
	Status         string     `json:"status"` // "ok" or "unhealthy"
	Version        string     `json:"version"`
	Jobs           jobCounts  `json:"jobs"`
	LastActivityAt *time.Time `json:"lastActivityAt"`
	IdleShutdownAt *time.Time `json:"idleShutdownAt"` // null while busy or when idle shutdown is off
	// Problems says why the worker is unhealthy.
	Problems []string `json:"problems,omitempty"`
	// Retrying says why the worker is retrying SQS calls now (an error
	// that can heal: the network, throttling); empty when it is not.
	Retrying string `json:"retrying,omitempty"`

	// `worker status` only: the latest job's tenant and workspace, and
	// every running preview.
	Workspace string          `json:"workspace,omitempty"`
	ClientID  string          `json:"clientId,omitempty"`
	UserID    string          `json:"userId,omitempty"`
	ThreadID  string          `json:"threadId,omitempty"`
	Branch    string          `json:"branch,omitempty"`
	Astro     *astroState     `json:"astro,omitempty"`
	Previews  []previewReport `json:"previews,omitzero"` // [] when the preview is on
}

// previewReport is one user's dev server.
type previewReport struct {
	Preview      string     `json:"preview"`
	ClientID     string     `json:"clientId"`
	UserID       string     `json:"userId"`
	ThreadID     string     `json:"threadId,omitempty"`
	Branch       string     `json:"branch,omitempty"`
	State        string     `json:"state"`
	Port         int        `json:"port"`
	LastViewedAt *time.Time `json:"lastViewedAt"`
}

// astroState is the state of the latest job's user's dev server.
type astroState struct {
	State string `json:"state"`
}

// jobCounts counts the worker's jobs.
type jobCounts struct {
	InFlight  int64 `json:"inFlight"`
	Succeeded int64 `json:"succeeded"`
	Failed    int64 `json:"failed"`
}

// healthHandler serves the report that report returns: 200 when its
// Problems are empty, 503 otherwise. It never holds tenant details, for any
// client: they are on the status socket (status.go).
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
