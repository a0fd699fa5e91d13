package infra

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// seedScript turns the example site into the bare repository compose's worker clones.
const seedScript = "infra/compose/seed-site-repo.sh"

// lookTools returns the paths of sh and git, failing with what to install.
func lookTools(t *testing.T) (sh, git string) {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("no sh on PATH (install dash or bash): %v", err)
	}
	git, err = exec.LookPath("git")
	if err != nil {
		t.Fatalf("no git on PATH (apt-get install git): %v", err)
	}
	return sh, git
}

// runSeed runs the seed script with an explicit environment and returns its
// combined output and error.
func runSeed(t *testing.T, home, src, dest string) (string, error) {
	t.Helper()
	sh, git := lookTools(t)
	cmd := exec.Command(sh, filepath.Join(repoRoot(t), seedScript))
	cmd.Env = []string{
		"PATH=" + filepath.Dir(git) + ":/usr/local/bin:/usr/bin:/bin",
		"HOME=" + home,
		"GIT_CONFIG_NOSYSTEM=1",
		"SITE_SRC=" + src,
		"REPO_DIR=" + dest,
		"APP_UID=" + strconv.Itoa(os.Getuid()),
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// gitOut runs git with an explicit environment and returns its trimmed output.
func gitOut(t *testing.T, home, dir string, args ...string) string {
	t.Helper()
	_, git := lookTools(t)
	cmd := exec.Command(git, args...)
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "HOME=" + home, "GIT_CONFIG_NOSYSTEM=1"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func writeFiles(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSeedSiteRepo runs the compose one-shot's script with real git: the site
// becomes a bare repository on main without its build output, a second run
// leaves it (and the branches pushed to it) alone.
func TestSeedSiteRepo(t *testing.T) {
	home := t.TempDir()
	src := filepath.Join(t.TempDir(), "site")
	writeFiles(t, src, map[string]string{
		"package.json":              `{"name":"site","private":true}`,
		"package-lock.json":         `{}`,
		"src/pages/index.astro":     "<h1>Hello</h1>\n",
		"node_modules/astro/x.js":   "ignored\n",
		".astro/types.d.ts":         "ignored\n",
		"dist/index.html":           "ignored\n",
		"public/images/.keep":       "",
		"src/components/Card.astro": "<div />\n",
	})
	dest := filepath.Join(t.TempDir(), "git", "example-site.git")

	if out, err := runSeed(t, home, src, dest); err != nil {
		t.Fatalf("seed: %v\n%s", err, out)
	}
	if got := gitOut(t, home, dest, "rev-parse", "--is-bare-repository"); got != "true" {
		t.Errorf("%s is not a bare repository", dest)
	}
	if got := gitOut(t, home, dest, "symbolic-ref", "HEAD"); got != "refs/heads/main" {
		t.Errorf("HEAD = %s, want refs/heads/main", got)
	}
	files := strings.Split(gitOut(t, home, dest, "ls-tree", "-r", "--name-only", "HEAD"), "\n")
	want := []string{"package-lock.json", "package.json", "public/images/.keep", "src/components/Card.astro", "src/pages/index.astro"}
	if !slices.Equal(files, want) {
		t.Errorf("committed files %q, want %q", files, want)
	}

	// The worker clones it by file:// URL and pushes a thread branch back.
	clone := filepath.Join(t.TempDir(), "clone")
	gitOut(t, home, "/", "clone", "-q", "file://"+dest, clone)
	gitOut(t, home, clone, "push", "-q", "origin", "HEAD:refs/heads/thread-t1")

	// A restart of the stack must keep what the worker pushed.
	out, err := runSeed(t, home, src, dest)
	if err != nil {
		t.Fatalf("second seed: %v\n%s", err, out)
	}
	if !strings.Contains(out, "already exists") {
		t.Errorf("second seed output %q, want it to leave the repository alone", out)
	}
	if got := gitOut(t, home, dest, "branch", "--list", "thread-t1"); got == "" {
		t.Error("second seed dropped the pushed branch thread-t1")
	}
}

func TestSeedSiteRepoWithoutSite(t *testing.T) {
	out, err := runSeed(t, t.TempDir(), t.TempDir(), filepath.Join(t.TempDir(), "repo.git"))
	if err == nil {
		t.Fatalf("seed of a folder without package.json succeeded:\n%s", out)
	}
	if !strings.Contains(out, "package.json") {
		t.Errorf("seed error %q does not say what is missing", out)
	}
}
