package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/metrics"
)

// TestRouterStatsMinute: a minute's requests become RouterRequests,
// Router5xx and the mean upstream latency, and the next minute starts at
// zero.
func TestRouterStatsMinute(t *testing.T) {
	var s routerStats
	s.observe(http.StatusOK, 4*time.Millisecond)
	s.observe(http.StatusSwitchingProtocols, 2*time.Millisecond)
	s.observe(http.StatusServiceUnavailable, 0)
	s.observe(http.StatusUnauthorized, 0)
	got := map[string]float64{}
	for _, v := range s.minute() {
		got[v.Name] = v.Value
	}
	want := map[string]float64{metrics.RouterRequests: 4, metrics.Router5xx: 1, metrics.RouterUpstreamMs: 3}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], w, got)
		}
	}
	next := s.minute()
	if len(next) != 2 || next[0].Value != 0 || next[1].Value != 0 {
		t.Errorf("the next minute starts with %v", next)
	}
}
