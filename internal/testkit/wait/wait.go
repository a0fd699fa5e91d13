// Package wait is the tests' one way to wait for a condition: poll it until
// it holds, or fail the test when a limit passes. Tests wait for what they
// assert (a log line, a file, a process gone), never for a fixed time.
package wait

import (
	"testing"
	"time"
)

// Poll is how often For checks its condition.
const Poll = 10 * time.Millisecond

// For polls cond every Poll until it returns true, and returns how long that
// took. If limit passes first, it fails tb with what it was waiting for.
func For(tb testing.TB, limit time.Duration, what string, cond func() bool) time.Duration {
	tb.Helper()
	start := time.Now()
	if Until(limit, cond) {
		return time.Since(start)
	}
	tb.Fatalf("timed out after %s waiting for %s", limit, what)
	return 0
}

// Until polls cond every Poll until it returns true (and reports true), or
// until limit passes (and reports false). For callers that handle the
// timeout themselves, such as benchmarks that report it as an error.
func Until(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for !cond() {
		if !time.Now().Before(deadline) {
			return false
		}
		time.Sleep(Poll)
	}
	return true
}
