package preview

import (
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/webordinary/claude-code-astro/internal/config"
)

// credentialKey is the request context key under which a Gate leaves what
// it learnt of the request's token or cookie.
type credentialKey struct{}

// credential is the token or cookie a Gate accepted.
type credential struct {
	browser [sha256.Size]byte // a hash of the token: one per browser, in practice
	claims  Claims
}

// withCredential returns ctx carrying what the accepted token says and a
// hash of it (never the token itself).
func withCredential(ctx context.Context, token string, c Claims) context.Context {
	return context.WithValue(ctx, credentialKey{}, credential{browser: sha256.Sum256([]byte(token)), claims: c})
}

// CredentialExpiry returns when the token or cookie that let the request
// through expires, as a Gate found it.
func CredentialExpiry(ctx context.Context) (time.Time, bool) {
	c, ok := ctx.Value(credentialKey{}).(credential)
	return c.claims.Expires, ok
}

// credentialClaims returns what the token or cookie that let the request
// through says, as a Gate found it.
func credentialClaims(ctx context.Context) (Claims, bool) {
	c, ok := ctx.Value(credentialKey{}).(credential)
	return c.claims, ok
}

// browserOf returns the key of the request's browser: its credential's
// hash, else its preview id.
func browserOf(ctx context.Context) [sha256.Size]byte {
	if c, ok := ctx.Value(credentialKey{}).(credential); ok {
		return c.browser
	}
	id, _ := PreviewID(ctx)
	return sha256.Sum256([]byte("preview:" + id))
}

// views remembers each browser's last page load, so that an open socket
// (Vite's HMR) counts as a view only up to viewMax after it: a tab left
// open does not keep the worker or its dev server busy forever. Safe for
// concurrent use.
type views struct {
	max time.Duration

	mu       sync.Mutex
	lastLoad map[[sha256.Size]byte]time.Time
}

func newViews(max time.Duration) *views {
	if max <= 0 {
		max = config.Default().PreviewViewMax
	}
	return &views{max: max, lastLoad: map[[sha256.Size]byte]time.Time{}}
}

// loaded records a page load by browser b, and forgets loads too old to
// matter.
func (v *views) loaded(b [sha256.Size]byte) {
	now := time.Now()
	v.mu.Lock()
	defer v.mu.Unlock()
	v.lastLoad[b] = now
	for k, t := range v.lastLoad {
		if now.Sub(t) > v.max {
			delete(v.lastLoad, k)
		}
	}
}

// until returns when a socket of browser b, opened at opened, stops
// counting as a view.
func (v *views) until(b [sha256.Size]byte, opened time.Time) time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	base := opened
	if t, ok := v.lastLoad[b]; ok && t.After(base) {
		base = t
	}
	return base.Add(v.max)
}

// hold calls release once a socket of browser b, opened now, no longer
// counts as a view (a later page load of the browser pushes that back);
// stop cancels it. release is not called after stop returns.
func (v *views) hold(b [sha256.Size]byte, release func()) (stop func()) {
	opened := time.Now()
	var mu sync.Mutex
	stopped := false
	var t *time.Timer
	var check func()
	check = func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		if d := time.Until(v.until(b, opened)); d > 0 {
			t = time.AfterFunc(d, check)
			return
		}
		stopped = true
		release()
	}
	mu.Lock()
	t = time.AfterFunc(time.Until(v.until(b, opened)), check)
	mu.Unlock()
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}
