package config

import (
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"
)

// Router is the configuration of `worker router` (CONTRACT.md section 6).
type Router struct {
	HTTPAddr              string
	PreviewBaseURL        string
	PreviewSecret         string
	PreviewSecretSecretID string
	PreviewTokenTTL       time.Duration
	LeaseTable            string
	JobQueueURL           string
	LogLevel              slog.Level
	LogFormat             string
}

// RouterFromEnv reads and validates the router's configuration. The error
// names the first variable at fault.
func RouterFromEnv(getenv func(string) string) (Router, error) {
	d := Default()
	c := Router{HTTPAddr: d.HTTPAddr, PreviewTokenTTL: d.PreviewTokenTTL, LogLevel: d.LogLevel, LogFormat: d.LogFormat}
	p := parser{getenv: getenv}
	p.str("HTTP_ADDR", &c.HTTPAddr)
	p.str("PREVIEW_BASE_URL", &c.PreviewBaseURL)
	p.str("PREVIEW_SECRET", &c.PreviewSecret)
	p.str("PREVIEW_SECRET_SECRET_ID", &c.PreviewSecretSecretID)
	p.duration("PREVIEW_TOKEN_TTL", &c.PreviewTokenTTL)
	p.str("LEASE_TABLE", &c.LeaseTable)
	p.str("JOB_QUEUE_URL", &c.JobQueueURL)
	p.level("LOG_LEVEL", &c.LogLevel)
	p.str("LOG_FORMAT", &c.LogFormat)
	if p.err != nil {
		return Router{}, p.err
	}
	return c, c.Validate()
}

// Validate checks the router's configuration.
func (c Router) Validate() error {
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		return &FieldError{"HTTP_ADDR", "must be host:port or :port"}
	}
	if !strings.Contains(c.PreviewBaseURL, "://"+PreviewPlaceholder+".") || strings.Count(c.PreviewBaseURL, PreviewPlaceholder) != 1 {
		return &FieldError{"PREVIEW_BASE_URL", "is required by the router, with " + PreviewPlaceholder + " as the first label of the host, such as https://{preview}.preview.example.com/"}
	}
	if u, err := url.Parse(strings.ReplaceAll(c.PreviewBaseURL, PreviewPlaceholder, "p")); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return &FieldError{"PREVIEW_BASE_URL", "must be an http(s) URL"}
	}
	switch {
	case c.PreviewSecret == "" && c.PreviewSecretSecretID == "":
		return &FieldError{"PREVIEW_SECRET", "is required by the router (or PREVIEW_SECRET_SECRET_ID): the workers' key, which checks their tokens"}
	case c.PreviewSecret != "" && c.PreviewSecretSecretID != "":
		return &FieldError{"PREVIEW_SECRET_SECRET_ID", "set either PREVIEW_SECRET or PREVIEW_SECRET_SECRET_ID, not both"}
	}
	if c.LeaseTable == "" {
		return &FieldError{"LEASE_TABLE", "is required by the router: the DynamoDB table of preview leases"}
	}
	if u, err := url.Parse(c.JobQueueURL); c.JobQueueURL == "" || err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return &FieldError{"JOB_QUEUE_URL", "is required by the router (it sends preview jobs there): an http(s) SQS queue URL"}
	}
	switch c.LogFormat {
	case "auto", "json", "text":
	default:
		return &FieldError{"LOG_FORMAT", `must be "auto", "json" or "text"`}
	}
	return nil
}

// PreviewDomain returns what follows {preview} in the host of
// PREVIEW_BASE_URL: ".preview.example.com".
func (c Router) PreviewDomain() string {
	u, err := url.Parse(strings.ReplaceAll(c.PreviewBaseURL, PreviewPlaceholder, "p"))
	if err != nil {
		return ""
	}
	return strings.TrimPrefix(u.Hostname(), "p")
}
