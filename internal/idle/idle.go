// Package idle tracks the worker's activity and says when it has been idle
// long enough to stop itself. Activity is anything that calls Touch, or holds
// a Begin open: a job from receipt to response, a preview request, an open
// HMR socket.
package idle

import (
	"context"
	"sync"
	"time"
)

// Tracker counts activity. Create it with New; it is safe for concurrent use.
type Tracker struct {
	timeout time.Duration
	now     func() time.Time

	mu      sync.Mutex
	active  int
	last    time.Time
	changed chan struct{} // closed and replaced whenever activity changes
}

// New returns a tracker that calls the worker idle after timeout without
// activity. A timeout of 0 never does.
func New(timeout time.Duration) *Tracker {
	return &Tracker{timeout: timeout, now: time.Now, last: time.Now(), changed: make(chan struct{})}
}

// Begin marks the start of an activity that lasts until end is called; the
// worker is not idle in between. end may be called more than once.
func (t *Tracker) Begin() (end func()) {
	t.mu.Lock()
	t.active++
	t.last = t.now()
	t.notifyLocked()
	t.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			t.mu.Lock()
			t.active--
			t.last = t.now()
			t.notifyLocked()
			t.mu.Unlock()
		})
	}
}

// Touch records a moment of activity.
func (t *Tracker) Touch() {
	t.mu.Lock()
	t.last = t.now()
	t.notifyLocked()
	t.mu.Unlock()
}

func (t *Tracker) notifyLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// Changed returns a channel closed at the next activity (a Begin, an
// end, a Touch).
func (t *Tracker) Changed() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.changed
}

// LastActivity returns when activity last began or ended.
func (t *Tracker) LastActivity() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.last
}

// Deadline returns when the worker will be idle, if nothing happens before;
// ok is false while something is active or when idle shutdown is off.
func (t *Tracker) Deadline() (deadline time.Time, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	d, ok, _ := t.deadlineLocked()
	return d, ok
}

func (t *Tracker) deadlineLocked() (time.Time, bool, <-chan struct{}) {
	if t.timeout <= 0 || t.active > 0 {
		return time.Time{}, false, t.changed
	}
	return t.last.Add(t.timeout), true, t.changed
}

// Wait blocks until the worker has been idle for the timeout, and returns
// nil; or until ctx is done, and returns its error. Activity meanwhile pushes
// the deadline back.
func (t *Tracker) Wait(ctx context.Context) error {
	for {
		t.mu.Lock()
		deadline, ok, changed := t.deadlineLocked()
		t.mu.Unlock()
		if !ok {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-changed:
				continue
			}
		}
		wait := deadline.Sub(t.now())
		if wait <= 0 {
			return nil
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-changed:
			timer.Stop()
		case <-timer.C:
		}
	}
}
