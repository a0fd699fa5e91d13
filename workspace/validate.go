package workspace

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"
)

var (
	idPattern    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	jobIDPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
	// scpPattern is git's scp-like syntax, user@host:path.
	scpPattern = regexp.MustCompile(`^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^:]`)
	// branchPattern is a conservative branch name for baseBranch.
	branchPattern = regexp.MustCompile(`^[A-Za-z0-9._][A-Za-z0-9._/-]{0,199}$`)
)

// ValidateID checks a client, user or thread id: 1-64 characters of
// [A-Za-z0-9_-], not starting with - or _.
func ValidateID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("%w: want 1-64 characters of [A-Za-z0-9_-], not starting with - or _", ErrInvalidID)
	}
	return nil
}

// ValidateJobID checks a job id: 1-128 characters of [A-Za-z0-9._:-].
func ValidateJobID(id string) error {
	if !jobIDPattern.MatchString(id) {
		return fmt.Errorf("%w: job id wants 1-128 characters of [A-Za-z0-9._:-]", ErrInvalidID)
	}
	return nil
}

// validateBranchName checks a base branch name given by a job.
func validateBranchName(b string) error {
	if !branchPattern.MatchString(b) || strings.Contains(b, "..") || strings.Contains(b, "//") ||
		strings.HasSuffix(b, "/") || strings.HasSuffix(b, ".lock") || strings.HasSuffix(b, ".") {
		return fmt.Errorf("%w: base branch name", ErrInvalidID)
	}
	return nil
}

// ValidateRepoURL accepts https://, ssh://, scp-like user@host:path, and for
// local use file://, an absolute path or http:// to a loopback host. A URL
// with credentials (a password, or any user information on http(s)) is
// refused. The URL never appears in the error.
func ValidateRepoURL(raw string) error {
	if raw == "" {
		return fmt.Errorf("%w: empty", ErrInvalidRepoURL)
	}
	if strings.HasPrefix(raw, "-") || strings.ContainsFunc(raw, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("%w: bad characters", ErrInvalidRepoURL)
	}
	if strings.HasPrefix(raw, "/") {
		return nil
	}
	if !strings.Contains(raw, "://") {
		if scpPattern.MatchString(raw) {
			return nil
		}
		return fmt.Errorf("%w: unsupported form", ErrInvalidRepoURL)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: unparseable", ErrInvalidRepoURL)
	}
	if _, hasPass := u.User.Password(); hasPass {
		return fmt.Errorf("%w: credentials in url", ErrInvalidRepoURL)
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		if u.User != nil {
			return fmt.Errorf("%w: credentials in url", ErrInvalidRepoURL)
		}
		if u.Host == "" {
			return fmt.Errorf("%w: no host", ErrInvalidRepoURL)
		}
	case "ssh":
		if u.Host == "" {
			return fmt.Errorf("%w: no host", ErrInvalidRepoURL)
		}
	case "http":
		if u.User != nil {
			return fmt.Errorf("%w: credentials in url", ErrInvalidRepoURL)
		}
		if !isLoopback(u.Hostname()) {
			return fmt.Errorf("%w: http only to a loopback host", ErrInvalidRepoURL)
		}
	case "file":
		if u.User != nil || (u.Host != "" && u.Host != "localhost") || !strings.HasPrefix(u.Path, "/") {
			return fmt.Errorf("%w: file url wants an absolute local path", ErrInvalidRepoURL)
		}
	default:
		return fmt.Errorf("%w: scheme not allowed", ErrInvalidRepoURL)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
