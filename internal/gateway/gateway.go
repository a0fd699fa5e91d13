// Package gateway is how tenant processes reach what needs the worker's
// secrets, without ever holding one: a loopback HTTP endpoint that forwards
// the Messages API to the real upstream with the real API key, and git's
// smart HTTP to a workspace's recorded repository with the real git token.
//
// A job gets a Lease: random credentials of its own, one per part (the API
// credential only for a job that runs the agent), each good for its own
// part only and only until the lease ends. The Claude Code CLI is given the
// gateway as ANTHROPIC_BASE_URL and the API credential as its key; git, run
// as the tenant, is given the gateway's URL and the git credential in its
// environment. The gateway checks the credential, swaps it for the real
// secret, and refuses (401) anything else. The real secrets exist only in
// the worker.
//
// Least privilege: the API part forwards only POST /v1/messages and
// /v1/messages/count_tokens, and reserves a call's worst case against the
// job's budget before forwarding it (settled to the reported usage after),
// so concurrent calls cannot overspend it. The git part reaches the one
// repository the job named; a push may only create or fast-forward the
// job's own branch refs/heads/thread-{ThreadID} (the pkt-line commands are
// read, and the pack checked for the fast-forward, before it is forwarded).
package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/webordinary/claude-code-astro/internal/config"
	"github.com/webordinary/claude-code-astro/internal/pricing"
	"github.com/webordinary/claude-code-astro/internal/secrets"
)

// Path prefixes of the gateway's two parts.
const (
	apiPrefix = "/anthropic"
	gitPrefix = "/git/repo.git"
)

// DefaultAPIUpstream is where the Messages API is when ANTHROPIC_BASE_URL is
// not set.
const DefaultAPIUpstream = "https://api.anthropic.com"

// Config configures a Gateway.
type Config struct {
	// APIUpstream is the real Messages API (the worker's
	// ANTHROPIC_BASE_URL). Empty means DefaultAPIUpstream.
	APIUpstream string
	// APIKey is the real key; nil or empty refuses every API request.
	APIKey *secrets.Secret
	// GitToken is the real git token; nil or empty sends none.
	GitToken *secrets.Secret
	// TokenHosts are the hosts (GIT_TOKEN_HOSTS) the git token is sent to.
	// Empty means config.Default()'s.
	TokenHosts []string
	// Pricing prices the API's usage for budgets (CLAUDE_PRICING). Nil
	// means the built-in prices.
	Pricing *pricing.Table
	// Transport carries requests to the upstreams. Nil means a transport
	// that ignores proxy settings of the environment.
	Transport http.RoundTripper
	// Logger receives refusals and upstream errors. Nil discards them.
	Logger *slog.Logger
}

// Gateway serves leases' requests. Create it with New, then Listen (or
// mount Handler); it is safe for concurrent use.
type Gateway struct {
	cfg       Config
	log       *slog.Logger
	transport http.RoundTripper
	api       http.Handler
	git       http.Handler
	baseURL   string // http://127.0.0.1:PORT, once listening

	mu        sync.Mutex
	apiLeases map[string]*Lease // by API credential
	gitLeases map[string]*Lease // by git credential
}

// New returns a Gateway.
func New(cfg Config) *Gateway {
	if cfg.APIUpstream == "" {
		cfg.APIUpstream = DefaultAPIUpstream
	}
	if len(cfg.TokenHosts) == 0 {
		cfg.TokenHosts = config.Default().GitTokenHosts
	}
	if cfg.Pricing == nil {
		cfg.Pricing = pricing.Builtin()
	}
	g := &Gateway{cfg: cfg, log: cfg.Logger, transport: cfg.Transport,
		apiLeases: map[string]*Lease{}, gitLeases: map[string]*Lease{}}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.transport == nil {
		g.transport = &http.Transport{
			Proxy:                 nil, // never the environment's: a tenant cannot set it, and the worker needs none
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          32,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
	}
	g.api = g.newAPIProxy()
	g.git = g.newGitProxy()
	return g
}

// Listen serves the gateway on a free loopback port until ctx ends, and
// returns once it listens. Its address is in BaseURL.
func (g *Gateway) Listen(ctx context.Context) (done <-chan struct{}, err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the gateway: %w", err)
	}
	g.mu.Lock()
	g.baseURL = "http://" + ln.Addr().String()
	g.mu.Unlock()
	srv := &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(g.log.Handler(), slog.LevelWarn)}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.log.Error("stopped serving", "error", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close() // streams still open: cut them
		}
	}()
	return finished, nil
}

// BaseURL returns the gateway's address, http://127.0.0.1:PORT, or "" before
// Listen.
func (g *Gateway) BaseURL() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.baseURL
}

// ServeHTTP routes a request to the API or the git part.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == apiPrefix || strings.HasPrefix(r.URL.Path, apiPrefix+"/"):
		g.api.ServeHTTP(w, r)
	case strings.HasPrefix(r.URL.Path, gitPrefix+"/"):
		g.git.ServeHTTP(w, r)
	default:
		g.refuse(w, r, http.StatusNotFound, "no such path", "")
	}
}

// LeaseOptions describe one job's lease.
type LeaseOptions struct {
	// Tenant names the tenant, for logs.
	Tenant string
	// JobID names the job, for logs.
	JobID string
	// API gives the job an API credential: only a job that runs the agent
	// needs one. Without it APIKey is empty and no API call is forwarded.
	API bool
	// ThreadID names the one branch a push may update:
	// refs/heads/thread-{ThreadID}, created or fast-forwarded. Empty means
	// the job may fetch but never push.
	ThreadID string
	// BudgetUSD, when above zero, is the most the job's API calls may
	// cost: each call's worst case is reserved before it is forwarded, and
	// a call that does not fit in what is left is refused.
	BudgetUSD float64
}

// Lease is one job's access through the gateway. Its methods are safe for
// concurrent use.
type Lease struct {
	g        *Gateway
	opts     LeaseOptions
	apiKey   string
	gitToken string

	mu       sync.Mutex
	closed   bool
	repoURL  string // the one repository git may reach, once named
	usage    Usage
	cost     float64 // settled: what answered calls cost
	reserved float64 // the worst case of calls under way
	exceeded bool
}

// Lease starts a job's lease. End it with Close.
func (g *Gateway) Lease(opts LeaseOptions) *Lease {
	l := &Lease{g: g, opts: opts, gitToken: "git-" + randomToken()}
	if opts.API {
		l.apiKey = "api-" + randomToken()
	}
	g.mu.Lock()
	if l.apiKey != "" {
		g.apiLeases[l.apiKey] = l
	}
	g.gitLeases[l.gitToken] = l
	g.mu.Unlock()
	return l
}

// randomToken returns 256 random bits in hex.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}

// Close ends the lease: its credentials stop working at once.
func (l *Lease) Close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.g.mu.Lock()
	delete(l.g.apiLeases, l.apiKey)
	delete(l.g.gitLeases, l.gitToken)
	l.g.mu.Unlock()
}

// APIKey is the job's API credential: the CLI's ANTHROPIC_API_KEY. It is
// empty for a lease without LeaseOptions.API.
func (l *Lease) APIKey() string { return l.apiKey }

// APIBaseURL is the CLI's ANTHROPIC_BASE_URL.
func (l *Lease) APIBaseURL() string { return l.g.BaseURL() + apiPrefix }

// Usage returns the tokens the job's API calls used so far, and their cost
// in US dollars by the gateway's pricing.
func (l *Lease) Usage() (Usage, float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.usage, l.cost
}

// BudgetExceeded reports whether a call was refused because the job's
// budget was spent.
func (l *Lease) BudgetExceeded() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.exceeded
}

// lease returns the open lease a credential of one part (apiLeases or
// gitLeases) belongs to: a credential of the other part is no credential.
func (g *Gateway) lease(part map[string]*Lease, credential string) (*Lease, bool) {
	if credential == "" {
		return nil, false
	}
	g.mu.Lock()
	l, ok := part[credential]
	g.mu.Unlock()
	return l, ok
}

// refuse answers a request the gateway will not forward, and logs it.
func (g *Gateway) refuse(w http.ResponseWriter, r *http.Request, status int, why, tenant string) {
	level := slog.LevelWarn
	if r.Method == http.MethodHead {
		level = slog.LevelDebug // the CLI's connectivity check, sent without its key
	}
	g.log.Log(r.Context(), level, "refused a request", "path", r.URL.Path, "method", r.Method, "status", status, "reason", why, "tenant", tenant)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	typ := "authentication_error"
	switch status {
	case http.StatusNotFound:
		typ = "not_found_error"
	case http.StatusForbidden:
		typ = "permission_error"
	case http.StatusBadRequest:
		typ = "invalid_request_error"
	}
	fmt.Fprintf(w, `{"type":"error","error":{"type":%q,"message":%q}}`+"\n", typ, "gateway: "+why)
}

// sendRotating sends a request with secret's current value and, when the
// upstream answers 401, replayable (send may be called twice: the body was
// kept) and the secret comes from Secrets Manager, reads the secret again;
// if it changed (rotated), the request is sent once more with the new value.
// name says which secret it is in logs ("api_key", "git_token"). This is the one
// retry of both parts: the API key and the git token.
func (g *Gateway) sendRotating(ctx context.Context, secret *secrets.Secret, name string, replayable bool, send func(value string) (*http.Response, error)) (*http.Response, error) {
	resp, err := send(secret.Value())
	if err != nil || resp.StatusCode != http.StatusUnauthorized || !replayable || !secret.Refreshes() {
		return resp, err
	}
	changed, rerr := secret.Refresh(ctx)
	if rerr != nil {
		g.log.Warn("the upstream refused the secret, and it cannot be read again", "secret", name, "error", rerr)
	}
	if !changed {
		return resp, nil
	}
	g.log.Info("the secret was rotated; sending the request again with the new value", "secret", name)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // the 401 is answered by the retry instead
	_ = resp.Body.Close()                                        // a read-only body: nothing to lose
	return send(secret.Value())
}
