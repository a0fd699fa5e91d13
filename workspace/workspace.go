// Package workspace manages the on-disk workspaces of the worker: one
// directory per client and user under a root, holding one git repository
// (every thread a branch thread-{threadId}), the agent's thread records and
// a metadata file.
//
// Layout, and who owns what (the worker is root; tenant is the user's own
// uid from package sandbox):
//
//	Root/                  worker 0711 (tenants may pass through, not list)
//	  .previews/           worker 0700: {previewId} names its user (Config.PreviewID)
//	  {clientId}/          worker 0711
//	    {userId}/          worker, group tenant, 0710
//	      metadata.json    worker 0600: created, repoUrl (the one of the first init), lockfile hash
//	      .lock            worker 0600: the flock one job at a time holds
//	      .jobs/           worker 0700: the job ledger
//	      .claude/         worker 0711
//	        threads/       worker 0700: {threadId}.json thread records
//	        agent/         tenant 0700: CLAUDE_CONFIG_DIR, the agent's sessions
//	      home/            tenant 0700: HOME of every tenant process (npm config and cache)
//	        tmp/           tenant 0700: TMPDIR
//	      project/         tenant 0700: the git repository, checked out on the active thread
//	      .damaged/        worker 0700: projects a repair replaced, kept
//
// Nothing that decides what a job does is the tenant's to change. Every
// command on the working tree (git, the package manager) runs as the tenant,
// with an argument list and an allowlisted environment; the worker never
// runs anything as itself inside a tenant's directory, and never reads or
// writes a file there itself.
package workspace

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/webordinary/claude-code-astro/internal/atomicfile"
	"github.com/webordinary/claude-code-astro/internal/config"
	"github.com/webordinary/claude-code-astro/internal/redact"
	"github.com/webordinary/claude-code-astro/internal/sandbox"
)

// Config configures Workspaces. Root and Sandbox are required.
type Config struct {
	// Root is the directory holding every client's workspaces. It is
	// created when missing.
	Root string
	// Sandbox gives each user a tenant uid; every command on a user's files
	// runs as that tenant.
	Sandbox *sandbox.Sandbox
	// AuthorName and AuthorEmail are the commit author and committer.
	// (GIT_AUTHOR_NAME, GIT_AUTHOR_EMAIL). Empty means config.Default()'s.
	AuthorName, AuthorEmail string
	// PATH is the search path given to children and used to find git and
	// the package managers. Empty means this process's PATH.
	PATH string
	// NpmSeedCache, when set, is a read-only npm cache that a tenant's own
	// cache starts from: copied, as the tenant, before its first install.
	// Tenants can read it and nobody but its owner can write it; the worker
	// never writes to it.
	NpmSeedCache string
	// PreviewID, when set, names each user's preview (preview.ID): the
	// workspaces then keep an index of the users by it, Root/.previews,
	// written as each job prepares its user (and at Open for the users
	// already there), so UserOfPreview finds a user without listing the
	// root. Nil keeps no index.
	PreviewID func(clientID, userID string) string
	// Redactor masks secrets in captured output. Nil masks URL credentials
	// only.
	Redactor *redact.Redactor
	// Logger receives operational logs. Nil discards them.
	Logger *slog.Logger
}

// Workspaces gives access to the user workspaces under one root. It holds
// no mutable state and is safe for concurrent use; the caller serialises
// the operations on any one user.
type Workspaces struct {
	cfg       Config
	root      string // Root with symlinks resolved
	git       string // path of the git executable
	exclude   string // the git excludes file every git command reads
	gitconfig string // the global git config of tenant git
	redactor  *redact.Redactor
	log       *slog.Logger
}

// excludesFile lists what no commit takes even when the site's .gitignore
// forgets it; every git command reads it (core.excludesFile).
const excludesFile = ".git-excludes"

// gitconfigFile is the global git config of every tenant git (the worker's,
// read-only to tenants): it trusts repositories of other owners, which is
// what a local repository (a path or file:// URL, the operator's) is to a
// tenant uid. git passes neither -c options nor GIT_CONFIG_COUNT to the
// git-upload-pack it starts on a local repository, but it does pass this.
const gitconfigFile = ".gitconfig-tenants"

// gitconfig is gitconfigFile's content.
const gitconfig = "[safe]\n\tdirectory = *\n"

// excludeLines are kept out of every commit.
var excludeLines = []string{"node_modules/", "node_modules", ".astro/"}

// Open checks cfg, creates Root when missing (mode 0711: tenants pass
// through to their own directories, nobody lists it), finds git and, with
// Config.PreviewID, indexes the previews of the users already there.
func Open(cfg Config) (*Workspaces, error) {
	if cfg.Root == "" {
		return nil, errors.New("open workspaces: empty root")
	}
	if cfg.Sandbox == nil {
		return nil, errors.New("open workspaces: no sandbox")
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("open workspaces: %w", err)
	}
	if err := os.MkdirAll(root, 0o711); err != nil {
		return nil, fmt.Errorf("open workspaces: create root: %w", err)
	}
	if root, err = filepath.EvalSymlinks(root); err != nil {
		return nil, fmt.Errorf("open workspaces: resolve root: %w", err)
	}
	cfg.Root = root
	if cfg.Sandbox.Privileged() {
		if err := os.Chmod(root, 0o711); err != nil {
			return nil, fmt.Errorf("open workspaces: %w", err)
		}
		if err := reachable(root); err != nil {
			return nil, fmt.Errorf("open workspaces: %w", err)
		}
	}
	exclude, global := filepath.Join(root, excludesFile), filepath.Join(root, gitconfigFile)
	for _, f := range []struct{ path, content string }{{exclude, strings.Join(excludeLines, "\n") + "\n"}, {global, gitconfig}} {
		if err := atomicfile.Write(f.path, []byte(f.content), 0o644); err != nil {
			return nil, fmt.Errorf("open workspaces: write %s: %w", f.path, err)
		}
	}
	if cfg.PATH == "" {
		cfg.PATH = os.Getenv("PATH")
	}
	if cfg.AuthorName == "" {
		cfg.AuthorName = config.Default().GitAuthorName
	}
	if cfg.AuthorEmail == "" {
		cfg.AuthorEmail = config.Default().GitAuthorEmail
	}
	git, err := lookPath("git", cfg.PATH)
	if err != nil {
		return nil, fmt.Errorf("open workspaces: %w (install git)", err)
	}
	red := cfg.Redactor
	if red == nil {
		red = redact.New()
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Workspaces{cfg: cfg, root: root, git: git, exclude: exclude, gitconfig: global, redactor: red, log: log}
	if err := w.indexExisting(); err != nil {
		return nil, fmt.Errorf("open workspaces: %w", err)
	}
	return w, nil
}

// reachable checks that tenant uids can pass through every directory above
// root (and root itself) to reach their own directories.
func reachable(root string) error {
	for d := root; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("tenant uids cannot pass through %s (mode %#o): WORKSPACE_PATH and the directories above it must be searchable by others (chmod o+x)", d, fi.Mode().Perm())
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
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
	// Tenant is the user's uid: every command on its files runs as it.
	Tenant *sandbox.Tenant
	// Dir is Root/{clientId}/{userId}.
	Dir string
	// ProjectDir is Dir/project, the git repository.
	ProjectDir string
	// ClaudeDir is Dir/.claude: thread records and the agent's sessions.
	ClaudeDir string
	// ThreadsDir is ClaudeDir/threads, the thread records (the worker's).
	ThreadsDir string
	// AgentDir is ClaudeDir/agent, the agent's CLAUDE_CONFIG_DIR (the tenant's).
	AgentDir string
	// HomeDir is Dir/home, HOME of the tenant's processes.
	HomeDir string
	// TmpDir is HomeDir/tmp, their TMPDIR.
	TmpDir string
	// MetadataPath is Dir/metadata.json.
	MetadataPath string
	// Remote, when set, says how git reaches the workspace's recorded
	// repository for network operations (the git gateway and a per-job
	// credential); nil means the repository's own URL, with no credential.
	Remote RemoteFunc
	log    *slog.Logger
}

// RemoteAccess is how git reaches a repository for one job.
type RemoteAccess struct {
	// URL is what git fetches from and pushes to.
	URL string
	// Env are extra "KEY=value" entries of git's environment (a credential
	// for URL, as GIT_CONFIG_* entries). They are never on a command line.
	Env []string
}

// RemoteFunc returns how git reaches repoURL, the workspace's recorded
// repository.
type RemoteFunc func(repoURL string) (RemoteAccess, error)

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
	tenant, err := w.cfg.Sandbox.Tenant(clientID, userID)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(w.root, clientID, userID)
	u := &User{
		ws:           w,
		ClientID:     clientID,
		UserID:       userID,
		Tenant:       tenant,
		Dir:          dir,
		ProjectDir:   filepath.Join(dir, "project"),
		ClaudeDir:    filepath.Join(dir, ".claude"),
		ThreadsDir:   filepath.Join(dir, ".claude", "threads"),
		AgentDir:     filepath.Join(dir, ".claude", "agent"),
		HomeDir:      filepath.Join(dir, "home"),
		TmpDir:       filepath.Join(dir, "home", "tmp"),
		MetadataPath: filepath.Join(dir, "metadata.json"),
		log:          w.log.With("client", clientID, "user", userID),
	}
	if err := u.checkPaths(); err != nil {
		return nil, err
	}
	return u, nil
}

// Prepare creates the user's directories with their owners and modes (see
// the package documentation), leaving what exists in place. Every job calls
// it before touching the workspace.
func (u *User) Prepare() error {
	if err := u.checkPaths(); err != nil {
		return err
	}
	client := filepath.Dir(u.Dir)
	userMode := os.FileMode(0o710)
	if !u.Tenant.Separate() {
		userMode = 0o700
	}
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{client, 0o711}, {u.Dir, userMode}, {u.ClaudeDir, 0o711}, {u.ThreadsDir, 0o700}} {
		if err := mkdirMode(d.path, d.mode); err != nil {
			return fmt.Errorf("prepare the workspace: %w", err)
		}
	}
	if fi, err := os.Lstat(u.Dir); err != nil {
		return fmt.Errorf("prepare the workspace: %w", err)
	} else if st, ok := fi.Sys().(*syscall.Stat_t); u.Tenant.Separate() && ok && st.Gid != u.Tenant.GID {
		// The tenant passes through its user directory by group.
		if err := os.Lchown(u.Dir, -1, int(u.Tenant.GID)); err != nil {
			return fmt.Errorf("prepare the workspace: %w", err)
		}
	}
	if err := u.ws.indexPreview(u.ClientID, u.UserID); err != nil {
		return fmt.Errorf("prepare the workspace: %w", err)
	}
	if !exists(u.HomeDir) {
		// A new home gets its tmp/ while it is still the worker's (the
		// worker cannot write in a tenant's directory); later both are the
		// tenant's own to keep or remove.
		for _, d := range []string{u.HomeDir, u.TmpDir} {
			if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("prepare the workspace: %w", err)
			}
		}
		if err := u.Tenant.Own(u.TmpDir); err != nil {
			return fmt.Errorf("prepare the workspace: %w", err)
		}
	}
	for _, d := range []string{u.AgentDir, u.HomeDir} {
		if err := u.Tenant.MkdirOwned(d, 0o700); err != nil {
			return fmt.Errorf("prepare the workspace: %w", err)
		}
	}
	return u.checkPaths()
}

// mkdirMode creates dir (not its parents) with mode, or sets the mode of an
// existing one; a symlink or file there is an error.
func mkdirMode(dir string, mode os.FileMode) error {
	if err := os.Mkdir(dir, mode); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if fi.Mode().Perm() != mode {
		return os.Chmod(dir, mode)
	}
	return nil
}

// exists reports whether path exists (a link counts, not followed).
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// checkPaths verifies that the user's directories, as far as they exist,
// resolve under the root.
func (u *User) checkPaths() error {
	for _, p := range []string{u.Dir, u.ProjectDir, u.ClaudeDir, u.ThreadsDir, u.AgentDir, u.HomeDir} {
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
