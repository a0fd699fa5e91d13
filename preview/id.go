package preview

import (
	"crypto/sha256"
	"encoding/base32"
	"regexp"
	"strings"
)

// idPattern is a DNS label of lower-case letters, digits and inner hyphens.
var idPattern = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$`)

// ID returns the preview id of clientID/userID: a DNS label (at most 63 of
// [a-z0-9-]) that names the user's preview host, {preview} in
// PREVIEW_BASE_URL. It is stable, readable (the ids, lower-cased, with what
// a label cannot hold turned into hyphens) and different for every
// clientID/userID: a hash of the exact ids ends it, so ids that differ only
// in case or in "_" against "-" get different previews.
func ID(clientID, userID string) string {
	sum := sha256.Sum256([]byte(clientID + "/" + userID))
	hash := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:10]))
	return slug(clientID, 20) + "-" + slug(userID, 20) + "-" + hash
}

// ValidID reports whether id can be a preview id.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// slug lower-cases s, turns every run of other characters than [a-z0-9]
// into one hyphen, and keeps at most n characters, no hyphen at either end.
func slug(s string, n int) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	out := b.String()
	if len(out) > n {
		out = out[:n]
	}
	out = strings.Trim(out, "-")
	if out == "" {
		return "x"
	}
	return out
}
