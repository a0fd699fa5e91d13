package agent

import (
	"sync"
	"time"
)

// Progress kinds.
const (
	// KindToolUse: the agent called a tool.
	KindToolUse = "tool_use"
	// KindText: the agent wrote text.
	KindText = "text"
)

// Progress is one step of a running agent, as sent in a progress response.
type Progress struct {
	// Kind is KindToolUse or KindText.
	Kind string `json:"kind"`
	// Tool is the tool's name for KindToolUse, e.g. "Edit".
	Tool string `json:"tool,omitempty"`
	// Summary is a short, redacted description: the file path (relative to
	// the project), the command, or the first ~200 characters of the text.
	Summary string `json:"summary"`
}

// coalescer hands progress to a callback at most once per interval, keeping
// only the latest progress of an interval. Add never blocks (the CLI's output
// keeps flowing while the callback is slow); the callback runs on the
// coalescer's goroutine, one call at a time, and every call has returned when
// close returns.
type coalescer struct {
	interval time.Duration
	fn       func(Progress)

	mu      sync.Mutex
	pending *Progress

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

func newCoalescer(interval time.Duration, fn func(Progress)) *coalescer {
	c := &coalescer{
		interval: interval,
		fn:       fn,
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go c.loop()
	return c
}

// add records p as the latest progress.
func (c *coalescer) add(p Progress) {
	c.mu.Lock()
	c.pending = &p
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// close delivers any pending progress and waits for the callback to return.
func (c *coalescer) close() {
	close(c.stop)
	<-c.done
}

func (c *coalescer) take() (Progress, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending == nil {
		return Progress{}, false
	}
	p := *c.pending
	c.pending = nil
	return p, true
}

func (c *coalescer) loop() {
	defer close(c.done)
	var last time.Time
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-c.wake:
		case <-c.stop:
			if p, ok := c.take(); ok {
				c.fn(p)
			}
			return
		}
		if wait := c.interval - time.Since(last); !last.IsZero() && wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-c.stop:
				timer.Stop()
			}
		}
		if p, ok := c.take(); ok {
			c.fn(p)
			last = time.Now()
		}
	}
}
