package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"

	"github.com/webordinary/claude-code-astro/internal/ident"
)

// maxRetryBody bounds the git request body kept to send it again after a
// token rotation; a larger push is sent once.
const maxRetryBody = 32 << 20

// gitServices are the smart-HTTP endpoints of a repository, below its URL.
var gitServices = map[string]bool{"/info/refs": true, "/git-upload-pack": true, "/git-receive-pack": true}

// ErrOtherRepository is returned by GitRemote for a repository other than
// the one the lease's first GitRemote named.
var ErrOtherRepository = errors.New("a job reaches one repository only")

// GitRemote returns the URL and environment git needs to reach repoURL for
// this job. For an https repository (or http on loopback) that is the
// gateway, with the job's git credential in GIT_CONFIG_* variables (never
// on a command line, which other uids can read); for a local path, a file
// URL or ssh it is repoURL itself, with nothing added. The first call names
// the lease's repository; another repository afterwards is refused.
func (l *Lease) GitRemote(repoURL string) (string, []string, error) {
	u, err := url.Parse(repoURL)
	if err != nil || !(u.Scheme == "https" || u.Scheme == "http") {
		return repoURL, nil, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closed:
		return "", nil, errors.New("the job's lease has ended")
	case l.repoURL == "":
		l.repoURL = repoURL
	case l.repoURL != repoURL:
		return "", nil, ErrOtherRepository
	}
	return l.g.BaseURL() + gitPrefix, []string{
		"GIT_CONFIG_COUNT=1",
		"GIT_CONFIG_KEY_0=http.extraHeader",
		"GIT_CONFIG_VALUE_0=Authorization: Bearer " + l.gitToken,
	}, nil
}

// gitCall is what the git part hands from ServeHTTP to its transport.
type gitCall struct {
	lease    *Lease
	upstream *url.URL
	withAuth bool
	body     []byte // the request body when small enough to send twice
}

type gitCallKey struct{}

// newGitProxy returns the git part: a reverse proxy to the lease's
// repository, for its three smart-HTTP endpoints only.
func (g *Gateway) newGitProxy() http.Handler {
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			call := pr.In.Context().Value(gitCallKey{}).(*gitCall)
			service := strings.TrimPrefix(pr.In.URL.Path, gitPrefix)
			pr.Out.URL = &url.URL{Scheme: call.upstream.Scheme, Host: call.upstream.Host,
				Path: strings.TrimSuffix(call.upstream.Path, "/") + service, RawQuery: pr.In.URL.RawQuery}
			pr.Out.Host = call.upstream.Host
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Del("Cookie")
		},
		Transport:     &gitTransport{g: g},
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			g.log.Warn("the git remote cannot be reached", "error", err)
			http.Error(w, "gateway: the git remote cannot be reached", http.StatusBadGateway)
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		l, ok := g.lease(g.gitLeases, cred)
		if !ok {
			g.refuse(w, r, http.StatusUnauthorized, "no valid job credential for git", "")
			return
		}
		service := strings.TrimPrefix(r.URL.Path, gitPrefix)
		q := r.URL.Query()
		if !gitServices[service] || (service == "/info/refs" && q.Get("service") != "git-upload-pack" && q.Get("service") != "git-receive-pack") {
			g.refuse(w, r, http.StatusNotFound, "not a git smart-HTTP request", l.opts.Tenant)
			return
		}
		push := service == "/git-receive-pack" || q.Get("service") == "git-receive-pack"
		if push && l.opts.ThreadID == "" {
			g.refuse(w, r, http.StatusForbidden, "this job pushes nothing", l.opts.Tenant)
			return
		}
		l.mu.Lock()
		repo := l.repoURL
		l.mu.Unlock()
		upstream, err := url.Parse(repo)
		if repo == "" || err != nil {
			g.refuse(w, r, http.StatusForbidden, "the job named no repository", l.opts.Tenant)
			return
		}
		call := &gitCall{lease: l, upstream: upstream, withAuth: g.cfg.GitToken.Value() != "" && TokenAllowed(g.cfg.TokenHosts, upstream)}
		if service == "/git-receive-pack" {
			// The whole push is read and checked before any of it is
			// forwarded: its ref updates, and the pack for a fast-forward.
			body, err := readPushBody(r.Body, r.Header.Get("Content-Encoding"))
			if err == nil {
				err = checkPush(r.Context(), body, l.opts.ThreadID)
			}
			if err != nil {
				status := http.StatusBadRequest
				if errors.Is(err, errPushRefused) {
					status = http.StatusForbidden
				}
				g.refuse(w, r, status, err.Error(), l.opts.Tenant)
				return
			}
			r.Header.Del("Content-Encoding")
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
			if len(body) <= maxRetryBody {
				call.body = body
			}
		} else if call.withAuth && g.cfg.GitToken.Refreshes() && r.ContentLength >= 0 && r.ContentLength <= maxRetryBody {
			if call.body, err = io.ReadAll(io.LimitReader(r.Body, maxRetryBody+1)); err != nil || len(call.body) > maxRetryBody {
				g.refuse(w, r, http.StatusBadRequest, "request body unreadable", l.opts.Tenant)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(call.body))
		}
		rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), gitCallKey{}, call)))
	})
}

// gitTransport sends a git request to the repository, with the real token
// where it may go, and once more with a rotated token after a 401
// (sendRotating) when its body was kept.
type gitTransport struct{ g *Gateway }

func (t *gitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	call := req.Context().Value(gitCallKey{}).(*gitCall)
	return t.g.sendRotating(req.Context(), t.g.cfg.GitToken, "git_token", call.withAuth && call.body != nil, func(token string) (*http.Response, error) {
		out := req
		if call.body != nil {
			out = req.Clone(req.Context())
			out.Body = io.NopCloser(bytes.NewReader(call.body))
			out.ContentLength = int64(len(call.body))
		}
		if call.withAuth {
			out.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("x-access-token:"+token)))
		}
		return t.g.transport.RoundTrip(out)
	})
}

// TokenAllowed reports whether the git token may be sent to u: https to one
// of hosts, or http to a loopback host that hosts names (a local git server).
func TokenAllowed(hosts []string, u *url.URL) bool {
	switch {
	case u.User != nil:
		return false
	case u.Scheme == "https":
	case u.Scheme == "http" && ident.LoopbackHost(u.Hostname()):
	default:
		return false
	}
	return TokenHostMatches(hosts, u)
}

// TokenHostMatches reports whether the URL u is on one of hosts
// (GIT_TOKEN_HOSTS): a bare host ("github.com", "127.0.0.1", "::1") matches
// every port of that host; "host:port" ("127.0.0.1:8081", "[::1]:8081")
// matches that port only, a URL without a port standing for its scheme's
// default port. Host names compare case-insensitively.
func TokenHostMatches(hosts []string, u *url.URL) bool {
	host, port := u.Hostname(), u.Port()
	if port == "" {
		switch u.Scheme {
		case "https":
			port = "443"
		case "http":
			port = "80"
		}
	}
	for _, h := range hosts {
		wantHost, wantPort := splitTokenHost(h)
		if strings.EqualFold(wantHost, host) && (wantPort == "" || wantPort == port) {
			return true
		}
	}
	return false
}

// splitTokenHost splits a GIT_TOKEN_HOSTS entry into its host and port ("" for
// a bare host). A bare IPv6 address has no port; one with a port is bracketed.
func splitTokenHost(h string) (host, port string) {
	if strings.HasPrefix(h, "[") || strings.Count(h, ":") == 1 {
		if host, port, err := net.SplitHostPort(h); err == nil {
			return host, port
		}
	}
	return strings.Trim(h, "[]"), ""
}
