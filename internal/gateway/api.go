package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"

	"github.com/webordinary/claude-code-astro/internal/pricing"
)

// maxAPIBody bounds a Messages API request the gateway reads (it keeps the
// body to send it again after a key rotation): far above a conversation's
// few hundred kilobytes.
const maxAPIBody = 32 << 20

// maxUsageJSON bounds how much of a non-streamed answer is kept to read
// its usage.
const maxUsageJSON = 8 << 20

// Usage counts a job's tokens, as the API reported them.
type Usage struct {
	InputTokens      int64 `json:"inputTokens"`
	OutputTokens     int64 `json:"outputTokens"`
	CacheReadTokens  int64 `json:"cacheReadTokens"`
	CacheWriteTokens int64 `json:"cacheWriteTokens"`
}

// add adds o to u.
func (u *Usage) add(o Usage) {
	u.InputTokens += o.InputTokens
	u.OutputTokens += o.OutputTokens
	u.CacheReadTokens += o.CacheReadTokens
	u.CacheWriteTokens += o.CacheWriteTokens
}

// usageCost returns what usage u costs at price pr, in US dollars.
func usageCost(pr pricing.Price, u Usage) float64 {
	return (float64(u.InputTokens)*pr.Input + float64(u.OutputTokens)*pr.Output +
		float64(u.CacheReadTokens)*pr.CacheRead + float64(u.CacheWriteTokens)*pr.CacheWrite) / 1e6
}

// apiUsage is the usage object of the Messages API.
type apiUsage struct {
	InputTokens              int64 `json:"input_tokens"`
	OutputTokens             int64 `json:"output_tokens"`
	CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
}

// merge keeps the larger of each count: a stream reports its usage in
// message_start and again, growing, in message_delta.
func (u *Usage) merge(a apiUsage) {
	u.InputTokens = max(u.InputTokens, a.InputTokens)
	u.OutputTokens = max(u.OutputTokens, a.OutputTokens)
	u.CacheWriteTokens = max(u.CacheWriteTokens, a.CacheCreationInputTokens)
	u.CacheReadTokens = max(u.CacheReadTokens, a.CacheReadInputTokens)
}

// apiKeyOf returns the credential a request carries: x-api-key, as the CLI
// sends an ANTHROPIC_API_KEY, or a bearer token.
func apiKeyOf(r *http.Request) string {
	if k := r.Header.Get("X-Api-Key"); k != "" {
		return k
	}
	if v, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return v
	}
	return ""
}

// The Messages API paths the gateway forwards (below apiPrefix); every
// other path (files, batches, models, the organisation's endpoints) is
// refused.
const (
	messagesPath    = "/v1/messages"
	countTokensPath = "/v1/messages/count_tokens"
)

var apiPaths = map[string]bool{messagesPath: true, countTokensPath: true}

// apiCall is what the API part hands from ServeHTTP to its transport.
type apiCall struct {
	lease *Lease
	body  []byte
}

type apiCallKey struct{}

// newAPIProxy returns the API part: a reverse proxy to APIUpstream that
// streams answers (SSE) through as they come.
func (g *Gateway) newAPIProxy() http.Handler {
	upstream, err := url.Parse(g.cfg.APIUpstream)
	if err != nil || upstream.Host == "" {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			g.refuse(w, r, http.StatusBadGateway, "no valid ANTHROPIC_BASE_URL upstream", "")
		})
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Path = strings.TrimPrefix(pr.In.URL.Path, apiPrefix)
			pr.Out.URL.RawPath = ""
			pr.SetURL(upstream)
			pr.Out.Header.Del("X-Api-Key")
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Del("Cookie")
		},
		Transport:      &apiTransport{g: g},
		FlushInterval:  -1, // server-sent events, unbuffered
		ModifyResponse: g.countUsage,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			g.log.Warn("the Messages API cannot be reached", "error", err)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprintf(w, `{"type":"error","error":{"type":"api_error","message":%q}}`+"\n", "gateway: the Messages API cannot be reached")
		},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l, ok := g.lease(g.apiLeases, apiKeyOf(r))
		if !ok {
			g.refuse(w, r, http.StatusUnauthorized, "no valid job credential", "")
			return
		}
		path := strings.TrimPrefix(r.URL.Path, apiPrefix)
		if !apiPaths[path] || r.Method != http.MethodPost {
			g.refuse(w, r, http.StatusNotFound, "only POST /v1/messages and /v1/messages/count_tokens are forwarded", l.opts.Tenant)
			return
		}
		if g.cfg.APIKey.Value() == "" {
			g.refuse(w, r, http.StatusUnauthorized, "the worker has no API key (ANTHROPIC_API_KEY)", l.opts.Tenant)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxAPIBody+1))
		if err != nil || len(body) > maxAPIBody {
			g.refuse(w, r, http.StatusBadRequest, "request body unreadable or too large", l.opts.Tenant)
			return
		}
		var reservation float64
		if path == messagesPath {
			var why string
			body, reservation, why = l.reserve(body)
			if why != "" {
				spent, budget := l.spent()
				g.log.Warn("job budget spent; refusing its API call", "tenant", l.opts.Tenant, "job_id", l.opts.JobID,
					"spent_usd", spent, "budget_usd", budget, "reason", why)
				g.refuse(w, r, http.StatusBadRequest, fmt.Sprintf("budget exceeded: the job spent $%.4f of its $%.4f (%s)", spent, budget, why), l.opts.Tenant)
				return
			}
		}
		// Settled once the answer has been read (its usage counted) or
		// has failed: the call's reservation is released.
		defer l.release(reservation)
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		ctx := context.WithValue(r.Context(), apiCallKey{}, &apiCall{lease: l, body: body})
		rp.ServeHTTP(w, r.WithContext(ctx))
	})
}

// apiTransport sends a Messages API request with the real key, and once
// more with a rotated key after a 401 (sendRotating).
type apiTransport struct{ g *Gateway }

func (t *apiTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	call, _ := req.Context().Value(apiCallKey{}).(*apiCall)
	return t.g.sendRotating(req.Context(), t.g.cfg.APIKey, "api_key", call != nil, func(key string) (*http.Response, error) {
		out := req.Clone(req.Context())
		if call != nil {
			out.Body = io.NopCloser(bytes.NewReader(call.body))
			out.ContentLength = int64(len(call.body))
		}
		out.Header.Set("X-Api-Key", key)
		return t.g.transport.RoundTrip(out)
	})
}

// spent returns what the lease's answered calls cost, and its budget.
func (l *Lease) spent() (spent, budget float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cost, l.opts.BudgetUSD
}

// bytesPerToken estimates a request's input tokens from its size: about four
// bytes of JSON or English text make a token.
const bytesPerToken = 4

// reserve takes a Messages call's worst case from what is left of the
// lease's budget before it is forwarded: its input, estimated from the
// body's size at the higher of the model's input and cache-write prices,
// plus its max_tokens of output at the output price. A max_tokens that what
// is left cannot buy is lowered to what it buys; a call whose input alone
// does not fit, or whose body names no model and max_tokens, is refused
// (why says why) and marks the budget exceeded. Without a budget nothing is
// reserved. Release the reservation when the call has been answered.
func (l *Lease) reserve(body []byte) (out []byte, reservation float64, why string) {
	if l.opts.BudgetUSD <= 0 {
		return body, 0, ""
	}
	var req map[string]json.RawMessage
	var model string
	var maxTokens int64
	if json.Unmarshal(body, &req) != nil || json.Unmarshal(req["model"], &model) != nil ||
		json.Unmarshal(req["max_tokens"], &maxTokens) != nil || maxTokens <= 0 {
		return nil, 0, "a budgeted call needs a JSON body with model and max_tokens"
	}
	price := l.g.cfg.Pricing.For(model)
	input := float64(len(body)/bytesPerToken+1) * max(price.Input, price.CacheWrite) / 1e6
	perToken := price.Output / 1e6
	l.mu.Lock()
	defer l.mu.Unlock()
	left := l.opts.BudgetUSD - l.cost - l.reserved - input
	if left <= 0 || (perToken > 0 && left < perToken) {
		l.exceeded = true
		return nil, 0, "what is left does not cover the call"
	}
	if perToken > 0 {
		if allowed := int64(math.Floor(left / perToken)); allowed < maxTokens {
			maxTokens = allowed
			req["max_tokens"], _ = json.Marshal(maxTokens)
			if b, err := json.Marshal(req); err == nil {
				body = b
			}
		}
	}
	reservation = input + float64(maxTokens)*perToken
	l.reserved += reservation
	return body, reservation, ""
}

// release returns a call's reservation once its cost has been counted.
func (l *Lease) release(reservation float64) {
	if reservation == 0 {
		return
	}
	l.mu.Lock()
	l.reserved = max(0, l.reserved-reservation)
	l.mu.Unlock()
}

// countUsage reads the usage of an answer as it streams through, and adds
// it to the job's lease when the answer ends.
func (g *Gateway) countUsage(resp *http.Response) error {
	call, _ := resp.Request.Context().Value(apiCallKey{}).(*apiCall)
	if call == nil || resp.StatusCode != http.StatusOK {
		return nil
	}
	sse := strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	resp.Body = &usageBody{rc: resp.Body, lease: call.lease, sse: sse}
	return nil
}

// usageBody passes an answer through unchanged while reading its usage:
// from the events message_start and message_delta of a stream, or from the
// body of a plain JSON answer.
type usageBody struct {
	rc    io.ReadCloser
	lease *Lease
	sse   bool

	pending []byte // a stream's incomplete last line
	whole   bytes.Buffer
	model   string
	usage   Usage
	once    sync.Once
}

func (b *usageBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.take(p[:n])
	}
	if err != nil {
		b.finish()
	}
	return n, err
}

func (b *usageBody) Close() error {
	b.finish()
	return b.rc.Close()
}

// take reads what just passed.
func (b *usageBody) take(chunk []byte) {
	if !b.sse {
		if b.whole.Len()+len(chunk) <= maxUsageJSON {
			b.whole.Write(chunk)
		}
		return
	}
	b.pending = append(b.pending, chunk...)
	for {
		i := bytes.IndexByte(b.pending, '\n')
		if i < 0 {
			if len(b.pending) > maxUsageJSON {
				b.pending = b.pending[:0] // a line no event has: skip it
			}
			return
		}
		b.event(bytes.TrimSpace(b.pending[:i]))
		b.pending = b.pending[i+1:]
	}
}

// event reads one line of a stream.
func (b *usageBody) event(line []byte) {
	data, ok := bytes.CutPrefix(line, []byte("data:"))
	if !ok {
		return
	}
	var ev struct {
		Type    string `json:"type"`
		Message struct {
			Model string    `json:"model"`
			Usage *apiUsage `json:"usage"`
		} `json:"message"`
		Usage *apiUsage `json:"usage"`
	}
	if json.Unmarshal(bytes.TrimSpace(data), &ev) != nil {
		return
	}
	switch ev.Type {
	case "message_start":
		b.model = ev.Message.Model
		if ev.Message.Usage != nil {
			b.usage.merge(*ev.Message.Usage)
		}
	case "message_delta":
		if ev.Usage != nil {
			b.usage.merge(*ev.Usage)
		}
	}
}

// finish adds the answer's usage to the lease, once.
func (b *usageBody) finish() {
	b.once.Do(func() {
		if !b.sse {
			var msg struct {
				Model string    `json:"model"`
				Usage *apiUsage `json:"usage"`
			}
			if json.Unmarshal(b.whole.Bytes(), &msg) == nil && msg.Usage != nil {
				b.model = msg.Model
				b.usage.merge(*msg.Usage)
			}
		} else if len(b.pending) > 0 {
			b.event(bytes.TrimSpace(b.pending))
		}
		if b.usage == (Usage{}) {
			return
		}
		b.lease.count(b.model, b.usage)
	})
}

// count adds one answer's usage to the lease.
func (l *Lease) count(model string, u Usage) {
	cost := usageCost(l.g.cfg.Pricing.For(model), u)
	l.mu.Lock()
	l.usage.add(u)
	l.cost += cost
	l.mu.Unlock()
}
