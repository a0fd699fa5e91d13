package workspace

import "testing"

// TestOnlyVanished: du's complaints are taken as harmless only when every
// one is about a file removed during the walk.
func TestOnlyVanished(t *testing.T) {
	tests := []struct {
		name, stderr string
		want         bool
	}{
		{"nothing", "", false},
		{"one vanished file", "du: cannot access '/w/home/.npm/_cacache/tmp/1a2b': No such file or directory\n", true},
		{"a vanished directory", "du: cannot read directory '/w/project/node_modules/.cache/x': No such file or directory\n" +
			"du: cannot access '/w/home/.npm/_cacache/tmp/3c4d': No such file or directory\n", true},
		{"an unreadable directory", "du: cannot read directory '/w/project/hidden': Permission denied\n", false},
		{"one unreadable among vanished", "du: cannot access '/w/home/.npm/_cacache/tmp/1a2b': No such file or directory\n" +
			"du: cannot read directory '/w/project/hidden': Permission denied\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := onlyVanished(tt.stderr); got != tt.want {
				t.Errorf("onlyVanished(%q) = %v, want %v", tt.stderr, got, tt.want)
			}
		})
	}
}
