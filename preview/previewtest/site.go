// Package previewtest prepares the example Astro site (examples/site) for
// tests: a copy of its source in a temporary directory with a node_modules
// tree hard-linked from the one that `npm ci --prefix examples/site`
// installed, and free loopback ports.
//
// A symlinked node_modules does not work: Vite resolves it to its real path,
// outside the project, and then refuses to serve modules from it ("outside of
// Vite serving allow list"); Vite and Astro also write caches into
// node_modules (.vite, .astro) that concurrent dev servers must not share.
// A hard-linked tree avoids both and takes a fraction of a second.
package previewtest

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/webordinary/claude-code-astro/internal/procfs"
	"github.com/webordinary/claude-code-astro/internal/sandbox"
	"github.com/webordinary/claude-code-astro/internal/testkit/node22"
)

// InstallHint is the command that installs the example site's dependencies,
// run from the repository root.
const InstallHint = "npm ci --prefix examples/site"

// skipSource lists the top-level entries of the site that are not its source:
// installed dependencies, build output and Astro's generated files.
var skipSource = map[string]bool{"node_modules": true, "dist": true, ".astro": true}

// skipModules lists the top-level entries of node_modules that are caches a
// dev server writes; every project gets its own.
var skipModules = map[string]bool{".vite": true, ".astro": true}

// Site is one of the repository's example Astro sites. Customer sites pin
// their own Astro: the preview works with each of these.
type Site struct {
	// Name names it in tests: "astro5", "astro7".
	Name string
	// dir is its folder under examples/.
	dir string
	// node22 says its dev server needs Node.js 22 (Astro 7).
	node22 bool
}

// Sites returns the example sites: Astro 5 (examples/site, the default) and
// the newest Astro major (examples/site-astro7, on Vite 8, Node 22).
func Sites() []Site {
	return []Site{{Name: "astro5", dir: "site"}, {Name: "astro7", dir: "site-astro7", node22: true}}
}

// Default is the Astro 5 example site, examples/site.
func Default() Site { return Sites()[0] }

// InstallHintFor is the command that installs a site's dependencies, run
// from the repository root.
func (s Site) InstallHintFor() string { return "npm ci --prefix examples/" + s.dir }

// Dir returns the absolute path of the site's folder.
func (s Site) Dir(tb testing.TB) string {
	tb.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		tb.Fatal("previewtest: cannot locate the source file to find examples/")
	}
	dir := filepath.Join(filepath.Dir(file), "..", "..", "examples", s.dir)
	if _, err := os.Stat(filepath.Join(dir, "package.json")); err != nil {
		tb.Fatalf("previewtest: examples/%s not found: %v", s.dir, err)
	}
	return dir
}

// PATH returns the PATH a dev server of the site needs: where the right
// node is found, failing the test when it is not installed.
func (s Site) PATH(tb testing.TB) string {
	tb.Helper()
	if s.node22 {
		return node22.BinDir(tb) + ":" + sandbox.DefaultPATH
	}
	return NodePATH(tb)
}

// Files returns the site's source files (path -> content, paths with '/'),
// without what npm, Astro or a build put there: what a test commits to a
// remote standing for the customer's repository.
func (s Site) Files(tb testing.TB) map[string]string {
	tb.Helper()
	src := s.Dir(tb)
	files := map[string]string{}
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == ".astro" || d.Name() == "dist") {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		tb.Fatalf("previewtest: read examples/%s: %v", s.dir, err)
	}
	return files
}

// RequireNodeModules fails the test, saying how to install them, unless the
// site's dependencies are installed.
func (s Site) RequireNodeModules(tb testing.TB) {
	tb.Helper()
	astro := filepath.Join(s.Dir(tb), "node_modules", ".bin", "astro")
	if _, err := os.Stat(astro); err != nil {
		tb.Fatalf("previewtest: the dependencies of examples/%s are missing (%v): run `%s` from the repository root", s.dir, err, s.InstallHintFor())
	}
}

// Prepare copies the site's source into a new temporary directory, gives
// it its own node_modules (see InstallNodeModules) and returns the
// directory. The directory is removed when the test ends.
func (s Site) Prepare(tb testing.TB) string {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "site")
	if err := os.Mkdir(dir, 0o755); err != nil {
		tb.Fatalf("previewtest: create site dir: %v", err)
	}
	s.Copy(tb, dir)
	s.InstallNodeModules(tb, dir)
	return dir
}

// Copy copies the site's source files (not node_modules, dist or .astro)
// into dst, which must exist.
func (s Site) Copy(tb testing.TB, dst string) {
	tb.Helper()
	src := s.Dir(tb)
	entries, err := os.ReadDir(src)
	if err != nil {
		tb.Fatalf("previewtest: read site: %v", err)
	}
	for _, e := range entries {
		if skipSource[e.Name()] {
			continue
		}
		if err := copyTree(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()), false); err != nil {
			tb.Fatalf("previewtest: copy site: %v", err)
		}
	}
}

// InstallNodeModules gives projectDir a node_modules tree of its own whose
// files are hard links to those of the site's node_modules (copies when
// linking fails, as across file systems). The dev server caches under
// node_modules are left out. It fails the test, saying how to install them,
// when the site's dependencies are missing.
func (s Site) InstallNodeModules(tb testing.TB, projectDir string) {
	tb.Helper()
	s.RequireNodeModules(tb)
	src := filepath.Join(s.Dir(tb), "node_modules")
	dst := filepath.Join(projectDir, "node_modules")
	entries, err := os.ReadDir(src)
	if err != nil {
		tb.Fatalf("previewtest: read node_modules: %v", err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		tb.Fatalf("previewtest: create node_modules: %v", err)
	}
	for _, e := range entries {
		if skipModules[e.Name()] {
			continue
		}
		if err := copyTree(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()), true); err != nil {
			tb.Fatalf("previewtest: link node_modules: %v", err)
		}
	}
}

// SiteDir returns the absolute path of examples/site (the Astro 5 site).
func SiteDir(tb testing.TB) string { tb.Helper(); return Default().Dir(tb) }

// SiteFiles returns the Astro 5 example site's source files (see Site.Files).
func SiteFiles(tb testing.TB) map[string]string { tb.Helper(); return Default().Files(tb) }

// RequireNodeModules fails the test unless the Astro 5 site's dependencies
// are installed.
func RequireNodeModules(tb testing.TB) { tb.Helper(); Default().RequireNodeModules(tb) }

// PrepareSite prepares a copy of the Astro 5 example site (see Site.Prepare).
func PrepareSite(tb testing.TB) string { tb.Helper(); return Default().Prepare(tb) }

// CopySite copies the Astro 5 example site's source into dst.
func CopySite(tb testing.TB, dst string) { tb.Helper(); Default().Copy(tb, dst) }

// InstallNodeModules gives projectDir the Astro 5 site's node_modules.
func InstallNodeModules(tb testing.TB, projectDir string) {
	tb.Helper()
	Default().InstallNodeModules(tb, projectDir)
}

// FreePort returns a TCP port on 127.0.0.1 that was free when asked: the
// operating system picks it for a listener that is closed at once.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("previewtest: find a free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		tb.Fatalf("previewtest: close probe listener: %v", err)
	}
	return port
}

// copyTree copies src (a file, symlink or directory) to dst. With link set,
// regular files are hard-linked when possible. Symlinks are recreated with the
// same target.
func copyTree(src, dst string, link bool) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			to, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(to, target)
		case d.Type().IsRegular():
			if link {
				if err := os.Link(path, target); err == nil {
					return nil
				}
			}
			return copyFile(path, target)
		default:
			return nil // sockets, devices: not part of a site
		}
	})
}

// copyFile copies one regular file, keeping its permission bits.
func copyFile(src, dst string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, in.Close()) }()
	info, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, info.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		return errors.Join(fmt.Errorf("copy %s: %w", src, err), out.Close())
	}
	return out.Close()
}

// GroupAlive reports whether process group pgid still has a live process
// (zombies waiting to be reaped do not count). Use it to check that nothing
// a dev server started is left behind.
func GroupAlive(pgid int) bool { return procfs.GroupAlive(pgid) }
