// Package backoff computes the delays between retries: exponential, with
// jitter, between a minimum and a maximum. The worker's receive loop and the
// dev server's restarts use it.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff computes exponential delays with jitter between Min and Max. It
// is not safe for concurrent use: each loop owns one. The zero value waits
// 100ms to 10s.
type Backoff struct {
	Min, Max time.Duration
	attempt  int
}

// Next returns the delay before the next attempt and counts it: Min,
// doubling each attempt up to Max, each drawn between its half and itself
// (full jitter, but never a busy loop), so that many waiting loops do not
// align.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = 100 * time.Millisecond
	}
	if hi <= 0 {
		hi = 10 * time.Second
	}
	d := lo << min(b.attempt, 20)
	if d <= 0 || d > hi {
		d = hi
	}
	b.attempt++
	return d/2 + rand.N(d/2+1)
}

// Attempt returns how many delays Next has given since the last Reset.
func (b *Backoff) Attempt() int { return b.attempt }

// Reset forgets earlier failures: the next delay is about Min again.
func (b *Backoff) Reset() { b.attempt = 0 }

// Sleep waits d or until ctx is done, reporting whether it waited the whole d.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
