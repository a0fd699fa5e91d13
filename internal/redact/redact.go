// Package redact removes secrets from text before it is logged, returned in
// an error or sent in a response.
package redact

import (
	"regexp"
	"sort"
	"strings"
)

// Mask is what a secret is replaced with.
const Mask = "[REDACTED]"

// minSecretLen is the shortest value treated as a secret: shorter values
// (an empty variable, a one-letter placeholder) would mask ordinary text.
const minSecretLen = 6

// userinfo matches the credentials part of a URL ("scheme://user:pass@").
var userinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@`)

// Redactor replaces known secret values, and credentials embedded in URLs,
// with Mask. A nil *Redactor only masks URL credentials. It is immutable and
// safe for concurrent use.
type Redactor struct {
	secrets []string
}

// New returns a Redactor for the given secret values. Values shorter than six
// bytes are ignored.
func New(secrets ...string) *Redactor {
	r := &Redactor{}
	for _, s := range secrets {
		if len(s) >= minSecretLen {
			r.secrets = append(r.secrets, s)
		}
	}
	// Longest first, so a secret that contains another is masked whole.
	sort.Slice(r.secrets, func(i, j int) bool { return len(r.secrets[i]) > len(r.secrets[j]) })
	return r
}

// With returns a new Redactor that also masks the given values.
func (r *Redactor) With(secrets ...string) *Redactor {
	var all []string
	if r != nil {
		all = append(all, r.secrets...)
	}
	return New(append(all, secrets...)...)
}

// String returns s with every secret and every URL's user information masked.
func (r *Redactor) String(s string) string {
	if r != nil {
		for _, secret := range r.secrets {
			if strings.Contains(s, secret) {
				s = strings.ReplaceAll(s, secret, Mask)
			}
		}
	}
	return userinfo.ReplaceAllString(s, "${1}"+Mask+"@")
}

// Contains reports whether s holds any of the secrets.
func (r *Redactor) Contains(s string) bool {
	if r == nil {
		return false
	}
	for _, secret := range r.secrets {
		if strings.Contains(s, secret) {
			return true
		}
	}
	return false
}
