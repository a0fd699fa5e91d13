package worker

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff computes exponential delays with full jitter, between min and max.
// It is not safe for concurrent use: each loop owns one.
type backoff struct {
	min, max time.Duration
	attempt  int
}

// next returns the delay before the next attempt and counts it.
func (b *backoff) next() time.Duration {
	d := b.min << min(b.attempt, 20)
	if d <= 0 || d > b.max {
		d = b.max
	}
	b.attempt++
	// Full jitter, but never less than half the step: never a busy loop.
	return d/2 + rand.N(d/2+1)
}

// reset forgets earlier failures.
func (b *backoff) reset() { b.attempt = 0 }

// sleep waits d or until ctx is done, reporting whether it waited the whole d.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
