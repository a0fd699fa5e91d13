package infra

import (
	"context"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

// loadCompose loads docker-compose.yml with compose-go, as `docker compose`
// does, with the repository root as the project directory and the given
// environment (the variables the file interpolates) instead of this process's.
func loadCompose(tb testing.TB, environ map[string]string) *types.Project {
	tb.Helper()
	root := repoRoot(tb)
	file := filepath.Join(root, "docker-compose.yml")
	data, err := os.ReadFile(file)
	if err != nil {
		tb.Fatalf("read docker-compose.yml: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := loader.LoadWithContext(ctx, types.ConfigDetails{
		WorkingDir:  root,
		ConfigFiles: []types.ConfigFile{{Filename: file, Content: data}},
		Environment: environ,
	})
	if err != nil {
		tb.Fatalf("load docker-compose.yml: %v", err)
	}
	return p
}

// service returns a service of the compose project or fails the test.
func service(tb testing.TB, p *types.Project, name string) types.ServiceConfig {
	tb.Helper()
	s, ok := p.Services[name]
	if !ok {
		tb.Fatalf("docker-compose.yml has no service %q", name)
	}
	return s
}

// envValue returns a service's environment variable ("" when unset or null).
func envValue(s types.ServiceConfig, key string) string {
	if v := s.Environment[key]; v != nil {
		return *v
	}
	return ""
}

const (
	composeWorker     = "worker"
	composeLocalStack = "localstack"
)

func TestComposeWorkerEnvironment(t *testing.T) {
	p := loadCompose(t, map[string]string{})
	w := service(t, p, composeWorker)

	for _, key := range []string{"JOB_QUEUE_URL", "RESPONSE_QUEUE_URL", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "REPO_URL", "WORKSPACE_PATH"} {
		if envValue(w, key) == "" {
			t.Errorf("worker: %s is not set", key)
		}
	}
	if envValue(w, "ANTHROPIC_API_KEY") == "" && envValue(w, "ANTHROPIC_API_KEY_SECRET_ID") == "" {
		t.Error("worker: neither ANTHROPIC_API_KEY nor ANTHROPIC_API_KEY_SECRET_ID is set")
	}

	// The endpoint and both queues are LocalStack's, by its service name.
	endpoint, err := url.Parse(envValue(w, "AWS_ENDPOINT_URL"))
	if err != nil {
		t.Fatalf("worker: AWS_ENDPOINT_URL: %v", err)
	}
	if endpoint.Hostname() != composeLocalStack || endpoint.Port() != "4566" {
		t.Errorf("worker: AWS_ENDPOINT_URL = %s, want http://%s:4566", endpoint, composeLocalStack)
	}
	for _, key := range []string{"JOB_QUEUE_URL", "RESPONSE_QUEUE_URL"} {
		u, err := url.Parse(envValue(w, key))
		if err != nil {
			t.Errorf("worker: %s: %v", key, err)
			continue
		}
		if u.Host != endpoint.Host {
			t.Errorf("worker: %s = %s, not on the endpoint %s", key, u, endpoint.Host)
		}
		if !strings.HasSuffix(u.Path, ".fifo") {
			t.Errorf("worker: %s = %s, want a FIFO queue", key, u)
		}
	}

	// The contract's defaults the compose file overrides must still be valid.
	if got := envValue(w, "AUTO_SHUTDOWN_MINUTES"); got != "0" {
		t.Errorf("worker: AUTO_SHUTDOWN_MINUTES = %q, want 0 (no ECS locally: an idle exit would just stop the stack)", got)
	}

	// Optional pass-through variables stay unset when the caller's shell has none.
	if v, ok := w.Environment["CLAUDE_MODEL"]; ok && v != nil && *v == "" {
		t.Error("worker: CLAUDE_MODEL is set to an empty string when the shell has none")
	}
}

func TestComposeInterpolatesCallerEnvironment(t *testing.T) {
	p := loadCompose(t, map[string]string{
		"ANTHROPIC_API_KEY": "sk-ant-from-shell",
		"CLAUDE_MODEL":      "claude-test-model",
	})
	// The key goes to LocalStack's init hook (into the secret), never to the worker's environment.
	if got := envValue(service(t, p, composeLocalStack), "ANTHROPIC_API_KEY"); got != "sk-ant-from-shell" {
		t.Errorf("localstack: ANTHROPIC_API_KEY = %q, want the caller's", got)
	}
	w := service(t, p, composeWorker)
	if got := envValue(w, "ANTHROPIC_API_KEY"); got != "" {
		t.Errorf("worker: ANTHROPIC_API_KEY = %q, want it only in Secrets Manager", got)
	}
	if got := envValue(w, "CLAUDE_MODEL"); got != "claude-test-model" {
		t.Errorf("worker: CLAUDE_MODEL = %q, want the caller's", got)
	}
}

func TestComposeServices(t *testing.T) {
	root := repoRoot(t)
	p := loadCompose(t, map[string]string{})
	w := service(t, p, composeWorker)
	ls := service(t, p, composeLocalStack)

	t.Run("depends on healthy localstack", func(t *testing.T) {
		dep, ok := w.DependsOn[composeLocalStack]
		if !ok || dep.Condition != types.ServiceConditionHealthy {
			t.Errorf("worker depends_on %s = %+v, want condition %s", composeLocalStack, dep, types.ServiceConditionHealthy)
		}
		if ls.HealthCheck == nil || ls.HealthCheck.Disable || len(ls.HealthCheck.Test) == 0 {
			t.Errorf("%s has no healthcheck: service_healthy would never be reached", composeLocalStack)
		}
		for name, dep := range w.DependsOn {
			if _, ok := p.Services[name]; !ok {
				t.Errorf("worker depends on unknown service %q", name)
			}
			if dep.Condition == types.ServiceConditionCompletedSuccessfully {
				if s := p.Services[name]; s.Restart != "" && s.Restart != "no" {
					t.Errorf("one-shot service %q restarts (%q)", name, s.Restart)
				}
			}
		}
	})

	t.Run("preview port published", func(t *testing.T) {
		var published bool
		for _, port := range w.Ports {
			if port.Target == 8080 && port.Published == "8080" {
				published = true
			}
		}
		if !published {
			t.Errorf("worker ports %+v, want 8080 published as 8080", w.Ports)
		}
	})

	t.Run("built from the Dockerfile", func(t *testing.T) {
		if w.Build == nil {
			t.Fatal("worker has no build section")
		}
		if w.Build.Context != root {
			t.Errorf("worker build context = %s, want the repository root %s", w.Build.Context, root)
		}
		if _, err := os.Stat(filepath.Join(w.Build.Context, w.Build.Dockerfile)); err != nil {
			t.Errorf("worker Dockerfile: %v", err)
		}
	})

	t.Run("workspace volume", func(t *testing.T) {
		var mounted bool
		for _, v := range w.Volumes {
			if v.Target == "/workspace" && v.Type == types.VolumeTypeVolume {
				if _, ok := p.Volumes[v.Source]; !ok {
					t.Errorf("worker mounts undeclared volume %q", v.Source)
				}
				mounted = true
			}
		}
		if !mounted {
			t.Error("worker has no named volume at /workspace")
		}
	})

	t.Run("stop grace period", func(t *testing.T) {
		// The worker stops within 25 s of SIGTERM; compose's default is 10 s.
		if w.StopGracePeriod == nil || time.Duration(*w.StopGracePeriod) < 30*time.Second {
			t.Errorf("worker stop_grace_period = %v, want at least 30s", w.StopGracePeriod)
		}
	})

	t.Run("localstack", func(t *testing.T) {
		if ls.Image != "localstack/localstack:4.14.0" {
			t.Errorf("localstack image = %q, want localstack/localstack:4.14.0 (the last tag without an auth token)", ls.Image)
		}
		services := strings.Split(envValue(ls, "SERVICES"), ",")
		for _, want := range []string{"sqs", "secretsmanager"} {
			found := false
			for _, s := range services {
				found = found || strings.TrimSpace(s) == want
			}
			if !found {
				t.Errorf("localstack SERVICES = %q, lacks %s", envValue(ls, "SERVICES"), want)
			}
		}
		var hooks bool
		for _, v := range ls.Volumes {
			if v.Target == "/etc/localstack/init/ready.d" && v.Source == filepath.Join(root, "infra", "localstack", "init", "ready.d") {
				hooks = true
			}
		}
		if !hooks {
			t.Error("localstack does not mount ./infra/localstack/init/ready.d at /etc/localstack/init/ready.d")
		}
	})

	t.Run("bind mounts exist", func(t *testing.T) {
		for name, s := range p.Services {
			for _, v := range s.Volumes {
				if v.Type != types.VolumeTypeBind {
					continue
				}
				if _, err := os.Stat(v.Source); err != nil {
					t.Errorf("service %s: bind mount source: %v", name, err)
				}
			}
		}
	})
}

// TestComposeSiteRepo checks that the repository the worker clones is the one
// the one-shot service creates, on a volume both mount.
func TestComposeSiteRepo(t *testing.T) {
	p := loadCompose(t, map[string]string{})
	w := service(t, p, composeWorker)
	seed := service(t, p, "site-repo")

	if dep := w.DependsOn["site-repo"]; dep.Condition != types.ServiceConditionCompletedSuccessfully {
		t.Errorf("worker depends_on site-repo = %+v, want condition %s", dep, types.ServiceConditionCompletedSuccessfully)
	}
	repo, err := url.Parse(envValue(w, "REPO_URL"))
	if err != nil || repo.Scheme != "file" {
		t.Fatalf("worker REPO_URL = %q, want a file:// URL", envValue(w, "REPO_URL"))
	}
	if got := envValue(seed, "REPO_DIR"); got != repo.Path {
		t.Errorf("site-repo REPO_DIR = %q, worker REPO_URL path = %q", got, repo.Path)
	}
	volumeAt := func(s types.ServiceConfig, file string) string {
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeVolume && strings.HasPrefix(file, v.Target+"/") {
				return v.Source
			}
		}
		return ""
	}
	if a, b := volumeAt(seed, repo.Path), volumeAt(w, repo.Path); a == "" || a != b {
		t.Errorf("%s is on volume %q for site-repo and %q for worker, want one shared named volume", repo.Path, a, b)
	}
	var site string
	for _, v := range seed.Volumes {
		if v.Target == envValue(seed, "SITE_SRC") {
			site = v.Source
		}
	}
	if site != filepath.Join(repoRoot(t), "examples", "site") {
		t.Errorf("site-repo mounts %q at SITE_SRC, want examples/site", site)
	}
	if seed.Image != w.Image || seed.Build == nil {
		t.Errorf("site-repo image %q, want the worker's image %q (it has git)", seed.Image, w.Image)
	}
	if path.Base(seed.Entrypoint[len(seed.Entrypoint)-1]) != "seed-site-repo.sh" {
		t.Errorf("site-repo entrypoint %q, want infra/compose/seed-site-repo.sh", seed.Entrypoint)
	}
}
