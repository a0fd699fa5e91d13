package redact

import "testing"

func TestRedactorString(t *testing.T) {
	r := New("sk-ant-secret-123", "ghp_token_456", "", "abc")
	tests := []struct {
		name, in, want string
	}{
		{"api key", "key=sk-ant-secret-123 end", "key=[REDACTED] end"},
		{"token twice", "ghp_token_456/ghp_token_456", "[REDACTED]/[REDACTED]"},
		{"short values ignored", "abc is fine", "abc is fine"},
		{"url credentials", "fatal: https://x-access-token:zzz@github.com/a/b.git", "fatal: https://[REDACTED]@github.com/a/b.git"},
		{"scp form untouched", "git@github.com:a/b.git", "git@github.com:a/b.git"},
		{"nothing", "plain text", "plain text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := r.String(tt.in); got != tt.want {
				t.Errorf("String(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestNilRedactor(t *testing.T) {
	var r *Redactor
	if got := r.String("https://u:p@h/x"); got != "https://[REDACTED]@h/x" {
		t.Errorf("nil redactor: got %q", got)
	}
	if r.Contains("anything") {
		t.Error("nil redactor contains nothing")
	}
	if got := r.With("secret-value").String("a secret-value"); got != "a [REDACTED]" {
		t.Errorf("With on nil: got %q", got)
	}
}

func TestLongestFirst(t *testing.T) {
	r := New("secret", "secret-longer")
	if got := r.String("secret-longer"); got != Mask {
		t.Errorf("got %q, want one mask", got)
	}
}
