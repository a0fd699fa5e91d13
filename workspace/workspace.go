// Package workspace manages the on-disk workspaces of the worker: one
// directory per client and user under a root, holding one git repository
// (every thread a branch thread-{threadId}), the agent's thread records and
// a metadata file.
//
// Layout:
//
//	Root/{clientId}/{userId}/
//	    project/          the git repository, checked out on the active thread
//	    .claude/threads/  {threadId}.json thread records
//	    metadata.json     created, repoUrl, lastAccessed, lockfile hash
//
// Every git and installer call is an exec with an argument list and an
// allowlisted environment; the git token reaches git only through a
// credential helper in that one child's environment.
package workspace

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/webordinary/claude-code-astro/internal/redact"
)

// Default commit identity.
const (
	DefaultAuthorName  = "Claude Code"
	DefaultAuthorEmail = "claude@webordinary.com"
)

// Config configures Workspaces. Only Root is required.
type Config struct {
	// Root is the directory holding every client's workspaces. It is
	// created when missing.
	Root string
	// Token is the git token for https remotes. Empty means none.
	Token string
	// TokenHosts are the hosts (host or host:port) Token is sent to, over
	// https (or http to a loopback host). Empty means DefaultTokenHosts.
	TokenHosts []string
	// AuthorName and AuthorEmail are the commit author and committer.
	// Empty means DefaultAuthorName and DefaultAuthorEmail.
	AuthorName, AuthorEmail string
	// Home is the HOME given to git and the package manager: never the
	// machine user's home. Empty means Root/.home (ids cannot start with a
	// dot, so it never collides with a client).
	Home string
	// PATH is the search path given to children and used to find git and
	// the package managers. Empty means this process's PATH.
	PATH string
	// NpmCacheDir is the package manager cache. Empty means
	// {user dir}/.npm-cache.
	NpmCacheDir string
	// Redactor masks secrets in captured output. Nil means one masking
	// Token only.
	Redactor *redact.Redactor
	// Logger receives operational logs. Nil discards them.
	Logger *slog.Logger
}

// Workspaces gives access to the user workspaces under one root. It holds
// no mutable state and is safe for concurrent use; the caller serialises
// the operations on any one user.
type Workspaces struct {
	cfg      Config
	root     string // Root with symlinks resolved
	git      string // path of the git executable
	redactor *redact.Redactor
	log      *slog.Logger
}

// Open checks cfg, creates Root and Home when missing and finds git.
func Open(cfg Config) (*Workspaces, error) {
	if cfg.Root == "" {
		return nil, errors.New("open workspaces: empty root")
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("open workspaces: %w", err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("open workspaces: create root: %w", err)
	}
	if root, err = filepath.EvalSymlinks(root); err != nil {
		return nil, fmt.Errorf("open workspaces: resolve root: %w", err)
	}
	cfg.Root = root
	if cfg.Home == "" {
		cfg.Home = filepath.Join(root, ".home")
	}
	if err := os.MkdirAll(cfg.Home, 0o700); err != nil {
		return nil, fmt.Errorf("open workspaces: create home: %w", err)
	}
	if cfg.PATH == "" {
		cfg.PATH = os.Getenv("PATH")
	}
	if cfg.AuthorName == "" {
		cfg.AuthorName = DefaultAuthorName
	}
	if cfg.AuthorEmail == "" {
		cfg.AuthorEmail = DefaultAuthorEmail
	}
	git, err := lookPath("git", cfg.PATH)
	if err != nil {
		return nil, fmt.Errorf("open workspaces: %w (install git)", err)
	}
	red := cfg.Redactor
	if red == nil {
		red = redact.New()
	}
	red = red.With(cfg.Token)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Workspaces{cfg: cfg, root: root, git: git, redactor: red, log: log}, nil
}

// Root returns the workspace root, symlinks resolved.
func (w *Workspaces) Root() string { return w.root }

// User is the workspace of one client's user. Creating one touches nothing
// on disk. A User is not safe for concurrent use: the caller runs one
// operation per user at a time.
type User struct {
	ws       *Workspaces
	ClientID string
	UserID   string
	// Dir is Root/{clientId}/{userId}.
	Dir string
	// ProjectDir is Dir/project, the git repository.
	ProjectDir string
	// ClaudeDir is Dir/.claude: agent sessions and thread records.
	ClaudeDir string
	// ThreadsDir is ClaudeDir/threads.
	ThreadsDir string
	// MetadataPath is Dir/metadata.json.
	MetadataPath string
	log          *slog.Logger
}

// User validates the ids and returns the user's workspace paths. It fails
// with ErrInvalidID or ErrOutsideRoot before anything touches the disk
// beyond reading which directories already exist.
func (w *Workspaces) User(clientID, userID string) (*User, error) {
	if err := ValidateID(clientID); err != nil {
		return nil, fmt.Errorf("client id: %w", err)
	}
	if err := ValidateID(userID); err != nil {
		return nil, fmt.Errorf("user id: %w", err)
	}
	dir := filepath.Join(w.root, clientID, userID)
	u := &User{
		ws:           w,
		ClientID:     clientID,
		UserID:       userID,
		Dir:          dir,
		ProjectDir:   filepath.Join(dir, "project"),
		ClaudeDir:    filepath.Join(dir, ".claude"),
		ThreadsDir:   filepath.Join(dir, ".claude", "threads"),
		MetadataPath: filepath.Join(dir, "metadata.json"),
		log:          w.log.With("client", clientID, "user", userID),
	}
	if err := u.checkPaths(); err != nil {
		return nil, err
	}
	return u, nil
}

// checkPaths verifies that the user's directories, as far as they exist,
// resolve under the root.
func (u *User) checkPaths() error {
	for _, p := range []string{u.Dir, u.ProjectDir, u.ClaudeDir, u.ThreadsDir} {
		if err := u.ws.contained(p); err != nil {
			return err
		}
	}
	return nil
}

// contained reports ErrOutsideRoot when the longest existing prefix of p,
// symlinks resolved, is not the root or below it.
func (w *Workspaces) contained(p string) error {
	if !within(w.root, p) {
		return fmt.Errorf("check %s: %w", filepath.Base(p), ErrOutsideRoot)
	}
	existing := p
	for {
		_, err := os.Lstat(existing)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("check %s: %w", filepath.Base(p), err)
		}
		parent := filepath.Dir(existing)
		if parent == existing {
			break
		}
		existing = parent
	}
	real, err := filepath.EvalSymlinks(existing)
	if err != nil {
		// A dangling symlink: refuse rather than follow it later.
		return fmt.Errorf("check %s: %w", filepath.Base(p), ErrOutsideRoot)
	}
	if !within(w.root, real) {
		return fmt.Errorf("check %s: %w", filepath.Base(p), ErrOutsideRoot)
	}
	return nil
}

// within reports whether p is root or below it (both clean and absolute).
func within(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	if err != nil {
		return false
	}
	return rel == "." || (rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel))
}

// Branch returns the git branch of a thread: thread-{threadId}.
func Branch(threadID string) string { return "thread-" + threadID }

// lookPath finds an executable named file in the directories of pathList.
func lookPath(file, pathList string) (string, error) {
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, file)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("find %s: not in PATH", file)
}

// tokenHosts returns the hosts the git token may go to.
func (w *Workspaces) tokenHosts() []string {
	if len(w.cfg.TokenHosts) > 0 {
		return w.cfg.TokenHosts
	}
	return DefaultTokenHosts
}

// notInRoot refuses a local repository (an absolute path or file:// URL)
// inside the workspace root, symlinks resolved: a job must not clone another
// user's workspace, unpushed work and all.
func (w *Workspaces) notInRoot(repoURL string) error {
	path := repoURL
	if rest, ok := strings.CutPrefix(repoURL, "file://"); ok {
		path = strings.TrimPrefix(rest, "localhost")
	}
	if !strings.HasPrefix(path, "/") {
		return nil // a network URL
	}
	path = filepath.Clean(path)
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	root := w.root
	if real, err := filepath.EvalSymlinks(root); err == nil {
		root = real
	}
	if within(root, path) {
		return fmt.Errorf("%w: a local repository inside the workspace root", ErrInvalidRepoURL)
	}
	return nil
}
