package preview

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"time"

	"github.com/webordinary/claude-code-astro/internal/config"
)

// TokenParam is the query parameter that carries a preview token in a
// previewUrl (Vite's own HMR socket uses "token").
const TokenParam = "preview_token"

// CookieName is the cookie a preview token is exchanged for over plain
// http (local use).
const CookieName = "preview_token"

// HostCookieName is the cookie a preview token is exchanged for over
// https. Browsers accept a __Host- cookie only from the host itself (Secure,
// Path=/, no Domain attribute), so a sibling preview's site cannot set one
// on the parent domain that shadows it.
const HostCookieName = "__Host-" + CookieName

// isPreviewCookie reports whether a cookie of that name may carry a preview
// token.
func isPreviewCookie(name string) bool { return name == CookieName || name == HostCookieName }

// Tokens signs and checks preview tokens: "{preview id}.{expiry}.{MAC}",
// where the MAC is HMAC-SHA256 over the id and the expiry (Unix seconds,
// base 36) under a secret key. A token opens one preview until it expires.
// The zero value is not usable: call NewTokens. It is safe for concurrent
// use.
type Tokens struct {
	key []byte
	ttl time.Duration
	now func() time.Time
}

// NewTokens returns Tokens signing with key; ttl (PREVIEW_TOKEN_TTL) <= 0
// means config.Default()'s.
func NewTokens(key []byte, ttl time.Duration) *Tokens {
	if ttl <= 0 {
		ttl = config.Default().PreviewTokenTTL
	}
	return &Tokens{key: append([]byte(nil), key...), ttl: ttl, now: time.Now}
}

// TTL returns how long a new token is valid.
func (t *Tokens) TTL() time.Duration { return t.ttl }

// Issue returns a token for preview id, valid for the TTL from now.
func (t *Tokens) Issue(id string) string {
	exp := strconv.FormatInt(t.now().Add(t.ttl).Unix(), 36)
	return id + "." + exp + "." + t.mac(id, exp)
}

// Verify returns the preview id a token opens and when it expires; ok is
// false for a token that is malformed, forged (signed with another key) or
// expired.
func (t *Tokens) Verify(token string) (id string, expires time.Time, ok bool) {
	id, rest, found := strings.Cut(token, ".")
	if !found || !ValidID(id) {
		return "", time.Time{}, false
	}
	exp, mac, found := strings.Cut(rest, ".")
	if !found {
		return "", time.Time{}, false
	}
	secs, err := strconv.ParseInt(exp, 36, 64)
	if err != nil {
		return "", time.Time{}, false
	}
	if !hmac.Equal([]byte(mac), []byte(t.mac(id, exp))) {
		return "", time.Time{}, false
	}
	expires = time.Unix(secs, 0)
	if !t.now().Before(expires) {
		return "", time.Time{}, false
	}
	return id, expires, true
}

// mac returns the base64url HMAC of id and exp.
func (t *Tokens) mac(id, exp string) string {
	m := hmac.New(sha256.New, t.key)
	m.Write([]byte(id + "." + exp))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
