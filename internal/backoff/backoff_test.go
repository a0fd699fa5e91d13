package backoff

import (
	"context"
	"testing"
	"time"
)

func TestNextDoublesWithinBounds(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	steps := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, step := range steps {
		step *= time.Millisecond
		d := b.Next()
		if d < step/2 || d > step {
			t.Errorf("attempt %d: %s, want between %s and %s", i, d, step/2, step)
		}
	}
	if b.Attempt() != len(steps) {
		t.Errorf("Attempt = %d, want %d", b.Attempt(), len(steps))
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond {
		t.Errorf("after Reset: %s, want at most Min", d)
	}
}

func TestZeroValueAndHugeAttempts(t *testing.T) {
	var b Backoff
	for range 100 {
		if d := b.Next(); d <= 0 || d > 10*time.Second {
			t.Fatalf("zero Backoff gave %s", d)
		}
	}
}

func TestSleepStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if Sleep(ctx, time.Hour) {
		t.Error("Sleep waited out an hour with a cancelled context")
	}
	if !Sleep(context.Background(), time.Millisecond) {
		t.Error("Sleep did not wait a millisecond")
	}
}
