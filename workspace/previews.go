package workspace

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/webordinary/claude-code-astro/internal/atomicfile"
	"github.com/webordinary/claude-code-astro/internal/ident"
)

// ErrNoPreview reports a preview id that names no user's workspace with a
// project on this root.
var ErrNoPreview = errors.New("no workspace for this preview")

// previewsDir is the index of the users by preview id (Root/.previews,
// the worker's): one file per user, named by Config.PreviewID.
const previewsDir = ".previews"

// previewEntry is an index file's content: whose preview it is.
type previewEntry struct {
	ClientID string `json:"clientId"`
	UserID   string `json:"userId"`
}

// UserOfPreview returns the user whose preview id (Config.PreviewID) is
// id, read from the root's index: one file read, however many users the
// root holds. It fails with ErrNoPreview when the index names no user for
// id, or when that user has no project.
func (w *Workspaces) UserOfPreview(id string) (*User, error) {
	if w.cfg.PreviewID == nil {
		return nil, errors.New("find a preview's user: the workspaces keep no preview index (Config.PreviewID)")
	}
	if id == "" || id != filepath.Base(id) || strings.HasPrefix(id, ".") {
		return nil, fmt.Errorf("find preview %q: %w", id, ErrNoPreview)
	}
	b, err := os.ReadFile(filepath.Join(w.root, previewsDir, id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("find preview %s: %w", id, ErrNoPreview)
	}
	if err != nil {
		return nil, fmt.Errorf("find preview %s: %w", id, err)
	}
	var e previewEntry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("find preview %s: read the index: %w", id, err)
	}
	if w.cfg.PreviewID(e.ClientID, e.UserID) != id {
		// Not written by indexPreview for this id: trust nothing in it.
		return nil, fmt.Errorf("find preview %s: the index names %s/%s, whose preview is another: %w", id, e.ClientID, e.UserID, ErrNoPreview)
	}
	u, err := w.User(e.ClientID, e.UserID)
	if err != nil {
		return nil, fmt.Errorf("find preview %s: %w", id, err)
	}
	if _, err := os.Lstat(u.ProjectDir); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("find preview %s: %w", id, ErrNoPreview)
	} else if err != nil {
		return nil, fmt.Errorf("find preview %s: %w", id, err)
	}
	return u, nil
}

// indexPreview records u under its preview id, when the workspaces keep a
// preview index; an entry already right is left alone.
func (w *Workspaces) indexPreview(clientID, userID string) error {
	if w.cfg.PreviewID == nil {
		return nil
	}
	dir := filepath.Join(w.root, previewsDir)
	if err := mkdirMode(dir, 0o700); err != nil {
		return fmt.Errorf("index the preview: %w", err)
	}
	id := w.cfg.PreviewID(clientID, userID)
	if id == "" || id != filepath.Base(id) || strings.HasPrefix(id, ".") {
		return fmt.Errorf("index the preview: Config.PreviewID gave %q, which cannot name a file", id)
	}
	b, err := json.Marshal(previewEntry{ClientID: clientID, UserID: userID})
	if err != nil {
		return fmt.Errorf("index the preview: %w", err)
	}
	path := filepath.Join(dir, id)
	if old, err := os.ReadFile(path); err == nil && string(old) == string(b) {
		return nil
	}
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return fmt.Errorf("index the preview: %w", err)
	}
	return nil
}

// indexedMark, in the index's directory, says a walk of the root indexed
// every workspace made before the index was kept: Open walks the root only
// while it is missing, once per root, not at every start (a root on EFS
// with thousands of users would cost a worker's start seconds).
const indexedMark = ".complete"

// indexExisting indexes the users already on the root that have a
// project: workspaces made before the index was kept. The first Open of a
// root with Config.PreviewID walks it and marks the walk done; jobs keep
// the index after that.
func (w *Workspaces) indexExisting() error {
	if w.cfg.PreviewID == nil {
		return nil
	}
	mark := filepath.Join(w.root, previewsDir, indexedMark)
	if _, err := os.Stat(mark); err == nil {
		return nil
	}
	if err := w.walkIndex(); err != nil {
		return err
	}
	if err := mkdirMode(filepath.Dir(mark), 0o700); err != nil {
		return fmt.Errorf("index the previews: %w", err)
	}
	if err := atomicfile.Write(mark, nil, 0o600); err != nil {
		return fmt.Errorf("index the previews: mark the walk done: %w", err)
	}
	return nil
}

// walkIndex indexes every user of the root that has a project.
func (w *Workspaces) walkIndex() error {
	clients, err := os.ReadDir(w.root)
	if err != nil {
		return fmt.Errorf("index the previews: %w", err)
	}
	for _, c := range clients {
		if !c.IsDir() || !ident.ValidID(c.Name()) {
			continue
		}
		users, err := os.ReadDir(filepath.Join(w.root, c.Name()))
		if err != nil {
			return fmt.Errorf("index the previews: %w", err)
		}
		for _, u := range users {
			if !u.IsDir() || !ident.ValidID(u.Name()) {
				continue
			}
			if _, err := os.Lstat(filepath.Join(w.root, c.Name(), u.Name(), "project")); err != nil {
				continue // no project: nothing to preview yet; its first job indexes it
			}
			if err := w.indexPreview(c.Name(), u.Name()); err != nil {
				return err
			}
		}
	}
	return nil
}
