package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReplacesTheFileWholeAndLeavesNoTemporary(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	for _, content := range []string{"first", "second, longer than the first"} {
		if err := Write(path, []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Fatalf("after writing %q: %q, %v", content, got, err)
		}
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, %v; want 0640", fi.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("the directory holds %d entries, want only the file: %v", len(entries), entries)
	}
}

func TestWriteFailsInAMissingDirectory(t *testing.T) {
	if err := Write(filepath.Join(t.TempDir(), "missing", "f"), []byte("x"), 0o600); err == nil {
		t.Fatal("Write into a missing directory succeeded")
	}
}

// TestWriteKeepsTheOldFileWhenTheRenameFails: a target that cannot be
// replaced (a directory) keeps what it was, and no temporary is left.
func TestWriteKeepsTheOldFileWhenTheRenameFails(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "busy")
	if err := os.MkdirAll(filepath.Join(target, "inside"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Write(target, []byte("x"), 0o600); err == nil {
		t.Fatal("Write over a non-empty directory succeeded")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("the directory holds %d entries after a failed write, want 1: %v", len(entries), entries)
	}
}

// TestCreateOnlyWhereNothingIs: Create makes a missing file whole, and
// leaves one that exists as it is; no temporary is left either way.
func TestCreateOnlyWhereNothingIs(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "record.json")
	for _, tc := range []struct {
		content     string
		wantCreated bool
		want        string
	}{
		{"first", true, "first"},
		{"second", false, "first"},
	} {
		created, err := Create(path, []byte(tc.content), 0o600)
		if err != nil || created != tc.wantCreated {
			t.Fatalf("Create(%q) = %v, %v; want %v", tc.content, created, err, tc.wantCreated)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != tc.want {
			t.Fatalf("after Create(%q): %q, %v; want %q", tc.content, got, err, tc.want)
		}
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v; want 0600", fi.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("the directory holds %d entries, want only the file: %v", len(entries), entries)
	}
}
