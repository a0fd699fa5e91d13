// Package redact removes secrets from text before it is logged, returned in
// an error or sent in a response.
package redact

import (
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Mask is what a secret is replaced with.
const Mask = "[REDACTED]"

// minSecretLen is the shortest value treated as a secret: shorter values
// (an empty variable, a one-letter placeholder) would mask ordinary text.
const minSecretLen = 6

// userinfo matches the credentials part of a URL ("scheme://user:pass@").
var userinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@`)

// Redactor replaces known secret values, and credentials embedded in URLs,
// with Mask. A nil *Redactor only masks URL credentials. It is safe for
// concurrent use; Add teaches it new values (a rotated secret), and it never
// forgets one.
type Redactor struct {
	mu      sync.RWMutex
	secrets []string // longest first, so a secret that contains another is masked whole
}

// New returns a Redactor for the given secret values. Values shorter than six
// bytes are ignored.
func New(secrets ...string) *Redactor {
	r := &Redactor{}
	r.Add(secrets...)
	return r
}

// With returns a new Redactor that masks what r masks and the given values.
func (r *Redactor) With(secrets ...string) *Redactor {
	return New(append(r.values(), secrets...)...)
}

// Add makes r mask the given values too.
func (r *Redactor) Add(secrets ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range secrets {
		if len(s) >= minSecretLen && !slices.Contains(r.secrets, s) {
			r.secrets = append(r.secrets, s)
		}
	}
	sort.Slice(r.secrets, func(i, j int) bool { return len(r.secrets[i]) > len(r.secrets[j]) })
}

func (r *Redactor) values() []string {
	if r == nil {
		return nil
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Clone(r.secrets)
}

// String returns s with every secret and every URL's user information masked.
func (r *Redactor) String(s string) string {
	if r != nil {
		r.mu.RLock()
		for _, secret := range r.secrets {
			if strings.Contains(s, secret) {
				s = strings.ReplaceAll(s, secret, Mask)
			}
		}
		r.mu.RUnlock()
	}
	return userinfo.ReplaceAllString(s, "${1}"+Mask+"@")
}

// Contains reports whether s holds any of the secrets.
func (r *Redactor) Contains(s string) bool {
	for _, secret := range r.values() {
		if strings.Contains(s, secret) {
			return true
		}
	}
	return false
}
