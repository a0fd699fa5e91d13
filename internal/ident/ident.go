// Package ident holds the one set of rules for what a job may name: client,
// user and thread ids, job ids, branch names and repository URLs, and which
// hosts count as loopback. The job decoder, the workspace, the configuration
// and the gateways all check with these functions, so a value one of them
// accepts is never refused by another.
//
// Ids become path segments and branch names, so the rules are narrow: no
// "..", "/", spaces or NUL can get through. Errors never echo the value
// checked: a repository URL may hold a credential.
package ident

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
)

var (
	// ErrInvalidID reports a client, user, thread or job id, or a branch
	// name, outside the allowed set.
	ErrInvalidID = errors.New("invalid id")

	// ErrInvalidRepoURL reports a repository URL of a refused form. The
	// URL itself is never part of the message.
	ErrInvalidRepoURL = errors.New("invalid repository url")
)

// Rules, as CONTRACT.md section 1 states them.
const (
	// IDRule describes a valid client, user or thread id.
	IDRule = "1-64 characters of A-Z a-z 0-9 _ -, not starting with - or _"
	// JobIDRule describes a valid job id.
	JobIDRule = "1-128 characters of A-Z a-z 0-9 . _ : -, not . or .."
)

var (
	idPattern    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	jobIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
	// scpPattern is git's scp-like syntax, user@host:path; the path may
	// not start with ':' (git would read "host::x" as a transport helper).
	scpPattern = regexp.MustCompile(`^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^:\s][^\s]*$`)
)

// ValidID reports whether s is a valid client, user or thread id (IDRule).
func ValidID(s string) bool { return idPattern.MatchString(s) }

// ValidJobID reports whether s is a valid job id (JobIDRule).
func ValidJobID(s string) bool { return jobIDPattern.MatchString(s) && strings.Trim(s, ".") != "" }

// CheckID returns an error wrapping ErrInvalidID unless s is a valid client,
// user or thread id.
func CheckID(s string) error {
	if !ValidID(s) {
		return fmt.Errorf("%w: want %s", ErrInvalidID, IDRule)
	}
	return nil
}

// CheckJobID returns an error wrapping ErrInvalidID unless s is a valid job id.
func CheckJobID(s string) error {
	if !ValidJobID(s) {
		return fmt.Errorf("%w: job id wants %s", ErrInvalidID, JobIDRule)
	}
	return nil
}

// ValidBranch reports whether b is a branch name a job may give (a base
// branch): a conservative subset of git's ref-name rules, at most 200
// characters of A-Z a-z 0-9 . _ - /, no component that git would refuse.
func ValidBranch(b string) bool {
	if b == "" || len(b) > 200 || strings.HasPrefix(b, "-") || strings.HasPrefix(b, "/") || strings.HasSuffix(b, "/") ||
		strings.HasSuffix(b, ".") || strings.HasSuffix(b, ".lock") || strings.Contains(b, "..") || strings.Contains(b, "//") ||
		strings.Contains(b, "/.") || strings.HasPrefix(b, ".") {
		return false
	}
	for _, r := range b {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-/", r)) {
			return false
		}
	}
	return true
}

// RepoURLError says why CheckRepoURL refused a URL, without the URL. It
// wraps ErrInvalidRepoURL.
type RepoURLError struct {
	// Reason says what is wrong and how to fix it.
	Reason string
}

func (e *RepoURLError) Error() string { return ErrInvalidRepoURL.Error() + ": " + e.Reason }

// Unwrap returns ErrInvalidRepoURL.
func (e *RepoURLError) Unwrap() error { return ErrInvalidRepoURL }

// CheckRepoURL returns nil for a repository address a job or REPO_URL may
// name: https://, ssh://, scp-like user@host:path, and for local use
// file:// with an absolute path, an absolute path, or http:// to a loopback
// host. A URL with credentials is refused. The error is a *RepoURLError.
func CheckRepoURL(s string) error {
	bad := func(reason string) error { return &RepoURLError{Reason: reason} }
	switch {
	case s == "":
		return bad("empty")
	case strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return bad("must not contain spaces or control characters")
	case strings.HasPrefix(s, "-"):
		return bad("must not start with '-'")
	case strings.HasPrefix(s, "/"):
		return nil
	case !strings.Contains(s, "://"):
		if scpPattern.MatchString(s) {
			return nil
		}
		return bad("must be https://, ssh://, git@host:path, file:// or an absolute path")
	}
	u, err := url.Parse(s)
	if err != nil {
		return bad("is not a valid URL")
	}
	const noCredentials = "must not contain credentials: give the token as GITHUB_TOKEN"
	if _, hasPassword := u.User.Password(); hasPassword {
		return bad(noCredentials)
	}
	switch strings.ToLower(u.Scheme) {
	case "https", "ssh":
		if u.Host == "" {
			return bad("has no host")
		}
		if u.User != nil && !strings.EqualFold(u.Scheme, "ssh") {
			return bad(noCredentials)
		}
	case "http":
		if u.User != nil {
			return bad(noCredentials)
		}
		if !LoopbackHost(u.Hostname()) {
			return bad("http:// is allowed only to a loopback host; use https://")
		}
	case "file":
		if u.User != nil || (u.Host != "" && u.Host != "localhost") || !strings.HasPrefix(u.Path, "/") {
			return bad("a file:// URL must name an absolute local path")
		}
	default:
		return bad("must be https://, ssh://, git@host:path, file:// or an absolute path")
	}
	return nil
}

// LoopbackHost reports whether host (a name or an IP address, without port
// or brackets) is this machine's loopback: "localhost" or an address in
// 127.0.0.0/8 or ::1.
func LoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
