package lease

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/webordinary/claude-code-astro/internal/config"
)

// HolderConfig configures a Holder. Table, Owner and Addr are required.
type HolderConfig struct {
	Table *Table
	// Owner is this worker's id; Addr where routers reach its HTTP port.
	Owner, Addr string
	// TTL is a lease's lifetime (LEASE_TTL); leases are renewed every third
	// of it. Zero means config.Default()'s.
	TTL time.Duration
	// Lost is called (from Run's goroutine) with the preview id of a lease
	// this worker no longer holds: taken over by another worker, or not
	// renewed in time. The worker stops that preview's dev server.
	Lost func(preview string)
	// Protect, when set, is held while the Holder holds any lease: the
	// task's scale-in protection.
	Protect func() (release func())
	// Logger receives the leases' changes. Nil discards them.
	Logger *slog.Logger
}

// Holder holds one worker's leases: Take before a user's dev server starts,
// Run renews them, End when the dev server stops, Close when the worker
// stops. Its methods are safe for concurrent use.
type Holder struct {
	cfg HolderConfig
	log *slog.Logger

	mu      sync.Mutex
	held    map[string]Lease
	release func() // the protection, while held is not empty
}

// NewHolder returns a Holder holding nothing.
func NewHolder(cfg HolderConfig) *Holder {
	if cfg.TTL <= 0 {
		cfg.TTL = config.Default().LeaseTTL
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Holder{cfg: cfg, log: log, held: map[string]Lease{}}
}

// TTL returns a lease's lifetime.
func (h *Holder) TTL() time.Duration { return h.cfg.TTL }

// Take takes (or renews) preview's lease for this worker, from whoever
// held it: a job of the user runs here.
func (h *Holder) Take(ctx context.Context, preview, clientID, userID string) (Lease, error) {
	return h.take(ctx, preview, clientID, userID, true)
}

// TakeFree takes (or renews) preview's lease only when no other worker
// holds it live (Table.TakeFree): a page load, not a job, wants it here.
func (h *Holder) TakeFree(ctx context.Context, preview, clientID, userID string) (Lease, error) {
	return h.take(ctx, preview, clientID, userID, false)
}

func (h *Holder) take(ctx context.Context, preview, clientID, userID string, takeover bool) (Lease, error) {
	want := Lease{Preview: preview, ClientID: clientID, UserID: userID, Owner: h.cfg.Owner, Addr: h.cfg.Addr}
	var l Lease
	var err error
	if takeover {
		l, err = h.cfg.Table.Take(ctx, want, h.cfg.TTL)
	} else {
		l, err = h.cfg.Table.TakeFree(ctx, want, h.cfg.TTL)
	}
	if err != nil {
		return Lease{}, err
	}
	h.mu.Lock()
	prev, had := h.held[preview]
	h.held[preview] = l
	h.protectLocked()
	h.mu.Unlock()
	if !had || prev.Epoch != l.Epoch {
		h.log.InfoContext(ctx, "preview lease taken", "preview", preview, "tenant", clientID+"/"+userID, "epoch", l.Epoch)
	}
	return l, nil
}

// Holds reports whether this worker holds preview's lease (as far as it
// knows: until its next renewal fails).
func (h *Holder) Holds(preview string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.held[preview]
	return ok
}

// Held returns how many leases this worker holds.
func (h *Holder) Held() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.held)
}

// End ends preview's lease, when this worker holds it.
func (h *Holder) End(ctx context.Context, preview string) {
	h.mu.Lock()
	l, ok := h.held[preview]
	delete(h.held, preview)
	h.protectLocked()
	h.mu.Unlock()
	if !ok {
		return
	}
	if err := h.cfg.Table.End(ctx, l); err != nil && !errors.Is(err, ErrTaken) {
		h.log.WarnContext(ctx, "cannot end a preview lease: it expires by itself", "preview", preview, "error", err)
		return
	}
	h.log.InfoContext(ctx, "preview lease ended", "preview", preview, "epoch", l.Epoch)
}

// Close ends every lease held.
func (h *Holder) Close(ctx context.Context) {
	h.mu.Lock()
	ids := make([]string, 0, len(h.held))
	for id := range h.held {
		ids = append(ids, id)
	}
	h.mu.Unlock()
	for _, id := range ids {
		h.End(ctx, id)
	}
}

// Run renews the leases held every third of TTL until ctx ends. A lease
// another worker took, or one not renewed before it expired, is dropped and
// reported to Lost.
func (h *Holder) Run(ctx context.Context) {
	tick := time.NewTicker(h.cfg.TTL / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			h.renew(ctx)
		}
	}
}

// renew renews every lease held once.
func (h *Holder) renew(ctx context.Context) {
	h.mu.Lock()
	leases := make([]Lease, 0, len(h.held))
	for _, l := range h.held {
		leases = append(leases, l)
	}
	h.mu.Unlock()
	for _, l := range leases {
		// A renewal may take until the lease would expire.
		rctx, cancel := context.WithDeadline(ctx, later(l.ExpiresAt, time.Now().Add(h.cfg.TTL/3)))
		renewed, err := h.cfg.Table.Renew(rctx, l, h.cfg.TTL)
		cancel()
		switch {
		case err == nil:
			h.mu.Lock()
			if cur, ok := h.held[l.Preview]; ok && cur.Epoch == l.Epoch {
				h.held[l.Preview] = renewed
			}
			h.mu.Unlock()
			continue
		case errors.Is(err, ErrTaken):
			h.log.InfoContext(ctx, "preview lease taken over by another worker", "preview", l.Preview, "epoch", l.Epoch)
		case ctx.Err() != nil:
			return
		case time.Now().Before(l.ExpiresAt):
			h.log.WarnContext(ctx, "cannot renew a preview lease; trying again", "preview", l.Preview, "error", err)
			continue
		default:
			h.log.WarnContext(ctx, "preview lease expired: not renewed in time", "preview", l.Preview, "error", err)
		}
		h.drop(l)
	}
}

// drop forgets l, if it is still the lease held, and reports it lost.
func (h *Holder) drop(l Lease) {
	h.mu.Lock()
	cur, ok := h.held[l.Preview]
	if ok && cur.Epoch == l.Epoch {
		delete(h.held, l.Preview)
		h.protectLocked()
	}
	h.mu.Unlock()
	if ok && cur.Epoch == l.Epoch && h.cfg.Lost != nil {
		h.cfg.Lost(l.Preview)
	}
}

// protectLocked holds the protection while any lease is held. h.mu must be
// held.
func (h *Holder) protectLocked() {
	if h.cfg.Protect == nil {
		return
	}
	switch {
	case len(h.held) > 0 && h.release == nil:
		h.release = h.cfg.Protect()
	case len(h.held) == 0 && h.release != nil:
		h.release()
		h.release = nil
	}
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
