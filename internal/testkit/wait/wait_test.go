package wait

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	tests := []struct {
		name      string
		holdsFrom int // the call from which cond is true; 0 = never
		want      bool
	}{
		{"already true", 1, true},
		{"true on the fifth poll", 5, true},
		{"never true", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			got := Until(200*time.Millisecond, func() bool {
				n := int(calls.Add(1))
				return tc.holdsFrom > 0 && n >= tc.holdsFrom
			})
			if got != tc.want {
				t.Fatalf("Until = %v, want %v (after %d calls)", got, tc.want, calls.Load())
			}
			if tc.want && int(calls.Load()) != tc.holdsFrom {
				t.Fatalf("cond called %d times, want %d: Until must stop once it holds", calls.Load(), tc.holdsFrom)
			}
			if !tc.want && calls.Load() < 2 {
				t.Fatalf("cond called %d times in 200ms, want it polled", calls.Load())
			}
		})
	}
}

// fatalRecorder catches Fatalf without ending the test that uses it.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}
func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = format
}

func TestForFailsWithWhatItWaitedFor(t *testing.T) {
	rec := &fatalRecorder{TB: t}
	For(rec, 30*time.Millisecond, "the moon", func() bool { return false })
	if rec.msg == "" {
		t.Fatal("For did not fail the test when the condition never held")
	}
	rec = &fatalRecorder{TB: t}
	if d := For(rec, time.Second, "now", func() bool { return true }); rec.msg != "" || d > time.Second {
		t.Fatalf("For on a true condition: failed %q after %s", rec.msg, d)
	}
}
