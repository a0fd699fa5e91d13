package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/sivchari/kumo"

	"github.com/webordinary/claude-code-astro/internal/gateway"
	"github.com/webordinary/claude-code-astro/internal/pricing"
	"github.com/webordinary/claude-code-astro/internal/redact"
	"github.com/webordinary/claude-code-astro/internal/secrets"
	"github.com/webordinary/claude-code-astro/internal/testkit/fakeanthropic"
	"github.com/webordinary/claude-code-astro/internal/testkit/sqstest"
)

const realKey = "sk-ant-REAL-gateway-key-0123456789"

// newGateway starts a gateway in front of api with the real key.
func newGateway(t *testing.T, api *fakeanthropic.Server, mod func(*gateway.Config)) *gateway.Gateway {
	t.Helper()
	cfg := gateway.Config{APIUpstream: api.URL, APIKey: secrets.Static("ANTHROPIC_API_KEY", realKey, redact.New())}
	if mod != nil {
		mod(&cfg)
	}
	g := gateway.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done, err := g.Listen(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-done })
	return g
}

// messageBody is a Messages API request as the CLI sends it.
func messageBody(maxTokens int) []byte {
	body, _ := json.Marshal(map[string]any{
		"model": "claude-sonnet-4-5", "max_tokens": maxTokens, "stream": true,
		"tools":    []map[string]any{{"name": "Read"}},
		"messages": []map[string]any{{"role": "user", "content": "Hello"}},
	})
	return body
}

// message posts a Messages API request through the gateway as the CLI does.
func message(t *testing.T, base, key string, maxTokens int) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/v1/messages?beta=true", bytes.NewReader(messageBody(maxTokens)))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("X-Api-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAPIGatewaySwapsTheJobCredentialForTheKey: the upstream sees the real
// key and never the job's; the answer streams through; the usage the
// upstream reported is what the lease counts.
func TestAPIGatewaySwapsTheJobCredentialForTheKey(t *testing.T) {
	api := fakeanthropic.New(t, fakeanthropic.Text("Hello back"))
	api.RequireKey(realKey)
	g := newGateway(t, api, nil)
	lease := g.Lease(gateway.LeaseOptions{API: true, Tenant: "acme/alice", JobID: "j1"})
	defer lease.Close()
	if strings.Contains(lease.APIKey(), realKey) || lease.APIKey() == "" {
		t.Fatalf("the job's credential %q is not its own", lease.APIKey())
	}
	for range 2 {
		status, body := message(t, lease.APIBaseURL(), lease.APIKey(), 1000)
		if status != http.StatusOK || !strings.Contains(body, "event: message_stop") || !strings.Contains(body, "Hello back") {
			t.Fatalf("through the gateway: %d %s", status, body)
		}
	}
	for _, r := range api.Requests() {
		if got := r.Header.Get("X-Api-Key"); got != realKey {
			t.Errorf("upstream got key %q, want the real one", got)
		}
		if strings.Contains(string(r.Body)+r.Header.Get("Authorization"), lease.APIKey()) {
			t.Error("the job's credential reached the upstream")
		}
	}
	used, cost := lease.Usage()
	rep := api.Reported()
	if used.InputTokens != rep.InputTokens || used.OutputTokens != rep.OutputTokens ||
		used.CacheReadTokens != rep.CacheReadTokens || used.CacheWriteTokens != rep.CacheWriteTokens {
		t.Errorf("lease counted %+v, the upstream reported %+v", used, rep)
	}
	if cost <= 0 {
		t.Errorf("cost %v of %+v", cost, used)
	}
}

// TestAPIGatewayRefusesOtherCredentials: no credential, a made-up one, the
// real key itself and a job's after its lease ended get 401 and never reach
// the upstream.
func TestAPIGatewayRefusesOtherCredentials(t *testing.T) {
	api := fakeanthropic.New(t)
	g := newGateway(t, api, nil)
	ended := g.Lease(gateway.LeaseOptions{API: true, Tenant: "acme/alice"})
	ended.Close()
	base := g.BaseURL() + "/anthropic"
	for name, key := range map[string]string{"none": "", "made up": "job-0123", "the real key": realKey, "an ended job's": ended.APIKey()} {
		status, body := message(t, base, key, 100)
		if status != http.StatusUnauthorized || !strings.Contains(body, "authentication_error") {
			t.Errorf("%s credential: %d %s, want 401", name, status, body)
		}
	}
	if n := len(api.Requests()); n != 0 {
		t.Errorf("the upstream got %d requests, want none", n)
	}
}

// TestAPIGatewayStopsAJobAtItsBudget: a call's worst case (its input,
// estimated from its size, and its max_tokens) is reserved before it is
// forwarded, its max_tokens lowered to what the rest of the budget buys;
// once what is left cannot cover a call, calls are refused without reaching
// the upstream.
func TestAPIGatewayStopsAJobAtItsBudget(t *testing.T) {
	api := fakeanthropic.New(t)
	prices, err := pricing.Parse(`{"claude-sonnet-4-5": {"input": 1000000, "output": 1000000, "cacheRead": 0, "cacheWrite": 0}}`)
	if err != nil {
		t.Fatal(err)
	}
	g := newGateway(t, api, func(c *gateway.Config) { c.Pricing = prices })
	// A dollar a token: the first call's input (about 45 tokens) and the
	// output the rest buys spend it.
	lease := g.Lease(gateway.LeaseOptions{API: true, Tenant: "acme/alice", BudgetUSD: 70})
	defer lease.Close()
	if status, body := message(t, lease.APIBaseURL(), lease.APIKey(), 1000); status != http.StatusOK {
		t.Fatalf("first call: %d %s", status, body)
	}
	first := api.Requests()[0]
	input := len(messageBody(1000))/4 + 1
	if mt := int(first.JSON["max_tokens"].(float64)); mt != 70-input {
		t.Errorf("first call's max_tokens = %d, want %d (what $70 buys at $1 a token after its %d input tokens)", mt, 70-input, input)
	}
	if lease.BudgetExceeded() {
		t.Fatal("budget exceeded before any call was refused")
	}
	status, body := message(t, lease.APIBaseURL(), lease.APIKey(), 1000)
	if status != http.StatusBadRequest || !strings.Contains(body, "budget exceeded") {
		t.Errorf("call past the budget: %d %s, want 400 budget exceeded", status, body)
	}
	if !lease.BudgetExceeded() || len(api.Requests()) != 1 {
		t.Errorf("exceeded %v, upstream requests %d: the refused call must not reach it", lease.BudgetExceeded(), len(api.Requests()))
	}
	// Another job's lease is not affected.
	other := g.Lease(gateway.LeaseOptions{API: true, Tenant: "acme/bob", BudgetUSD: 1000})
	defer other.Close()
	if status, _ := message(t, other.APIBaseURL(), other.APIKey(), 100); status != http.StatusOK {
		t.Errorf("another job: %d", status)
	}
}

// TestAPIGatewayPicksUpARotatedKey: the key comes from Secrets Manager; it
// is rotated there and the old one stops working upstream. The next call
// gets 401 from upstream, the gateway reads the secret again and sends the
// call with the new key: the job never notices, and nobody restarts.
func TestAPIGatewayPicksUpARotatedKey(t *testing.T) {
	emu := kumo.NewServer()
	t.Cleanup(emu.Close)
	sm := secretsmanager.NewFromConfig(sqstest.AWSConfig(), func(o *secretsmanager.Options) { o.BaseEndpoint = aws.String(emu.URL) })
	ctx := context.Background()
	const oldKey, newKey = "sk-ant-old-key-000000000000", "sk-ant-new-key-111111111111"
	if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("rotating-key"), SecretString: aws.String(oldKey)}); err != nil {
		t.Fatal(err)
	}
	red := redact.New()
	key, err := secrets.FromManager(ctx, sm, "ANTHROPIC_API_KEY_SECRET_ID", "rotating-key", red, nil)
	if err != nil {
		t.Fatal(err)
	}
	key.MinGap = time.Millisecond
	api := fakeanthropic.New(t)
	api.RequireKey(oldKey)
	g := newGateway(t, api, func(c *gateway.Config) { c.APIKey = key })
	lease := g.Lease(gateway.LeaseOptions{API: true, Tenant: "acme/alice"})
	defer lease.Close()
	if status, _ := message(t, lease.APIBaseURL(), lease.APIKey(), 100); status != http.StatusOK {
		t.Fatalf("before the rotation: %d", status)
	}

	if _, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String("rotating-key"), SecretString: aws.String(newKey)}); err != nil {
		t.Fatal(err)
	}
	api.RequireKey(newKey)
	if status, body := message(t, lease.APIBaseURL(), lease.APIKey(), 100); status != http.StatusOK {
		t.Fatalf("after the rotation: %d %s", status, body)
	}
	if key.Value() != newKey {
		t.Error("the gateway did not keep the new key")
	}
	if red.String(oldKey+" "+newKey) != redact.Mask+" "+redact.Mask {
		t.Error("the redactor does not mask both keys")
	}
}
