package preview

import (
	"net/url"
	"strconv"
	"testing"
	"time"
)

// ServeStandIn makes s serve preview id from a stand-in dev server at up (a
// server of this process, such as an httptest.Server): ready, with a secret
// of its own and its listener checked to belong to this process's uid, as a
// dev server that s started would be. For tests of the Proxy that need to
// see what a dev server receives, or one that does not answer.
func ServeStandIn(tb testing.TB, s *Servers, id string, up *url.URL) {
	tb.Helper()
	port, err := strconv.Atoi(up.Port())
	if err != nil {
		tb.Fatalf("stand-in dev server %s: %v", up, err)
	}
	g, err := newGuard(RunAs{})
	if err != nil {
		tb.Fatal(err)
	}
	ds := newDevServer(devServerConfig{Port: port})
	ds.mu.Lock()
	ds.guard = g
	ds.setStateLocked(StateReady)
	ds.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.byID[id] = &server{target: Target{ID: id, Key: id}, ds: ds, lastViewed: time.Now()}
}
