package config

import (
	"errors"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

const (
	jobQ  = "http://localhost:4566/000000000000/jobs.fifo"
	respQ = "http://localhost:4566/000000000000/responses.fifo"
)

func TestFromEnvDefaults(t *testing.T) {
	c, err := FromEnv(env(map[string]string{"JOB_QUEUE_URL": jobQ, "RESPONSE_QUEUE_URL": respQ}))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.JobQueueURL, want.ResponseQueueURL = jobQ, respQ
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v\nwant %+v", c, want)
	}
	if c.WorkspacePath != "/workspace" || c.HTTPAddr != ":8080" || c.AstroPort != 4321 || !c.AstroDevMode ||
		c.AutoShutdown != 5*time.Minute || c.ClaudeBin != "claude" || c.ClaudeMaxTurns != 30 ||
		c.JobTimeout != 15*time.Minute || c.MaxConcurrentUsers != 2 || c.LogLevel != slog.LevelInfo || c.LogFormat != "auto" ||
		c.TenantDiskMB != 2048 {
		t.Errorf("defaults differ from CONTRACT.md: %+v", c)
	}
	if c.TenantMaxFiles != 200000 || c.TenantMaxMemoryMB != 2048 || c.TenantNice != 10 || c.TenantMaxPorts != 8 || c.StatusSocket != "" {
		t.Errorf("tenant limit defaults differ from README.md: %+v", c)
	}
}

func TestFromEnvOverrides(t *testing.T) {
	c, err := FromEnv(env(map[string]string{
		"JOB_QUEUE_URL": jobQ, "RESPONSE_QUEUE_URL": respQ, "WORKSPACE_PATH": "/tmp/ws", "HTTP_ADDR": "127.0.0.1:9000",
		"ASTRO_PORT": "5000", "ASTRO_DEV_MODE": "false", "AUTO_SHUTDOWN_MINUTES": "0.05", "CLAUDE_MAX_TURNS": "5",
		"JOB_TIMEOUT": "90s", "MAX_CONCURRENT_USERS": "4", "LOG_LEVEL": "debug", "LOG_FORMAT": "json",
		"GIT_TOKEN_HOSTS": " github.com, git.example.com:8443 ,",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if c.WorkspacePath != "/tmp/ws" || c.HTTPAddr != "127.0.0.1:9000" || c.AstroPort != 5000 || c.AstroDevMode ||
		c.AutoShutdown != 3*time.Second || c.ClaudeMaxTurns != 5 || c.JobTimeout != 90*time.Second ||
		c.MaxConcurrentUsers != 4 || c.LogLevel != slog.LevelDebug || c.LogFormat != "json" ||
		strings.Join(c.GitTokenHosts, ",") != "github.com,git.example.com:8443" {
		t.Errorf("overrides not applied: %+v", c)
	}
}

func TestFromEnvPreview(t *testing.T) {
	base := map[string]string{"JOB_QUEUE_URL": jobQ, "RESPONSE_QUEUE_URL": respQ}
	c, err := FromEnv(env(base))
	if err != nil {
		t.Fatal(err)
	}
	if c.PreviewViewMax != 30*time.Minute || c.ECSTaskMode != TaskAuto {
		t.Errorf("PREVIEW_VIEW_MAX %s, ECS_TASK_MODE %q; want 30m, auto", c.PreviewViewMax, c.ECSTaskMode)
	}
	if c.PreviewTokenTTL != 12*time.Hour || c.PreviewIdle != 10*time.Minute || c.MaxPreviewServers() != 3 {
		t.Errorf("preview defaults: ttl %s, idle %s, servers %d; want 12h, 10m, MAX_CONCURRENT_USERS+1 = 3",
			c.PreviewTokenTTL, c.PreviewIdle, c.MaxPreviewServers())
	}
	for k, v := range map[string]string{"PREVIEW_BASE_URL": "https://{preview}.preview.example.com/", "PREVIEW_SECRET": "s",
		"PREVIEW_TOKEN_TTL": "30m", "PREVIEW_MAX_SERVERS": "5", "PREVIEW_IDLE_MINUTES": "2.5", "MAX_CONCURRENT_USERS": "7",
		"PREVIEW_VIEW_MAX": "90s"} {
		base[k] = v
	}
	c, err = FromEnv(env(base))
	if err != nil {
		t.Fatal(err)
	}
	if c.PreviewBaseURL != "https://{preview}.preview.example.com/" || c.PreviewSecret != "s" || c.PreviewTokenTTL != 30*time.Minute ||
		c.MaxPreviewServers() != 5 || c.PreviewIdle != 150*time.Second || c.PreviewViewMax != 90*time.Second {
		t.Errorf("preview overrides not applied: %+v", c)
	}
}

func TestFromEnvInvalid(t *testing.T) {
	base := map[string]string{"JOB_QUEUE_URL": jobQ, "RESPONSE_QUEUE_URL": respQ}
	tests := []struct {
		name, key, val, wantVar string
	}{
		{"missing job queue", "JOB_QUEUE_URL", "", "JOB_QUEUE_URL"},
		{"job queue not url", "JOB_QUEUE_URL", "jobs", "JOB_QUEUE_URL"},
		{"missing response queue", "RESPONSE_QUEUE_URL", "", "RESPONSE_QUEUE_URL"},
		{"same queues", "RESPONSE_QUEUE_URL", jobQ, "RESPONSE_QUEUE_URL"},
		{"relative workspace", "WORKSPACE_PATH", "ws", "WORKSPACE_PATH"},
		{"relative cache", "WORKER_CACHE_DIR", "cache", "WORKER_CACHE_DIR"},
		{"bad http addr", "HTTP_ADDR", "8080", "HTTP_ADDR"},
		{"bad port", "ASTRO_PORT", "70000", "ASTRO_PORT"},
		{"bad bool", "ASTRO_DEV_MODE", "yes please", "ASTRO_DEV_MODE"},
		{"negative minutes", "AUTO_SHUTDOWN_MINUTES", "-1", "AUTO_SHUTDOWN_MINUTES"},
		{"minutes word", "AUTO_SHUTDOWN_MINUTES", "five", "AUTO_SHUTDOWN_MINUTES"},
		{"negative duration", "AUTO_SHUTDOWN_MINUTES", "-5m", "AUTO_SHUTDOWN_MINUTES"},
		{"over a week", "PREVIEW_IDLE_MINUTES", "200h", "PREVIEW_IDLE_MINUTES"},
		{"turns zero", "CLAUDE_MAX_TURNS", "0", "CLAUDE_MAX_TURNS"},
		{"timeout number", "JOB_TIMEOUT", "15", "JOB_TIMEOUT"},
		{"users zero", "MAX_CONCURRENT_USERS", "0", "MAX_CONCURRENT_USERS"},
		{"log level", "LOG_LEVEL", "loud", "LOG_LEVEL"},
		{"log format", "LOG_FORMAT", "xml", "LOG_FORMAT"},
		{"preview url", "PREVIEW_BASE_URL", "preview", "PREVIEW_BASE_URL"},
		{"preview id in the path", "PREVIEW_BASE_URL", "https://example.com/{preview}/", "PREVIEW_BASE_URL"},
		{"preview id twice", "PREVIEW_BASE_URL", "https://{preview}.{preview}.example.com/", "PREVIEW_BASE_URL"},
		{"preview id inside a label", "PREVIEW_BASE_URL", "https://x{preview}.example.com/", "PREVIEW_BASE_URL"},
		{"both preview secrets", "PREVIEW_SECRET_SECRET_ID", "arn:preview", "PREVIEW_SECRET_SECRET_ID"},
		{"token ttl number", "PREVIEW_TOKEN_TTL", "12", "PREVIEW_TOKEN_TTL"},
		{"no preview servers", "PREVIEW_MAX_SERVERS", "0", "PREVIEW_MAX_SERVERS"},
		{"preview idle zero", "PREVIEW_IDLE_MINUTES", "0", "PREVIEW_IDLE_MINUTES"},
		{"view max number", "PREVIEW_VIEW_MAX", "30", "PREVIEW_VIEW_MAX"},
		{"view max zero", "PREVIEW_VIEW_MAX", "0s", "PREVIEW_VIEW_MAX"},
		{"agent uri", "ECS_AGENT_URI", "agent", "ECS_AGENT_URI"},
		{"task mode word", "ECS_TASK_MODE", "fleet", "ECS_TASK_MODE"},
		{"service off ECS", "ECS_TASK_MODE", "service", "ECS_TASK_MODE"},
		{"lease table off ECS without an address", "LEASE_TABLE", "leases", "PREVIEW_ADVERTISE_ADDR"},
		{"advertise address without a port", "PREVIEW_ADVERTISE_ADDR", "10.0.0.1", "PREVIEW_ADVERTISE_ADDR"},
		{"lease ttl too short", "LEASE_TTL", "1s", "LEASE_TTL"},
		{"lease ttl number", "LEASE_TTL", "30", "LEASE_TTL"},
		{"repo with creds", "REPO_URL", "https://x:ghp_abc@github.com/a/b", "REPO_URL"},
		{"repo file: relative", "REPO_URL", "file:relative", "REPO_URL"},
		{"repo scp transport helper", "REPO_URL", "git@host::x", "REPO_URL"},
		{"both keys", "ANTHROPIC_API_KEY_SECRET_ID", "arn:secret", "ANTHROPIC_API_KEY_SECRET_ID"},
		{"token host url", "GIT_TOKEN_HOSTS", "https://github.com/", "GIT_TOKEN_HOSTS"},
		{"disk quota negative", "TENANT_DISK_MB", "-1", "TENANT_DISK_MB"},
		{"files word", "TENANT_MAX_FILES", "many", "TENANT_MAX_FILES"},
		{"memory negative", "TENANT_MAX_MEMORY_MB", "-5", "TENANT_MAX_MEMORY_MB"},
		{"nice too high", "TENANT_NICE", "20", "TENANT_NICE"},
		{"ports negative", "TENANT_MAX_PORTS", "-1", "TENANT_MAX_PORTS"},
		{"relative status socket", "STATUS_SOCKET", "status.sock", "STATUS_SOCKET"},
		{"pricing not JSON", "CLAUDE_PRICING", "cheap", "CLAUDE_PRICING"},
		{"negative price", "CLAUDE_PRICING", `{"m": {"input": -1}}`, "CLAUDE_PRICING"},
		{"budget zero", "CLAUDE_MAX_BUDGET_USD", "0", "CLAUDE_MAX_BUDGET_USD"},
		{"budget too high", "CLAUDE_MAX_BUDGET_USD", "2e6", "CLAUDE_MAX_BUDGET_USD"},
		{"tenant uids of the system", "TENANT_UIDS", "500-5000", "TENANT_UIDS"},
		{"tenant uids word", "TENANT_UIDS", "many", "TENANT_UIDS"},
		{"secret refresh zero", "SECRET_REFRESH", "0s", "SECRET_REFRESH"},
		{"minutes too large for a duration", "AUTO_SHUTDOWN_MINUTES", "1e300", "AUTO_SHUTDOWN_MINUTES"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kv := map[string]string{"ANTHROPIC_API_KEY": "sk-test-key", "PREVIEW_SECRET": "preview-secret-value"}
			for k, v := range base {
				kv[k] = v
			}
			kv[tt.key] = tt.val
			_, err := FromEnv(env(kv))
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want a *FieldError", err)
			}
			if fe.Var != tt.wantVar || !strings.HasPrefix(err.Error(), tt.wantVar+": ") {
				t.Errorf("error %q does not name %s", err, tt.wantVar)
			}
			if strings.Contains(err.Error(), "ghp_abc") || strings.Contains(err.Error(), "sk-test-key") || strings.Contains(err.Error(), "preview-secret-value") {
				t.Errorf("error leaks a secret: %q", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestRouterFromEnv(t *testing.T) {
	ok := map[string]string{"PREVIEW_BASE_URL": "https://{preview}.preview.example.com/", "PREVIEW_SECRET": "s3cret-router-key",
		"LEASE_TABLE": "leases", "JOB_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/jobs.fifo"}
	c, err := RouterFromEnv(env(ok))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != ":8080" || c.PreviewDomain() != ".preview.example.com" || c.PreviewTokenTTL != 12*time.Hour {
		t.Errorf("router config %+v, domain %q", c, c.PreviewDomain())
	}
	tests := []struct{ name, key, val, wantVar string }{
		{"no preview placeholder", "PREVIEW_BASE_URL", "https://preview.example.com/", "PREVIEW_BASE_URL"},
		{"no secret", "PREVIEW_SECRET", "", "PREVIEW_SECRET"},
		{"no table", "LEASE_TABLE", "", "LEASE_TABLE"},
		{"no job queue", "JOB_QUEUE_URL", "", "JOB_QUEUE_URL"},
		{"bad address", "HTTP_ADDR", "8080", "HTTP_ADDR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kv := map[string]string{}
			for k, v := range ok {
				kv[k] = v
			}
			kv[tt.key] = tt.val
			_, err := RouterFromEnv(env(kv))
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Var != tt.wantVar {
				t.Fatalf("err = %v, want a *FieldError naming %s", err, tt.wantVar)
			}
			if strings.Contains(err.Error(), "s3cret-router-key") {
				t.Errorf("error leaks the key: %q", err)
			}
		})
	}
}

// TestMinutesAcceptDurations: the *_MINUTES variables take Go durations as
// every other time variable does, and still read a plain number as minutes.
func TestMinutesAcceptDurations(t *testing.T) {
	for v, want := range map[string]time.Duration{"5": 5 * time.Minute, "0.5": 30 * time.Second, "90s": 90 * time.Second, "1h30m": 90 * time.Minute, "0": 0} {
		env := map[string]string{"JOB_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/j", "RESPONSE_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/r",
			"AUTO_SHUTDOWN_MINUTES": v}
		c, err := FromEnv(func(k string) string { return env[k] })
		if err != nil || c.AutoShutdown != want {
			t.Errorf("AUTO_SHUTDOWN_MINUTES=%q: %v, %v; want %v", v, c.AutoShutdown, err, want)
		}
	}
}

// TestValidateChecksAConfigBuiltInCode: every range FromEnv enforces holds
// for a Config built in code too: Validate names the variable.
func TestValidateChecksAConfigBuiltInCode(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*Config)
		wantVar string
	}{
		{"port", func(c *Config) { c.AstroPort = 70000 }, "ASTRO_PORT"},
		{"negative preview servers", func(c *Config) { c.PreviewMaxServers = -1 }, "PREVIEW_MAX_SERVERS"},
		{"turns", func(c *Config) { c.ClaudeMaxTurns = 0 }, "CLAUDE_MAX_TURNS"},
		{"procs", func(c *Config) { c.TenantMaxProcs = 10 }, "TENANT_MAX_PROCS"},
		{"file size", func(c *Config) { c.TenantMaxFileMB = 1 }, "TENANT_MAX_FILE_MB"},
		{"disk", func(c *Config) { c.TenantDiskMB = -1 }, "TENANT_DISK_MB"},
		{"files", func(c *Config) { c.TenantMaxFiles = -1 }, "TENANT_MAX_FILES"},
		{"memory", func(c *Config) { c.TenantMaxMemoryMB = 1 << 25 }, "TENANT_MAX_MEMORY_MB"},
		{"nice", func(c *Config) { c.TenantNice = 20 }, "TENANT_NICE"},
		{"users", func(c *Config) { c.MaxConcurrentUsers = 65 }, "MAX_CONCURRENT_USERS"},
		{"token ttl", func(c *Config) { c.PreviewTokenTTL = 0 }, "PREVIEW_TOKEN_TTL"},
		{"view max", func(c *Config) { c.PreviewViewMax = -time.Second }, "PREVIEW_VIEW_MAX"},
		{"secret refresh", func(c *Config) { c.SecretRefresh = 0 }, "SECRET_REFRESH"},
		{"job timeout", func(c *Config) { c.JobTimeout = 0 }, "JOB_TIMEOUT"},
		{"lease ttl", func(c *Config) { c.LeaseTTL = time.Second }, "LEASE_TTL"},
		{"auto shutdown", func(c *Config) { c.AutoShutdown = 8 * 24 * time.Hour }, "AUTO_SHUTDOWN_MINUTES"},
		{"preview idle", func(c *Config) { c.PreviewIdle = 0 }, "PREVIEW_IDLE_MINUTES"},
		{"budget", func(c *Config) { c.ClaudeMaxBudgetUSD = -1 }, "CLAUDE_MAX_BUDGET_USD"},
		{"tenant uids", func(c *Config) { c.TenantUIDs.Min = 0 }, "TENANT_UIDS"},
		{"token host", func(c *Config) { c.GitTokenHosts = []string{"https://github.com/"} }, "GIT_TOKEN_HOSTS"},
	}
	valid := Default()
	valid.JobQueueURL, valid.ResponseQueueURL = jobQ, respQ
	if err := valid.Validate(); err != nil {
		t.Fatalf("Default with queues: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid
			c.GitTokenHosts = slices.Clone(valid.GitTokenHosts)
			tt.mod(&c)
			err := c.Validate()
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) || fe.Var != tt.wantVar {
				t.Fatalf("Validate() = %v, want a *FieldError naming %s", err, tt.wantVar)
			}
		})
	}
	// The zeros that mean a default or "none" pass.
	c := valid
	c.PreviewMaxServers, c.ClaudeMaxBudgetUSD, c.AutoShutdown, c.TenantDiskMB = 0, 0, 0, 0
	if err := c.Validate(); err != nil {
		t.Errorf("zeros that mean a default: %v", err)
	}
}

// TestPricingParsedOnce: CLAUDE_PRICING is parsed into the Config, and
// the table is what prices a model; unset, the Config holds nil (the
// built-in prices).
func TestPricingParsedOnce(t *testing.T) {
	kv := map[string]string{"JOB_QUEUE_URL": jobQ, "RESPONSE_QUEUE_URL": respQ}
	c, err := FromEnv(env(kv))
	if err != nil || c.ClaudePricing != nil {
		t.Fatalf("unset: %v, %v; want nil", c.ClaudePricing, err)
	}
	kv["CLAUDE_PRICING"] = `{"my-model": {"input": 7, "output": 8}}`
	if c, err = FromEnv(env(kv)); err != nil {
		t.Fatal(err)
	}
	if got := c.ClaudePricing.For("my-model-1"); got.Input != 7 || got.Output != 8 {
		t.Errorf("my-model-1 priced %+v, want input 7, output 8", got)
	}
}
