package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/webordinary/claude-code-astro/internal/config"
	"github.com/webordinary/claude-code-astro/internal/redact"
	"github.com/webordinary/claude-code-astro/internal/secrets"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/jobs/site"
	"github.com/webordinary/claude-code-astro/preview"
	"github.com/webordinary/claude-code-astro/workspace"
)

// previews wires the per-user previews: their dev servers, the tokens that
// open them, and the URLs that carry the tokens.
type previews struct {
	servers *preview.Servers
	tokens  *preview.Tokens
	base    string // PREVIEW_BASE_URL
	// sockets are the open preview sockets, closed with 1012 when another
	// worker takes a preview's lease over.
	sockets preview.Sockets
}

// previewsDeps are what the previews use beyond the configuration.
type previewsDeps struct {
	AWS        aws.Config
	Workspaces *workspace.Workspaces
	PATH       string
	// Running says whether a job of a tenant runs (its processes then
	// outlive a stopped dev server).
	Running  *site.Running
	Leases   *leases
	Redactor *redact.Redactor
	Logger   *slog.Logger
}

// newPreviews returns the previews of the users of d.Workspaces.
func newPreviews(ctx context.Context, cfg config.Config, d previewsDeps) (*previews, error) {
	key, err := previewKey(ctx, cfg, d.AWS, d.Redactor)
	if err != nil {
		return nil, err
	}
	ws, lc, log := d.Workspaces, d.Leases, d.Logger
	p := &previews{tokens: preview.NewTokens(key, cfg.PreviewTokenTTL), base: cfg.PreviewBaseURL}
	p.servers = preview.NewServers(preview.ServersConfig{
		BasePort: cfg.AstroPort, PATH: d.PATH, MaxServers: cfg.MaxPreviewServers(), IdleAfter: cfg.PreviewIdle,
		StopTimeout: jobs.DevServerStopTimeout,
		Lookup:      func(ctx context.Context, id string) (preview.Target, error) { return lookupPreview(ws, id) },
		Claim:       lc.claim,
		Stopped: func(t preview.Target) {
			if lc.stopped(t) {
				return // taken over: the tenant's processes are another task's business now
			}
			if d.Running.Busy(t.Key) {
				return // the job's end stops what the tenant left
			}
			client, user, _ := strings.Cut(t.Key, "/")
			u, err := ws.User(client, user)
			if err != nil {
				return
			}
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := u.Tenant.Stop(sctx); err != nil {
				log.Warn("cannot stop the processes of a tenant whose dev server stopped", "tenant", t.Key, "error", err)
			}
		},
		Logger: log.With("component", "preview"),
	})
	return p, nil
}

// previewKey returns the key that signs preview tokens: PREVIEW_SECRET, the
// secret PREVIEW_SECRET_SECRET_ID names, or 32 random bytes (tokens then
// last as long as this worker).
func previewKey(ctx context.Context, cfg config.Config, awsCfg aws.Config, red *redact.Redactor) ([]byte, error) {
	switch {
	case cfg.PreviewSecret != "":
		red.Add(cfg.PreviewSecret)
		return []byte(cfg.PreviewSecret), nil
	case cfg.PreviewSecretSecretID != "":
		ctx, cancel := context.WithTimeout(ctx, secretsTimeout)
		defer cancel()
		s, err := secrets.FromManager(ctx, secretsmanager.NewFromConfig(awsCfg), "PREVIEW_SECRET_SECRET_ID", cfg.PreviewSecretSecretID, red, nil)
		if err != nil {
			return nil, &config.FieldError{Var: "PREVIEW_SECRET_SECRET_ID", Reason: err.Error()}
		}
		return []byte(s.Value()), nil
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails on Linux
	return key, nil
}

// url returns clientID/userID's previewUrl: PREVIEW_BASE_URL with {preview}
// filled in and a new token in the query; "" without PREVIEW_BASE_URL.
func (p *previews) url(clientID, userID string) string {
	if p.base == "" {
		return ""
	}
	id := preview.ID(clientID, userID)
	u, err := url.Parse(strings.ReplaceAll(p.base, config.PreviewPlaceholder, id))
	if err != nil {
		return "" // PREVIEW_BASE_URL was validated at start
	}
	q := u.Query()
	q.Set(preview.TokenParam, p.tokens.IssueFor(clientID, userID))
	u.RawQuery = q.Encode()
	return u.String()
}

// perHost reports whether every preview has its own host name.
func (p *previews) perHost() bool { return strings.Contains(p.base, config.PreviewPlaceholder) }

// lookupPreview finds the user of preview id in the workspaces' index of
// previews (no walk of the root).
func lookupPreview(ws *workspace.Workspaces, id string) (preview.Target, error) {
	u, err := ws.UserOfPreview(id)
	if errors.Is(err, workspace.ErrNoPreview) {
		return preview.Target{}, preview.ErrNoWorkspace
	}
	if err != nil {
		return preview.Target{}, fmt.Errorf("look up preview %s: %w", id, err)
	}
	return site.PreviewTarget(u, ""), nil
}
