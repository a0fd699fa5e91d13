package ident

import (
	"errors"
	"strings"
	"testing"
)

func TestIDs(t *testing.T) {
	tests := []struct {
		id          string
		valid, anID bool // a valid client/user/thread id; a valid job id
	}{
		{"acme", true, true},
		{"a", true, true},
		{strings.Repeat("a", 64), true, true},
		{strings.Repeat("a", 65), false, true},
		{strings.Repeat("a", 128), false, true},
		{strings.Repeat("a", 129), false, false},
		{"user_1-x", true, true},
		{"-x", false, true},
		{"_x", false, true},
		{"job:1.2", false, true},
		{".", false, false},
		{"..", false, false},
		{"...", false, false},
		{"a/b", false, false},
		{"a b", false, false},
		{"", false, false},
		{"a\x00", false, false},
		{"é", false, false},
	}
	for _, tt := range tests {
		if got := ValidID(tt.id); got != tt.valid {
			t.Errorf("ValidID(%q) = %v, want %v", tt.id, got, tt.valid)
		}
		if err := CheckID(tt.id); (err == nil) != tt.valid || (err != nil && !errors.Is(err, ErrInvalidID)) {
			t.Errorf("CheckID(%q) = %v, want ok=%v", tt.id, err, tt.valid)
		}
		if got := ValidJobID(tt.id); got != tt.anID {
			t.Errorf("ValidJobID(%q) = %v, want %v", tt.id, got, tt.anID)
		}
		if err := CheckJobID(tt.id); (err == nil) != tt.anID || (err != nil && !errors.Is(err, ErrInvalidID)) {
			t.Errorf("CheckJobID(%q) = %v, want ok=%v", tt.id, err, tt.anID)
		}
	}
}

func TestValidBranch(t *testing.T) {
	tests := []struct {
		branch string
		ok     bool
	}{
		{"main", true},
		{"release/1.2", true},
		{"feature_x-y", true},
		{"", false},
		{"-main", false},
		{"/main", false},
		{"main/", false},
		{"a..b", false},
		{"a//b", false},
		{"main.lock", false},
		{"main.", false},
		{".hidden", false},
		{"a/.b", false},
		{"a@{1}", false},
		{"a b", false},
		{"a~1", false},
		{"a^", false},
		{"a:b", false},
		{strings.Repeat("b", 200), true},
		{strings.Repeat("b", 201), false},
	}
	for _, tt := range tests {
		if got := ValidBranch(tt.branch); got != tt.ok {
			t.Errorf("ValidBranch(%q) = %v, want %v", tt.branch, got, tt.ok)
		}
	}
}

func TestCheckRepoURL(t *testing.T) {
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://github.com/acme/site.git", true},
		{"ssh://git@github.com/acme/site.git", true},
		{"git@github.com:acme/site.git", true},
		{"file:///srv/git/site.git", true},
		{"file://localhost/srv/git/site.git", true},
		{"/srv/git/site.git", true},
		{"http://127.0.0.1:8080/site.git", true},
		{"http://localhost/site.git", true},
		{"http://[::1]:9000/site.git", true},
		{"", false},
		{"https://user:secret-pass@github.com/acme/site.git", false},
		{"https://ghp_secret-pass@github.com/acme/site.git", false},
		{"ssh://git:secret-pass@github.com/acme/site.git", false},
		{"http://github.com/acme/site.git", false},
		{"http://10.0.0.1/site.git", false},
		{"git://github.com/acme/site.git", false},
		{"ext::sh -c touch% /tmp/pwned", false},
		{"git@host::x", false},
		{"file:relative", false},
		{"file:///", true},
		{"-uhello", false},
		{"--upload-pack=touch /tmp/x", false},
		{"relative/path", false},
		{"file://evil.example/srv/site.git", false},
		{"https://github.com/a b", false},
		{"https:///nohost", false},
	}
	for _, tt := range tests {
		err := CheckRepoURL(tt.url)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrInvalidRepoURL)) {
			t.Errorf("CheckRepoURL(%q) = %v, want ok=%v", tt.url, err, tt.ok)
		}
		if err != nil && strings.Contains(err.Error(), "secret-pass") {
			t.Errorf("CheckRepoURL(%q) echoes the credential: %v", tt.url, err)
		}
	}
}

func TestLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost": true, "LOCALHOST": true, "127.0.0.1": true, "127.8.9.10": true, "::1": true,
		"10.0.0.1": false, "0.0.0.0": false, "example.com": false, "localhost.example.com": false, "": false, "[::1]": false,
	} {
		if got := LoopbackHost(host); got != want {
			t.Errorf("LoopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestParseUIDRange(t *testing.T) {
	tests := []struct {
		in   string
		want UIDRange
		ok   bool
	}{
		{"100000-1099999", UIDRange{Min: 100000, Max: 1099999}, true},
		{" 2000 - 2099 ", UIDRange{Min: 2000, Max: 2099}, true},
		{"999-5000", UIDRange{}, false},        // system accounts
		{"2000-2098", UIDRange{}, false},       // fewer than 100
		{"2000-2147483647", UIDRange{}, false}, // the 2^31 limit
		{"2000", UIDRange{}, false},
		{"a-b", UIDRange{}, false},
	}
	for _, tt := range tests {
		got, err := ParseUIDRange(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("ParseUIDRange(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
