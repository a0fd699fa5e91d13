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

// Tokens signs and checks preview tokens: "{preview id}.{expiry}.{who}.{MAC}",
// where who is the base64url of "{clientId}/{userId}" (the user behind the
// preview, which a router needs to wake it when no lease item names the
// user any more) and the MAC is HMAC-SHA256 over the rest under a secret
// key. Tokens of the first form, "{preview id}.{expiry}.{MAC}", without
// who, are still accepted. A token opens one preview until it expires.
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

// Issue returns a token for preview id that names no user, valid for the
// TTL from now. A worker issues IssueFor's.
func (t *Tokens) Issue(id string) string {
	exp := strconv.FormatInt(t.now().Add(t.ttl).Unix(), 36)
	return id + "." + exp + "." + t.mac(id+"."+exp)
}

// IssueFor returns a token for clientID/userID's preview that names them,
// valid for the TTL from now.
func (t *Tokens) IssueFor(clientID, userID string) string {
	signed := ID(clientID, userID) + "." + strconv.FormatInt(t.now().Add(t.ttl).Unix(), 36) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(clientID+"/"+userID))
	return signed + "." + t.mac(signed)
}

// Claims is what a valid token says.
type Claims struct {
	// ID is the preview it opens.
	ID string
	// Expires is when it stops opening it.
	Expires time.Time
	// ClientID and UserID name the user behind the preview; empty for a
	// token of the first form.
	ClientID, UserID string
}

// Verify returns the preview id a token opens and when it expires; ok is
// false for a token that is malformed, forged (signed with another key) or
// expired.
func (t *Tokens) Verify(token string) (id string, expires time.Time, ok bool) {
	c, ok := t.Claims(token)
	return c.ID, c.Expires, ok
}

// Claims returns what token says; ok is false for a token that is
// malformed, forged (signed with another key) or expired, and for one whose
// user is not its preview's.
func (t *Tokens) Claims(token string) (c Claims, ok bool) {
	dot := strings.LastIndexByte(token, '.')
	if dot < 0 {
		return Claims{}, false
	}
	signed, mac := token[:dot], token[dot+1:]
	parts := strings.Split(signed, ".")
	if len(parts) != 2 && len(parts) != 3 || !ValidID(parts[0]) {
		return Claims{}, false
	}
	if !hmac.Equal([]byte(mac), []byte(t.mac(signed))) {
		return Claims{}, false
	}
	secs, err := strconv.ParseInt(parts[1], 36, 64)
	if err != nil {
		return Claims{}, false
	}
	c = Claims{ID: parts[0], Expires: time.Unix(secs, 0)}
	if !t.now().Before(c.Expires) {
		return Claims{}, false
	}
	if len(parts) == 3 {
		who, err := base64.RawURLEncoding.DecodeString(parts[2])
		if err != nil {
			return Claims{}, false
		}
		var found bool
		c.ClientID, c.UserID, found = strings.Cut(string(who), "/")
		if !found || ID(c.ClientID, c.UserID) != c.ID {
			return Claims{}, false
		}
	}
	return c, true
}

// mac returns the base64url HMAC of signed.
func (t *Tokens) mac(signed string) string {
	m := hmac.New(sha256.New, t.key)
	m.Write([]byte(signed))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
