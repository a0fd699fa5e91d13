package infra

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	digest "github.com/opencontainers/go-digest"
)

// dockerfile is the parsed Dockerfile: its stages as BuildKit's instruction
// parser sees them, and every warning the parser and linter reported.
type dockerfile struct {
	stages   []instructions.Stage
	warnings []string
}

// parseDockerfile parses the repository's Dockerfile with BuildKit's parser
// and instruction parser, with a linter that records every warning.
func parseDockerfile(tb testing.TB) dockerfile {
	tb.Helper()
	src := readRepoFile(tb, "Dockerfile")
	res, err := parser.Parse(bytes.NewReader(src))
	if err != nil {
		tb.Fatalf("parse Dockerfile: %v", err)
	}
	var df dockerfile
	for _, w := range res.Warnings {
		line := 0
		if w.Location != nil {
			line = w.Location.Start.Line
		}
		df.warnings = append(df.warnings, fmt.Sprintf("parser: line %d: %s", line, w.Short))
	}
	lint := linter.New(&linter.Config{
		Warn: func(rule, _, _, msg string, loc []parser.Range) {
			df.warnings = append(df.warnings, fmt.Sprintf("%s: %s (%s)", rule, msg, lines(loc)))
		},
	})
	df.stages, _, err = instructions.Parse(res.AST, lint)
	if err != nil {
		tb.Fatalf("parse Dockerfile instructions: %v", err)
	}
	return df
}

func lines(loc []parser.Range) string {
	var parts []string
	for _, r := range loc {
		parts = append(parts, fmt.Sprintf("line %d", r.Start.Line))
	}
	return strings.Join(parts, ", ")
}

func (df dockerfile) final() instructions.Stage { return df.stages[len(df.stages)-1] }

// commands returns the commands of type T in a stage, in order.
func commands[T instructions.Command](st instructions.Stage) []T {
	var out []T
	for _, c := range st.Commands {
		if t, ok := c.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// env returns the value of an ENV key set in a stage ("" and false when unset).
func env(st instructions.Stage, key string) (string, bool) {
	val, ok := "", false
	for _, e := range commands[*instructions.EnvCommand](st) {
		for _, kv := range e.Env {
			if kv.Key == key {
				val, ok = kv.Value, true
			}
		}
	}
	return val, ok
}

func TestDockerfileParsesWithoutLintWarnings(t *testing.T) {
	df := parseDockerfile(t)
	if len(df.warnings) > 0 {
		t.Errorf("BuildKit parser and linter warnings:\n  %s", strings.Join(df.warnings, "\n  "))
	}
}

// offlineImages answers BuildKit's base image lookups without a registry: it
// returns an image config with the environment the official images declare,
// enough for the rules that look at a base image (UndefinedVar and others).
type offlineImages map[string][]string

func (o offlineImages) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	repo, _, _ := strings.Cut(ref, ":")
	env, ok := o[path.Base(repo)]
	if !ok {
		return "", "", nil, fmt.Errorf("no offline image config for %s", ref)
	}
	cfg := map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{"Env": env},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + strings.Repeat("0", 64)}},
	}
	dt, err := json.Marshal(cfg)
	return ref, "", dt, err
}

// TestDockerfileLintsClean runs BuildKit's complete lint pass (the one behind
// `docker build --check`), which also checks the rules that need the stages
// wired together (undefined variables, stage names, base image platforms).
func TestDockerfileLintsClean(t *testing.T) {
	src := readRepoFile(t, "Dockerfile")
	const path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	images := offlineImages{
		"golang": {"PATH=/usr/local/go/bin:/go/bin:" + path, "GOLANG_VERSION=1.26.8", "GOTOOLCHAIN=local", "GOPATH=/go"},
		"node":   {"PATH=" + path, "NODE_VERSION=22.23.3", "YARN_VERSION=1.22.22"},
	}
	smap := llb.NewSourceMap(nil, "Dockerfile", "Dockerfile", src)
	smap.Definition = &llb.Definition{}
	res, err := dockerfile2llb.DockerfileLint(context.Background(), src, dockerfile2llb.ConvertOpt{
		SourceMap:    smap,
		MetaResolver: images,
	})
	if err != nil {
		t.Fatalf("lint Dockerfile: %v", err)
	}
	if res.Error != nil {
		t.Errorf("lint Dockerfile: build error: %s", res.Error.Message)
	}
	for _, w := range res.Warnings {
		line := 0
		if len(w.Location.Ranges) > 0 {
			line = int(w.Location.Ranges[0].Start.Line)
		}
		t.Errorf("lint Dockerfile: line %d: %s: %s", line, w.RuleName, w.Detail)
	}
}

func TestDockerfileStages(t *testing.T) {
	df := parseDockerfile(t)
	if len(df.stages) < 2 {
		t.Fatalf("Dockerfile has %d stage(s), want a multi-stage build", len(df.stages))
	}
	build, final := df.stages[0], df.final()

	pinned := regexp.MustCompile(`^[a-z0-9./-]+:\d+\.\d+\.\d+(-[a-z0-9-]+)?(@sha256:[0-9a-f]{64})?$`)
	for _, st := range df.stages {
		if !pinned.MatchString(st.BaseName) {
			t.Errorf("stage %q: base image %q is not pinned to an exact version (name:X.Y.Z[-variant])", st.Name, st.BaseName)
		}
	}
	goMod := regexp.MustCompile(`(?m)^go (\d+\.\d+(?:\.\d+)?)\s*$`).FindSubmatch(readRepoFile(t, "go.mod"))
	goImage := regexp.MustCompile(`^golang:(\d+\.\d+\.\d+)`).FindStringSubmatch(build.BaseName)
	if goMod == nil || goImage == nil {
		t.Errorf("build stage base = %q, go.mod go line %q: want golang:X.Y.Z and a go directive", build.BaseName, goMod)
	} else if versionLess(goImage[1], string(goMod[1])) {
		t.Errorf("build stage base %s is older than go.mod's go %s: the image's toolchain (GOTOOLCHAIN=local) would refuse to build", build.BaseName, goMod[1])
	}
	if !strings.HasPrefix(final.BaseName, "node:22.") || !strings.Contains(final.BaseName, "slim") {
		t.Errorf("runtime stage base = %q, want node:22.x slim (Node 20 is end of life)", final.BaseName)
	}

	var buildCmd string
	for _, r := range commands[*instructions.RunCommand](build) {
		if line := strings.Join(r.CmdLine, " "); strings.Contains(line, "go build") {
			buildCmd = line
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-tags nolocal", "-o /out/worker", "./cmd/worker"} {
		if !strings.Contains(buildCmd, want) {
			t.Errorf("build stage's go build %q lacks %q", buildCmd, want)
		}
	}

	var copied bool
	for _, c := range commands[*instructions.CopyCommand](final) {
		if c.From == build.Name && slices.Contains(c.SourcePaths, "/out/worker") && c.DestPath == "/usr/local/bin/worker" {
			copied = true
		}
	}
	if !copied {
		t.Errorf("runtime stage does not COPY --from=%s /out/worker /usr/local/bin/worker", build.Name)
	}
}

func TestDockerfileRuntime(t *testing.T) {
	df := parseDockerfile(t)
	final := df.final()
	const worker = "/usr/local/bin/worker"

	t.Run("starts as root, which the worker confines", func(t *testing.T) {
		// The worker keeps only what starting tenant processes takes
		// (sandbox.Confine): a USER would take that away.
		if users := commands[*instructions.UserCommand](final); len(users) != 0 {
			t.Errorf("runtime USER %q: the worker must start as root to run tenants under their own uids", users[len(users)-1].User)
		}
		var workspace bool
		for _, r := range commands[*instructions.RunCommand](final) {
			line := strings.Join(r.CmdLine, " ")
			workspace = workspace || (strings.Contains(line, "mkdir -p /workspace") && strings.Contains(line, "chmod 0711 /workspace"))
		}
		if !workspace {
			t.Error("runtime stage does not create /workspace with mode 0711 (tenants pass through, nobody lists it)")
		}
	})

	t.Run("healthcheck", func(t *testing.T) {
		hcs := commands[*instructions.HealthCheckCommand](final)
		if len(hcs) != 1 {
			t.Fatalf("runtime stage has %d HEALTHCHECK, want 1", len(hcs))
		}
		want := []string{"CMD", worker, "healthcheck"}
		if got := hcs[0].Health.Test; !slices.Equal(got, want) {
			t.Errorf("HEALTHCHECK test = %q, want %q", got, want)
		}
	})

	t.Run("expose 8080", func(t *testing.T) {
		var ports []string
		for _, e := range commands[*instructions.ExposeCommand](final) {
			ports = append(ports, e.Ports...)
		}
		if !slices.Contains(ports, "8080") && !slices.Contains(ports, "8080/tcp") {
			t.Errorf("EXPOSE %v, want 8080", ports)
		}
		if addr, _ := env(final, "HTTP_ADDR"); addr != ":8080" {
			t.Errorf("ENV HTTP_ADDR = %q, want :8080", addr)
		}
	})

	t.Run("entrypoint", func(t *testing.T) {
		eps := commands[*instructions.EntrypointCommand](final)
		if len(eps) != 1 || eps[0].PrependShell {
			t.Fatalf("want one ENTRYPOINT in exec form, got %d", len(eps))
		}
		ep := eps[0].CmdLine
		if len(ep) == 0 || ep[0] != "/usr/bin/tini" || ep[len(ep)-1] != worker {
			t.Errorf("ENTRYPOINT %q, want tini running %s", ep, worker)
		}
		cmds := commands[*instructions.CmdCommand](final)
		if len(cmds) != 1 || !slices.Equal(cmds[0].CmdLine, []string{"run"}) {
			t.Errorf("CMD, want [\"run\"]")
		}
	})

	t.Run("packages", func(t *testing.T) {
		var apt string
		for _, r := range commands[*instructions.RunCommand](final) {
			if line := strings.Join(r.CmdLine, " "); strings.Contains(line, "apt-get install") {
				apt = line
			}
		}
		for _, pkg := range []string{"git", "ca-certificates", "tini", "--no-install-recommends", "rm -rf /var/lib/apt/lists/*"} {
			if !strings.Contains(apt, pkg) {
				t.Errorf("apt-get install %q lacks %q", apt, pkg)
			}
		}
	})

	t.Run("env defaults", func(t *testing.T) {
		for key, want := range map[string]string{
			"WORKSPACE_PATH": "/workspace",
			"ASTRO_PORT":     "4321",
			"CLAUDE_BIN":     "/opt/tools/node_modules/.bin/claude",
		} {
			if got, _ := env(final, key); got != want {
				t.Errorf("ENV %s = %q, want %q", key, got, want)
			}
		}
		for _, secret := range []string{"ANTHROPIC_API_KEY", "GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY"} {
			if _, ok := env(final, secret); ok {
				t.Errorf("ENV %s is baked into the image", secret)
			}
		}
	})
}

// TestDockerfileInstallsPinnedClaude checks that the Claude Code CLI comes from
// internal/agent/claude-code/package-lock.json, the one place its version is pinned.
func TestDockerfileInstallsPinnedClaude(t *testing.T) {
	final := parseDockerfile(t).final()

	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	if err := json.Unmarshal(readRepoFile(t, "internal/agent/claude-code/package.json"), &pkg); err != nil {
		t.Fatalf("parse internal/agent/claude-code/package.json: %v", err)
	}
	var lock struct {
		Packages map[string]struct {
			Version      string `json:"version"`
			HasInstall   bool   `json:"hasInstallScript"`
			Dependencies any    `json:"dependencies"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(readRepoFile(t, "internal/agent/claude-code/package-lock.json"), &lock); err != nil {
		t.Fatalf("parse internal/agent/claude-code/package-lock.json: %v", err)
	}
	const cli = "@anthropic-ai/claude-code"
	want := pkg.Dependencies[cli]
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(want) {
		t.Errorf("internal/agent/claude-code/package.json: %s is %q, want an exact version", cli, want)
	}
	if got := lock.Packages["node_modules/"+cli].Version; got != want {
		t.Errorf("internal/agent/claude-code/package-lock.json: %s locked at %q, package.json says %q", cli, got, want)
	}

	// WORKDIR, then COPY of both files into it, then npm ci there.
	dir := ""
	copiedAt, ciAt := -1, -1
	for i, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.WorkdirCommand:
			dir = c.Path
		case *instructions.CopyCommand:
			if slices.Contains(c.SourcePaths, "internal/agent/claude-code/package.json") && slices.Contains(c.SourcePaths, "internal/agent/claude-code/package-lock.json") {
				if dest := path.Clean(path.Join(dir, c.DestPath)); dest != "/opt/tools" {
					t.Errorf("internal/agent/claude-code/package*.json copied to %s, want /opt/tools", dest)
				}
				copiedAt = i
			}
		case *instructions.RunCommand:
			line := strings.Join(c.CmdLine, " ")
			if copiedAt >= 0 && ciAt < 0 && strings.Contains(line, "npm ci") {
				ciAt = i
				if dir != "/opt/tools" {
					t.Errorf("npm ci runs in %q, want /opt/tools", dir)
				}
				if strings.Contains(line, "--ignore-scripts") || strings.Contains(line, "--omit=optional") {
					t.Errorf("npm ci %q would skip the native binary (postinstall or optional dependency)", line)
				}
				if !strings.Contains(line, "/opt/tools/node_modules/.bin/claude --version") {
					t.Errorf("npm ci %q does not check that the installed claude runs", line)
				}
			}
			if strings.Contains(line, "npm install") && strings.Contains(line, "claude-code") {
				t.Errorf("claude-code installed outside the lockfile: %q", line)
			}
		}
	}
	if copiedAt < 0 {
		t.Fatal("runtime stage does not COPY internal/agent/claude-code/package.json and package-lock.json")
	}
	if ciAt < 0 {
		t.Fatal("runtime stage does not run npm ci after copying internal/agent/claude-code/package-lock.json")
	}
}

// TestDockerignore checks the build context: what COPY needs is in it, local
// state is not. Patterns are matched with the same matcher BuildKit uses.
func TestDockerignore(t *testing.T) {
	patterns, err := ignorefile.ReadAll(bytes.NewReader(readRepoFile(t, ".dockerignore")))
	if err != nil {
		t.Fatalf("parse .dockerignore: %v", err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatalf("compile .dockerignore: %v", err)
	}
	tests := []struct {
		path     string
		excluded bool
	}{
		{"go.mod", false},
		{"go.sum", false},
		{"cmd/worker/main.go", false},
		{"internal/agent/claude-code/package.json", false},
		{"internal/agent/claude-code/package-lock.json", false},
		{".git/config", true},
		{"internal/agent/claude-code/node_modules/@anthropic-ai/claude-code/package.json", true},
		{"examples/site/node_modules/astro/package.json", true},
		{"examples/site/.astro/types.d.ts", true},
		{".env", true},
	}
	for _, tt := range tests {
		got, err := pm.MatchesOrParentMatches(tt.path)
		if err != nil {
			t.Fatalf("match %s: %v", tt.path, err)
		}
		if got != tt.excluded {
			t.Errorf(".dockerignore excludes %s = %v, want %v", tt.path, got, tt.excluded)
		}
	}
}

// versionLess compares dotted version numbers ("1.26" < "1.26.8" < "1.27").
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(as), len(bs)); i++ {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

func TestVersionLess(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"1.26.8", "1.26.8", false},
		{"1.26.7", "1.26.8", true},
		{"1.26.8", "1.26", false},
		{"1.26", "1.26.1", true},
		{"1.27.0", "1.26.9", false},
		{"1.9.0", "1.10.0", true},
	}
	for _, tt := range tests {
		if got := versionLess(tt.a, tt.b); got != tt.want {
			t.Errorf("versionLess(%s, %s) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
