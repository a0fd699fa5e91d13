// Package config reads the worker's configuration from the environment
// (CONTRACT.md section 5): defaults in one value, the environment layered on
// top, then validation that names the variable at fault.
//
// Two rules keep it that way:
//
//   - Each default is in one place: Default. A package that a variable
//     configures (the sandbox, the gateway, the agent, the preview, the
//     workspace, the queue loop, the leases) keeps no copy: where its zero
//     value stands for the default, it takes the value from Default. So
//     config imports none of the packages it configures (deps_test.go
//     checks it); the rules it checks with live in small packages of their
//     own (internal/ident, internal/pricing).
//   - Parsing reads the form of a variable (a number, a duration, JSON);
//     Validate checks every range and rule, so a Config built in code is
//     checked as one read from the environment is.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/webordinary/claude-code-astro/internal/ident"
	"github.com/webordinary/claude-code-astro/internal/pricing"
)

// ErrInvalid is wrapped by every configuration error.
var ErrInvalid = errors.New("invalid configuration")

// FieldError names the environment variable at fault.
type FieldError struct {
	Var    string
	Reason string
}

func (e *FieldError) Error() string { return e.Var + ": " + e.Reason }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Config is the worker's configuration. The zero value is not useful: start
// from Default.
type Config struct {
	JobQueueURL      string
	ResponseQueueURL string
	WorkspacePath    string
	HTTPAddr         string
	AstroPort        int
	AstroDevMode     bool
	PreviewBaseURL   string
	// PreviewSecret and PreviewSecretSecretID give the key that signs
	// preview tokens; neither means a random key per start.
	PreviewSecret         string
	PreviewSecretSecretID string
	// PreviewTokenTTL is how long a preview token opens its preview.
	PreviewTokenTTL time.Duration
	// PreviewMaxServers is how many dev servers run at once; 0 means
	// MaxConcurrentUsers + 1.
	PreviewMaxServers int
	// PreviewIdle stops a dev server nobody viewed for that long.
	PreviewIdle time.Duration
	// PreviewViewMax (PREVIEW_VIEW_MAX) is how long after its browser's
	// last page load an open preview socket still counts as activity.
	PreviewViewMax time.Duration
	// AutoShutdown is the idle time before the worker stops itself; 0 never.
	AutoShutdown time.Duration

	AnthropicAPIKey         string
	AnthropicAPIKeySecretID string
	AnthropicBaseURL        string
	GitHubToken             string
	GitHubTokenSecretID     string
	// GitTokenHosts are the hosts the git token is sent to (GIT_TOKEN_HOSTS,
	// comma-separated host or host:port); default github.com.
	GitTokenHosts []string

	RepoURL string
	// NpmCacheDir (NPM_CACHE_DIR) is a read-only npm cache each tenant's
	// own cache starts from; empty means none.
	NpmCacheDir    string
	GitAuthorName  string
	GitAuthorEmail string

	ClaudeBin string
	// CacheDir (WORKER_CACHE_DIR) is where the worker keeps a copy of the
	// Claude Code CLI that tenant uids can reach, when CLAUDE_BIN lies out
	// of their reach; empty means the default (claudecode.DefaultDir).
	CacheDir       string
	ClaudeModel    string
	ClaudeMaxTurns int
	// ClaudeMaxBudgetUSD is the most one job may spend (CLAUDE_MAX_BUDGET_USD);
	// 0 means no limit.
	ClaudeMaxBudgetUSD float64
	// ClaudePricing is CLAUDE_PRICING, parsed: the built-in prices with
	// the variable's JSON laid over them. Nil means the built-in prices.
	ClaudePricing *pricing.Table
	// SecretRefresh is how often secrets given by Secrets Manager id are
	// read again (SECRET_REFRESH).
	SecretRefresh time.Duration

	// TenantUIDs is the range tenant uids come from (TENANT_UIDS, MIN-MAX).
	TenantUIDs ident.UIDRange
	// TenantMaxProcs is RLIMIT_NPROC of every tenant uid (TENANT_MAX_PROCS).
	TenantMaxProcs int
	// TenantMaxFileMB is RLIMIT_FSIZE of tenant processes, in MiB
	// (TENANT_MAX_FILE_MB): it caps a clone's pack.
	TenantMaxFileMB int
	// TenantDiskMB is the most disk a user's workspace may use, in MiB
	// (TENANT_DISK_MB).
	TenantDiskMB int
	// TenantMaxFiles is the most files (inodes) a user's workspace may
	// hold (TENANT_MAX_FILES).
	TenantMaxFiles int
	// TenantMaxMemoryMB is RLIMIT_DATA of each tenant process, in MiB
	// (TENANT_MAX_MEMORY_MB); 0 means none.
	TenantMaxMemoryMB int
	// TenantNice is the niceness of tenant processes (TENANT_NICE).
	TenantNice int
	// TenantMaxPorts is how many listening TCP sockets one tenant's
	// processes may hold (TENANT_MAX_PORTS); 0 is no bound.
	TenantMaxPorts int
	// StatusSocket is the unix socket `worker status` reads tenant
	// details from (STATUS_SOCKET); empty means DefaultStatusSocket.
	StatusSocket string

	JobTimeout         time.Duration
	MaxConcurrentUsers int

	LogLevel  slog.Level
	LogFormat string // "auto", "json" or "text"

	// ECSMetadataURI is ECS_CONTAINER_METADATA_URI_V4, empty off ECS.
	ECSMetadataURI string
	// ECSAgentURI is ECS_AGENT_URI (set by ECS): the agent's endpoint for
	// task scale-in protection.
	ECSAgentURI string
	// ECSTaskMode (ECS_TASK_MODE) says how the task was started: TaskService
	// (in an ECS service: scale-in protection, never StopTask),
	// TaskStandalone (RunTask: StopTask when idle) or TaskAuto (a service
	// when the task metadata names one).
	ECSTaskMode string

	// LeaseTable (LEASE_TABLE) is the DynamoDB table of preview leases
	// (CONTRACT.md section 6); empty means one worker, no leases.
	LeaseTable string
	// PreviewAdvertiseAddr (PREVIEW_ADVERTISE_ADDR) is the host:port at
	// which routers reach this worker's HTTP port; empty means, on ECS, the
	// task's private IPv4 and HTTP_ADDR's port.
	PreviewAdvertiseAddr string
	// LeaseTTL (LEASE_TTL) is a preview lease's lifetime.
	LeaseTTL time.Duration
}

// ECS_TASK_MODE values.
const (
	TaskAuto       = "auto"
	TaskService    = "service"
	TaskStandalone = "standalone"
)

// PreviewPlaceholder stands for a user's preview id in PREVIEW_BASE_URL.
const PreviewPlaceholder = "{preview}"

// MaxPreviewServers returns PREVIEW_MAX_SERVERS, or its default
// MAX_CONCURRENT_USERS + 1.
func (c Config) MaxPreviewServers() int {
	if c.PreviewMaxServers > 0 {
		return c.PreviewMaxServers
	}
	return c.MaxConcurrentUsers + 1
}

// Default returns the configuration with every default of CONTRACT.md.
func Default() Config {
	return Config{
		WorkspacePath:      "/workspace",
		HTTPAddr:           ":8080",
		AstroPort:          4321,
		AstroDevMode:       true,
		AutoShutdown:       5 * time.Minute,
		GitAuthorName:      "Claude Code",
		GitAuthorEmail:     "claude@webordinary.com",
		ClaudeBin:          "claude",
		GitTokenHosts:      []string{"github.com"},
		ClaudeMaxTurns:     30,
		SecretRefresh:      15 * time.Minute,
		PreviewTokenTTL:    12 * time.Hour,
		PreviewIdle:        10 * time.Minute,
		PreviewViewMax:     30 * time.Minute,
		ECSTaskMode:        TaskAuto,
		LeaseTTL:           30 * time.Second,
		TenantUIDs:         ident.UIDRange{Min: 100000, Max: 1099999}, // above every system and login account
		TenantMaxProcs:     1024,
		TenantMaxFileMB:    2048,
		TenantDiskMB:       2048,
		TenantMaxFiles:     200000,
		TenantMaxMemoryMB:  2048,
		TenantNice:         10,
		TenantMaxPorts:     8,
		JobTimeout:         15 * time.Minute,
		MaxConcurrentUsers: 2,
		LogLevel:           slog.LevelInfo,
		LogFormat:          "auto",
	}
}

// FromEnv layers the environment, read through getenv, over Default and
// validates the result. The error names the first variable at fault.
func FromEnv(getenv func(string) string) (Config, error) {
	c := Default()
	p := parser{getenv: getenv}
	p.str("JOB_QUEUE_URL", &c.JobQueueURL)
	p.str("RESPONSE_QUEUE_URL", &c.ResponseQueueURL)
	p.str("WORKSPACE_PATH", &c.WorkspacePath)
	p.str("HTTP_ADDR", &c.HTTPAddr)
	p.integer("ASTRO_PORT", &c.AstroPort)
	p.boolean("ASTRO_DEV_MODE", &c.AstroDevMode)
	p.str("PREVIEW_BASE_URL", &c.PreviewBaseURL)
	p.str("PREVIEW_SECRET", &c.PreviewSecret)
	p.str("PREVIEW_SECRET_SECRET_ID", &c.PreviewSecretSecretID)
	p.duration("PREVIEW_TOKEN_TTL", &c.PreviewTokenTTL)
	p.integerNotZero("PREVIEW_MAX_SERVERS", &c.PreviewMaxServers)
	p.minutes("PREVIEW_IDLE_MINUTES", &c.PreviewIdle)
	p.duration("PREVIEW_VIEW_MAX", &c.PreviewViewMax)
	p.minutes("AUTO_SHUTDOWN_MINUTES", &c.AutoShutdown)
	p.str("ANTHROPIC_API_KEY", &c.AnthropicAPIKey)
	p.str("ANTHROPIC_API_KEY_SECRET_ID", &c.AnthropicAPIKeySecretID)
	p.str("ANTHROPIC_BASE_URL", &c.AnthropicBaseURL)
	p.str("GITHUB_TOKEN", &c.GitHubToken)
	p.str("GITHUB_TOKEN_SECRET_ID", &c.GitHubTokenSecretID)
	p.list("GIT_TOKEN_HOSTS", &c.GitTokenHosts)
	p.str("REPO_URL", &c.RepoURL)
	p.str("NPM_CACHE_DIR", &c.NpmCacheDir)
	p.str("GIT_AUTHOR_NAME", &c.GitAuthorName)
	p.str("GIT_AUTHOR_EMAIL", &c.GitAuthorEmail)
	p.str("CLAUDE_BIN", &c.ClaudeBin)
	p.str("WORKER_CACHE_DIR", &c.CacheDir)
	p.str("CLAUDE_MODEL", &c.ClaudeModel)
	p.integer("CLAUDE_MAX_TURNS", &c.ClaudeMaxTurns)
	p.dollars("CLAUDE_MAX_BUDGET_USD", &c.ClaudeMaxBudgetUSD)
	p.pricing("CLAUDE_PRICING", &c.ClaudePricing)
	p.duration("SECRET_REFRESH", &c.SecretRefresh)
	p.uidRange("TENANT_UIDS", &c.TenantUIDs)
	p.integer("TENANT_MAX_PROCS", &c.TenantMaxProcs)
	p.integer("TENANT_MAX_FILE_MB", &c.TenantMaxFileMB)
	p.integer("TENANT_DISK_MB", &c.TenantDiskMB)
	p.integer("TENANT_MAX_FILES", &c.TenantMaxFiles)
	p.integer("TENANT_MAX_MEMORY_MB", &c.TenantMaxMemoryMB)
	p.integer("TENANT_NICE", &c.TenantNice)
	p.integer("TENANT_MAX_PORTS", &c.TenantMaxPorts)
	p.str("STATUS_SOCKET", &c.StatusSocket)
	p.duration("JOB_TIMEOUT", &c.JobTimeout)
	p.integer("MAX_CONCURRENT_USERS", &c.MaxConcurrentUsers)
	p.level("LOG_LEVEL", &c.LogLevel)
	p.str("LOG_FORMAT", &c.LogFormat)
	p.str("ECS_CONTAINER_METADATA_URI_V4", &c.ECSMetadataURI)
	p.str("ECS_AGENT_URI", &c.ECSAgentURI)
	p.str("ECS_TASK_MODE", &c.ECSTaskMode)
	p.str("LEASE_TABLE", &c.LeaseTable)
	p.str("PREVIEW_ADVERTISE_ADDR", &c.PreviewAdvertiseAddr)
	p.duration("LEASE_TTL", &c.LeaseTTL)
	if p.err != nil {
		return Config{}, p.err
	}
	return c, c.Validate()
}

// Validate checks the configuration as a whole.
func (c Config) Validate() error {
	for _, q := range []struct{ name, val string }{{"JOB_QUEUE_URL", c.JobQueueURL}, {"RESPONSE_QUEUE_URL", c.ResponseQueueURL}} {
		if q.val == "" {
			return &FieldError{q.name, "is required (the SQS queue URL)"}
		}
		if u, err := url.Parse(q.val); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return &FieldError{q.name, "must be an http(s) SQS queue URL"}
		}
	}
	if c.JobQueueURL == c.ResponseQueueURL {
		return &FieldError{"RESPONSE_QUEUE_URL", "must differ from JOB_QUEUE_URL"}
	}
	if !strings.HasPrefix(c.WorkspacePath, "/") {
		return &FieldError{"WORKSPACE_PATH", "must be an absolute path"}
	}
	if c.StatusSocket != "" && !strings.HasPrefix(c.StatusSocket, "/") {
		return &FieldError{"STATUS_SOCKET", "must be an absolute path"}
	}
	if c.NpmCacheDir != "" && !strings.HasPrefix(c.NpmCacheDir, "/") {
		return &FieldError{"NPM_CACHE_DIR", "must be an absolute path"}
	}
	if c.CacheDir != "" && !strings.HasPrefix(c.CacheDir, "/") {
		return &FieldError{"WORKER_CACHE_DIR", "must be an absolute path"}
	}
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		return &FieldError{"HTTP_ADDR", "must be host:port or :port"}
	}
	if c.PreviewBaseURL != "" {
		u, err := url.Parse(strings.ReplaceAll(c.PreviewBaseURL, PreviewPlaceholder, "p"))
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return &FieldError{"PREVIEW_BASE_URL", "must be an http(s) URL"}
		}
		if n := strings.Count(c.PreviewBaseURL, PreviewPlaceholder); n > 1 ||
			(n == 1 && !strings.Contains(c.PreviewBaseURL, "://"+PreviewPlaceholder+".")) {
			return &FieldError{"PREVIEW_BASE_URL", "may hold " + PreviewPlaceholder + " once, as the first label of the host, such as https://{preview}.preview.example.com/"}
		}
	}
	if c.PreviewSecret != "" && c.PreviewSecretSecretID != "" {
		return &FieldError{"PREVIEW_SECRET_SECRET_ID", "set either PREVIEW_SECRET or PREVIEW_SECRET_SECRET_ID, not both"}
	}
	if c.AnthropicAPIKey != "" && c.AnthropicAPIKeySecretID != "" {
		return &FieldError{"ANTHROPIC_API_KEY_SECRET_ID", "set either ANTHROPIC_API_KEY or ANTHROPIC_API_KEY_SECRET_ID, not both"}
	}
	if c.GitHubToken != "" && c.GitHubTokenSecretID != "" {
		return &FieldError{"GITHUB_TOKEN_SECRET_ID", "set either GITHUB_TOKEN or GITHUB_TOKEN_SECRET_ID, not both"}
	}
	if c.AnthropicBaseURL != "" {
		if u, err := url.Parse(c.AnthropicBaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
			return &FieldError{"ANTHROPIC_BASE_URL", "must be an http(s) URL without credentials"}
		}
	}
	if c.RepoURL != "" {
		if err := ident.CheckRepoURL(c.RepoURL); err != nil {
			return &FieldError{"REPO_URL", err.Error()}
		}
	}
	if c.ClaudeBin == "" {
		return &FieldError{"CLAUDE_BIN", "must not be empty"}
	}
	switch c.LogFormat {
	case "auto", "json", "text":
	default:
		return &FieldError{"LOG_FORMAT", `must be "auto", "json" or "text"`}
	}
	if c.ECSMetadataURI != "" {
		if u, err := url.Parse(c.ECSMetadataURI); err != nil || u.Scheme != "http" || u.Host == "" {
			return &FieldError{"ECS_CONTAINER_METADATA_URI_V4", "must be an http URL"}
		}
	}
	if c.ECSAgentURI != "" {
		if u, err := url.Parse(c.ECSAgentURI); err != nil || u.Scheme != "http" || u.Host == "" {
			return &FieldError{"ECS_AGENT_URI", "must be an http URL"}
		}
	}
	switch c.ECSTaskMode {
	case TaskAuto, TaskService, TaskStandalone:
	default:
		return &FieldError{"ECS_TASK_MODE", `must be "auto", "service" or "standalone"`}
	}
	if c.ECSTaskMode == TaskService && (c.ECSAgentURI == "" || c.ECSMetadataURI == "") {
		return &FieldError{"ECS_TASK_MODE", "is service, but ECS_AGENT_URI or ECS_CONTAINER_METADATA_URI_V4 is not set: not on ECS"}
	}
	if err := c.validateRanges(); err != nil {
		return err
	}
	if err := c.validateFleet(); err != nil {
		return err
	}
	return nil
}

// week bounds the *_MINUTES variables.
const week = 7 * 24 * time.Hour

// validateRanges checks every number and duration against its range, and
// the rules of TENANT_UIDS and GIT_TOKEN_HOSTS.
func (c Config) validateRanges() error {
	for _, n := range []struct {
		name      string
		v, lo, hi int
		zero      string // what 0 means, when it is allowed and below lo
	}{
		{"ASTRO_PORT", c.AstroPort, 1, 65535, ""},
		{"PREVIEW_MAX_SERVERS", c.PreviewMaxServers, 1, 1000, "MAX_CONCURRENT_USERS + 1"},
		{"CLAUDE_MAX_TURNS", c.ClaudeMaxTurns, 1, 1000, ""},
		{"TENANT_MAX_PROCS", c.TenantMaxProcs, 64, 1 << 20, ""},
		{"TENANT_MAX_FILE_MB", c.TenantMaxFileMB, 16, 1 << 20, ""},
		{"TENANT_DISK_MB", c.TenantDiskMB, 0, 1 << 24, ""},
		{"TENANT_MAX_FILES", c.TenantMaxFiles, 0, 1<<31 - 1, ""},
		{"TENANT_MAX_MEMORY_MB", c.TenantMaxMemoryMB, 0, 1 << 24, ""},
		{"TENANT_NICE", c.TenantNice, 0, 19, ""},
		{"TENANT_MAX_PORTS", c.TenantMaxPorts, 0, 1000, ""},
		{"MAX_CONCURRENT_USERS", c.MaxConcurrentUsers, 1, 64, ""},
	} {
		if n.v == 0 && n.zero != "" {
			continue
		}
		if n.v < n.lo || n.v > n.hi {
			reason := fmt.Sprintf("must be a whole number from %d to %d, not %d", n.lo, n.hi, n.v)
			if n.zero != "" {
				reason += " (unset means " + n.zero + ")"
			}
			return &FieldError{n.name, reason}
		}
	}
	for _, d := range []struct {
		name     string
		v, least time.Duration
	}{
		{"PREVIEW_TOKEN_TTL", c.PreviewTokenTTL, 1},
		{"PREVIEW_VIEW_MAX", c.PreviewViewMax, 1},
		{"SECRET_REFRESH", c.SecretRefresh, 1},
		{"JOB_TIMEOUT", c.JobTimeout, 1},
		{"LEASE_TTL", c.LeaseTTL, 3 * time.Second},
	} {
		if d.v < d.least {
			if d.least > 1 {
				return &FieldError{d.name, fmt.Sprintf("must be a duration of at least %s, not %s", d.least, d.v)}
			}
			return &FieldError{d.name, fmt.Sprintf("must be a positive duration such as 15m or 90s, not %s", d.v)}
		}
	}
	if c.AutoShutdown < 0 || c.AutoShutdown > week {
		return &FieldError{"AUTO_SHUTDOWN_MINUTES", fmt.Sprintf("must be a duration from 0 (never) up to a week, not %s", c.AutoShutdown)}
	}
	if c.PreviewIdle <= 0 || c.PreviewIdle > week {
		return &FieldError{"PREVIEW_IDLE_MINUTES", fmt.Sprintf("must be a duration above 0 and up to a week, not %s", c.PreviewIdle)}
	}
	if c.ClaudeMaxBudgetUSD < 0 || c.ClaudeMaxBudgetUSD > 1e6 || math.IsNaN(c.ClaudeMaxBudgetUSD) {
		return &FieldError{"CLAUDE_MAX_BUDGET_USD", fmt.Sprintf("must be a number of US dollars from 0 (no limit) to 1000000, not %v", c.ClaudeMaxBudgetUSD)}
	}
	if err := c.TenantUIDs.Check(); err != nil {
		return &FieldError{"TENANT_UIDS", err.Error()}
	}
	for _, h := range c.GitTokenHosts {
		if h == "" || strings.ContainsAny(h, "/@ ") {
			return &FieldError{"GIT_TOKEN_HOSTS", fmt.Sprintf("wants hosts such as github.com or 127.0.0.1:8080, comma-separated, not %q", h)}
		}
	}
	return nil
}

// parser reads variables, keeping the first error.
type parser struct {
	getenv func(string) string
	err    error
}

func (p *parser) lookup(name string) (string, bool) {
	if p.err != nil {
		return "", false
	}
	v := strings.TrimSpace(p.getenv(name))
	return v, v != ""
}

func (p *parser) fail(name, format string, args ...any) {
	p.err = &FieldError{name, fmt.Sprintf(format, args...)}
}

func (p *parser) str(name string, dst *string) {
	if v, ok := p.lookup(name); ok {
		*dst = v
	}
}

func (p *parser) list(name string, dst *[]string) {
	v, ok := p.lookup(name)
	if !ok {
		return
	}
	var out []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	*dst = out
}

func (p *parser) integer(name string, dst *int) {
	v, ok := p.lookup(name)
	if !ok {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		p.fail(name, "must be a whole number, not %q", v)
		return
	}
	*dst = n
}

// integerNotZero reads a whole number whose 0, in the Config, means the
// default: an explicit 0 is refused, as the variable says that by being
// unset.
func (p *parser) integerNotZero(name string, dst *int) {
	if v, ok := p.lookup(name); ok && v == "0" {
		p.fail(name, "must not be 0: unset it for the default")
		return
	}
	p.integer(name, dst)
}

func (p *parser) boolean(name string, dst *bool) {
	v, ok := p.lookup(name)
	if !ok {
		return
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.fail(name, `must be "true" or "false", not %q`, v)
		return
	}
	*dst = b
}

// minutes reads a *_MINUTES variable: a Go duration, or (the old form) a
// number of minutes.
func (p *parser) minutes(name string, dst *time.Duration) {
	v, ok := p.lookup(name)
	if !ok {
		return
	}
	// A Go duration ("90s", "1h30m"), as every other time variable; a
	// plain number is minutes, as the variable's name has always said.
	d, err := time.ParseDuration(v)
	if err != nil {
		var m float64
		if m, err = strconv.ParseFloat(v, 64); err == nil && math.Abs(m) <= float64(week/time.Minute) {
			d = time.Duration(m * float64(time.Minute))
		} else if err == nil {
			d = week + 1 // out of range, and too large for a Duration: Validate says so
		}
	}
	if err != nil {
		p.fail(name, "must be a duration such as 10m or 90s, or a number of minutes, not %q", v)
		return
	}
	*dst = d
}

func (p *parser) duration(name string, dst *time.Duration) {
	v, ok := p.lookup(name)
	if !ok {
		return
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		p.fail(name, "must be a duration such as 15m or 90s, not %q", v)
		return
	}
	*dst = d
}

// dollars reads an amount. An explicit 0 is refused: in the Config it
// means no limit, which the variable says by being unset, and "0" could be
// read as "spend nothing".
func (p *parser) dollars(name string, dst *float64) {
	v, ok := p.lookup(name)
	if !ok {
		return
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f == 0 {
		p.fail(name, "must be a number of US dollars above 0, such as 2.50 (unset means no limit), not %q", v)
		return
	}
	*dst = f
}

func (p *parser) uidRange(name string, dst *ident.UIDRange) {
	v, ok := p.lookup(name)
	if !ok {
		return
	}
	r, err := ident.ParseUIDRange(v)
	if err != nil {
		p.fail(name, "%v", err)
		return
	}
	*dst = r
}

// pricing reads CLAUDE_PRICING once, into the table the gateway uses.
func (p *parser) pricing(name string, dst **pricing.Table) {
	v, ok := p.lookup(name)
	if !ok {
		return
	}
	t, err := pricing.Parse(v)
	if err != nil {
		p.fail(name, "%v", err)
		return
	}
	*dst = t
}

func (p *parser) level(name string, dst *slog.Level) {
	v, ok := p.lookup(name)
	if !ok {
		return
	}
	switch strings.ToLower(v) {
	case "debug":
		*dst = slog.LevelDebug
	case "info":
		*dst = slog.LevelInfo
	case "warn", "warning":
		*dst = slog.LevelWarn
	case "error":
		*dst = slog.LevelError
	default:
		p.fail(name, `must be "debug", "info", "warn" or "error", not %q`, v)
	}
}

// validateFleet checks LEASE_TABLE and PREVIEW_ADVERTISE_ADDR.
func (c Config) validateFleet() error {
	if c.PreviewAdvertiseAddr != "" {
		host, port, err := net.SplitHostPort(c.PreviewAdvertiseAddr)
		if err != nil || host == "" || port == "" {
			return &FieldError{"PREVIEW_ADVERTISE_ADDR", "must be host:port, such as 10.0.1.23:8080"}
		}
	}
	if c.LeaseTable != "" && c.PreviewAdvertiseAddr == "" && c.ECSMetadataURI == "" {
		return &FieldError{"PREVIEW_ADVERTISE_ADDR", "is required with LEASE_TABLE off ECS: the host:port at which routers reach this worker"}
	}
	return nil
}
