package preview

import (
	_ "embed" // the dev server launcher
	"fmt"
	"os"
	"path/filepath"
)

//go:embed devserver.mjs
var launcherJS []byte

// The launcher's environment variables.
const (
	secretEnv = "WEBORDINARY_DEV_SECRET"
	portEnv   = "WEBORDINARY_DEV_PORT"
)

// writeLauncher writes the dev server launcher into a new directory that
// only root (the worker) may change and everyone may read, and returns its
// path and the function that removes it.
func writeLauncher() (string, func(), error) {
	dir, err := os.MkdirTemp("", "webordinary-devserver-")
	if err != nil {
		return "", nil, fmt.Errorf("write the dev server launcher: %w", err)
	}
	remove := func() { _ = os.RemoveAll(dir) } // a leftover in the temporary directory is harmless
	path := filepath.Join(dir, "devserver.mjs")
	if err := os.Chmod(dir, 0o755); err != nil {
		remove()
		return "", nil, fmt.Errorf("write the dev server launcher: %w", err)
	}
	if err := os.WriteFile(path, launcherJS, 0o644); err != nil {
		remove()
		return "", nil, fmt.Errorf("write the dev server launcher: %w", err)
	}
	if err := os.Chmod(path, 0o644); err != nil { // the worker's umask is 077
		remove()
		return "", nil, fmt.Errorf("write the dev server launcher: %w", err)
	}
	return path, remove, nil
}

// lookPath finds an executable name in pathList (a PATH value), not in the
// worker's own PATH.
func lookPath(name, pathList string) (string, error) {
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("find %s in %s: %w", name, pathList, os.ErrNotExist)
}

// env is the dev server's whole environment: an allowlist, never the
// worker's own environment (which holds secrets).
func (d *devServer) env(as RunAs) []string {
	env := []string{
		"PATH=" + d.cfg.PATH,
		"ASTRO_TELEMETRY_DISABLED=1",
		"ASTRO_DISABLE_UPDATE_CHECK=true",
		"NODE_ENV=development",
		"BROWSER=none",
		"NO_COLOR=1",
	}
	if as.Home != "" {
		env = append(env, "HOME="+as.Home)
	}
	return env
}
