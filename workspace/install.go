package workspace

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// installer is how one lockfile is installed.
type installer struct {
	file string   // the lockfile (or package.json when there is none)
	args []string // the command
}

// installers in order of preference: the first lockfile present decides.
var installers = []installer{
	{"package-lock.json", []string{"npm", "ci"}},
	{"pnpm-lock.yaml", []string{"pnpm", "install", "--frozen-lockfile"}},
	{"yarn.lock", []string{"yarn", "install", "--frozen-lockfile"}},
	{"package.json", []string{"npm", "install"}},
}

// detectInstaller returns the installer the project's files name, and
// false when there is no package.json.
func detectInstaller(projectDir string) (installer, bool, error) {
	if _, err := os.Stat(filepath.Join(projectDir, "package.json")); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return installer{}, false, nil
		}
		return installer{}, false, err
	}
	for _, in := range installers {
		if fi, err := os.Stat(filepath.Join(projectDir, in.file)); err == nil && fi.Mode().IsRegular() {
			return in, true, nil
		}
	}
	return installer{}, false, nil
}

// lockHash returns "sha256:HEX" of the installer's command and lockfile.
func lockHash(projectDir string, in installer) (string, error) {
	data, err := os.ReadFile(filepath.Join(projectDir, in.file))
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", strings.Join(in.args, " "), in.file)
	h.Write(data)
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// InstallDependencies installs the project's dependencies unless
// node_modules already matches the lockfile, and records the lockfile's
// hash in metadata.json. installed reports that the installer ran.
func (u *User) InstallDependencies(ctx context.Context) (installed bool, err error) {
	if err := u.ready(ctx); err != nil {
		return false, fmt.Errorf("install dependencies: %w", err)
	}
	meta, err := u.Metadata()
	if err != nil {
		return false, fmt.Errorf("install dependencies: %w", err)
	}
	installed, err = u.install(ctx, &meta)
	if werr := u.writeMetadata(meta); werr != nil {
		err = errors.Join(err, werr)
	}
	return installed, err
}

// install runs the package manager when needed and updates meta's
// lockfile fields; the caller writes meta.
func (u *User) install(ctx context.Context, meta *Metadata) (bool, error) {
	in, ok, err := detectInstaller(u.ProjectDir)
	if err != nil {
		return false, fmt.Errorf("detect lockfile: %w", err)
	}
	if !ok {
		meta.Lockfile, meta.LockfileHash = "", ""
		return false, nil
	}
	hash, err := lockHash(u.ProjectDir, in)
	if err != nil {
		return false, fmt.Errorf("hash lockfile: %w", err)
	}
	nodeModules := filepath.Join(u.ProjectDir, "node_modules")
	fi, err := os.Lstat(nodeModules)
	if err == nil && !fi.IsDir() {
		// A node_modules the repository itself holds as a link (or a file):
		// npm would empty whatever it points at, another tenant's files on
		// a shared volume included. Refuse it.
		return false, &InstallError{Command: "check node_modules", Output: "node_modules is not a directory (a link or file committed to the repository): remove it from the repository",
			Err: errors.New("node_modules is not a directory")}
	}
	if err == nil && meta.LockfileHash == hash {
		return false, nil
	}
	meta.Lockfile, meta.LockfileHash = in.file, ""
	command := strings.Join(in.args, " ")
	u.log.InfoContext(ctx, "installing dependencies", "command", command)
	if err := u.runInstaller(ctx, in.args); err != nil {
		return false, err
	}
	// A project without dependencies gets no node_modules from npm; create
	// it so an unchanged lockfile is not installed again.
	if err := os.MkdirAll(nodeModules, 0o755); err != nil {
		return true, fmt.Errorf("install dependencies: %w", err)
	}
	meta.LockfileHash = hash
	return true, nil
}

// runInstaller runs the package manager in the project with an explicit
// environment. A failure is an *InstallError with the output tail.
func (u *User) runInstaller(ctx context.Context, args []string) error {
	w := u.ws
	command := strings.Join(args, " ")
	bin, err := lookPath(args[0], w.cfg.PATH)
	if err != nil {
		return &InstallError{Command: command, Err: fmt.Errorf("%w (install Node.js and %s)", err, args[0])}
	}
	cache := w.cfg.NpmCacheDir
	if cache == "" {
		cache = filepath.Join(u.Dir, ".npm-cache")
	}
	env := append(w.baseEnv(),
		"CI=true",
		"npm_config_cache="+cache,
		"npm_config_store_dir="+filepath.Join(cache, "pnpm-store"),
		"YARN_CACHE_FOLDER="+filepath.Join(cache, "yarn"),
		"npm_config_update_notifier=false",
		"npm_config_fund=false",
		"npm_config_audit=false",
		"npm_config_progress=false",
		"NO_UPDATE_NOTIFIER=1",
		"COREPACK_ENABLE_DOWNLOAD_PROMPT=0",
		"ASTRO_TELEMETRY_DISABLED=1",
	)
	cmd := exec.CommandContext(ctx, bin, args[1:]...)
	cmd.Dir = u.ProjectDir
	cmd.Env = env
	out := &tailBuffer{max: tailSize}
	cmd.Stdout = out
	cmd.Stderr = out
	killGroup(cmd)
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w: %w", ctxErr, err) // both stay in the chain: the exit code is not lost
		}
		return &InstallError{Command: command, Output: w.redactor.String(out.String()), Err: err}
	}
	return nil
}
