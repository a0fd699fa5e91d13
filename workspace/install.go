package workspace

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
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
	// Without a lockfile npm writes none: the install leaves no file of its
	// own in the tree for the next commit, and the next init, finding none,
	// does not take it for a changed lockfile.
	{"package.json", []string{"npm", "install", "--no-package-lock"}},
}

// probeScript looks at the project for the worker, as the tenant (the
// worker reads nothing in a tenant's directory itself): whether there is a
// package.json, the first lockfile of installers present, the SHA-256 of its
// content, and what node_modules is. A constant: nothing from a job is in it.
const probeScript = `[ -f package.json ] || { echo package=no; exit 0; }
echo package=yes
for f in package-lock.json pnpm-lock.yaml yarn.lock package.json; do
  if [ -f "$f" ]; then
    echo "lockfile=$f"
    echo "hash=$(sha256sum < "$f" | cut -d' ' -f1)"
    break
  fi
done
if [ -L node_modules ]; then echo node_modules=link
elif [ -d node_modules ]; then echo node_modules=dir
elif [ -e node_modules ]; then echo node_modules=other
else echo node_modules=none; fi
`

// projectFacts is what probeScript reports.
type projectFacts struct {
	hasPackage  bool
	installer   installer
	contentHash string // of the installer's file
	nodeModules string // "dir", "link", "other" or "none"
}

// probe runs probeScript as the tenant in the project.
func (u *User) probe(ctx context.Context) (projectFacts, error) {
	out, err := u.run(ctx, u.ProjectDir, "/bin/sh", "-c", probeScript)
	if err != nil {
		return projectFacts{}, fmt.Errorf("look at the project: %w", err)
	}
	var f projectFacts
	for _, line := range strings.Split(out, "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "package":
			f.hasPackage = v == "yes"
		case "lockfile":
			for _, in := range installers {
				if in.file == v {
					f.installer = in
				}
			}
		case "hash":
			f.contentHash = v
		case "node_modules":
			f.nodeModules = v
		}
	}
	if f.hasPackage && (f.installer.file == "" || len(f.contentHash) != 64) {
		return projectFacts{}, fmt.Errorf("look at the project: unexpected answer %q", out)
	}
	return f, nil
}

// lockHash returns "sha256:HEX" of the installer's command, its file's name
// and its content's hash.
func lockHash(in installer, contentHash string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s", strings.Join(in.args, " "), in.file, contentHash)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
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
	facts, err := u.probe(ctx)
	if err != nil {
		return false, err
	}
	if !facts.hasPackage {
		meta.Lockfile, meta.LockfileHash = "", ""
		return false, nil
	}
	in := facts.installer
	hash := lockHash(in, facts.contentHash)
	switch facts.nodeModules {
	case "link", "other":
		// A node_modules the repository itself holds as a link (or a file):
		// npm would empty whatever it points at. Refuse it.
		return false, &InstallError{Command: "check node_modules", Output: "node_modules is not a directory (a link or file committed to the repository): remove it from the repository",
			Err: errors.New("node_modules is not a directory")}
	case "dir":
		if meta.LockfileHash == hash {
			return false, nil
		}
	}
	meta.Lockfile, meta.LockfileHash = in.file, ""
	command := strings.Join(in.args, " ")
	u.log.InfoContext(ctx, "installing dependencies", "command", command)
	if err := u.runInstaller(ctx, in.args); err != nil {
		return false, err
	}
	// A project without dependencies gets no node_modules from npm; create
	// it so an unchanged lockfile is not installed again.
	if _, err := u.run(ctx, u.ProjectDir, "mkdir", "-p", "--", "node_modules"); err != nil {
		return true, fmt.Errorf("install dependencies: %w", err)
	}
	meta.LockfileHash = hash
	return true, nil
}

// runInstaller runs the package manager in the project, as the tenant, with
// an explicit environment: its npm config and cache are in the tenant's
// HOME. A failure is an *InstallError with the output tail.
func (u *User) runInstaller(ctx context.Context, args []string) error {
	w := u.ws
	command := strings.Join(args, " ")
	bin, err := lookPath(args[0], w.cfg.PATH)
	if err != nil {
		return &InstallError{Command: command, Err: fmt.Errorf("%w (install Node.js and %s)", err, args[0])}
	}
	cache := filepath.Join(u.HomeDir, ".npm")
	if seed := w.cfg.NpmSeedCache; seed != "" {
		// The tenant's cache starts as a copy of the seed: $1 the seed, $2
		// its own cache. A constant script, run as the tenant.
		if _, err := u.run(ctx, u.HomeDir, "/bin/sh", "-c", `[ -e "$2" ] || cp -R -- "$1" "$2"`, "seed", seed, cache); err != nil {
			u.log.WarnContext(ctx, "cannot copy the seed npm cache; installing without it", "error", err)
		}
	}
	env := append(u.childEnv(),
		"CI=true",
		"npm_config_cache="+cache,
		"YARN_CACHE_FOLDER="+filepath.Join(u.HomeDir, ".yarn-cache"),
		"npm_config_update_notifier=false",
		"npm_config_fund=false",
		"npm_config_audit=false",
		"npm_config_progress=false",
		// A package the cache holds (the lockfile pins it by integrity) is
		// taken from the cache without asking the registry.
		"npm_config_prefer_offline=true",
		"NO_UPDATE_NOTIFIER=1",
		"COREPACK_ENABLE_DOWNLOAD_PROMPT=0",
		"ASTRO_TELEMETRY_DISABLED=1",
	)
	cmd := u.command(ctx, u.ProjectDir, env, bin, args[1:]...)
	out := &tailBuffer{max: tailSize}
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w: %w", ctxErr, err) // both stay in the chain: the exit code is not lost
		}
		return &InstallError{Command: command, Output: w.redactor.String(out.String()), Err: err}
	}
	return nil
}
