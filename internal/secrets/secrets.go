// Package secrets holds the worker's secrets: given in the environment, or
// read from AWS Secrets Manager and refreshed on a schedule or on demand.
package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/webordinary/claude-code-astro/internal/redact"
)

// ErrNotFound is wrapped when a secret, or its JSON key, does not exist.
var ErrNotFound = errors.New("secret not found")

// Getter is the Secrets Manager call Resolve makes; *secretsmanager.Client
// implements it.
type Getter interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, opts ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
}

// Resolve returns the secret named by ref: a secret id or ARN, or "id#key"
// for one key of a JSON secret. Errors name the reference, never the value.
func Resolve(ctx context.Context, api Getter, ref string) (string, error) {
	id, key, hasKey := strings.Cut(ref, "#")
	if id == "" || (hasKey && key == "") {
		return "", fmt.Errorf("secret %q: want an id, or id#key", ref)
	}
	out, err := api.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
	if err != nil {
		return "", fmt.Errorf("get secret %q: %w", id, err)
	}
	value := aws.ToString(out.SecretString)
	if out.SecretString == nil {
		value = string(out.SecretBinary)
	}
	// A secret saved from a file often ends in a newline: a key with one
	// would not authenticate, nor match the redaction of its bare value.
	value = strings.TrimSpace(value)
	if !hasKey {
		if value == "" {
			return "", fmt.Errorf("secret %q is empty: %w", id, ErrNotFound)
		}
		return value, nil
	}
	var fields map[string]any
	if err := json.Unmarshal([]byte(value), &fields); err != nil {
		return "", fmt.Errorf("secret %q is not a JSON object, so it has no key %q", id, key)
	}
	v, ok := fields[key].(string)
	v = strings.TrimSpace(v)
	if !ok || v == "" {
		return "", fmt.Errorf("secret %q has no string key %q: %w", id, key, ErrNotFound)
	}
	return v, nil
}

// MinRefreshGap is the least time between two refreshes asked for on demand
// (an upstream answering 401): a key that is simply wrong does not turn every
// request into a Secrets Manager call.
const MinRefreshGap = 30 * time.Second

// Secret is one secret the worker holds: given directly, or read from
// Secrets Manager by reference and refreshed, so a rotated value needs no
// restart. Every value it ever held is added to its Redactor. It is safe for
// concurrent use.
type Secret struct {
	// MinGap is the least time between two refreshes asked for with
	// Refresh; zero means MinRefreshGap. Set it before sharing the Secret.
	MinGap time.Duration

	name     string // the variable that gave it, for logs and errors
	ref      string // Secrets Manager reference; "" for a static value
	api      Getter
	redactor *redact.Redactor
	log      *slog.Logger

	mu        sync.RWMutex
	value     string
	refreshed time.Time
	refreshMu sync.Mutex // one refresh at a time
}

// Static returns a Secret holding value for good (given in the environment).
func Static(name, value string, red *redact.Redactor) *Secret {
	red.Add(value)
	return &Secret{name: name, value: value, redactor: red, log: slog.New(slog.DiscardHandler)}
}

// FromManager reads the secret ref from Secrets Manager now and returns it.
// name is the variable that named it (ANTHROPIC_API_KEY_SECRET_ID): errors
// and logs say it, never the value.
func FromManager(ctx context.Context, api Getter, name, ref string, red *redact.Redactor, log *slog.Logger) (*Secret, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Secret{name: name, ref: ref, api: api, redactor: red, log: slog.New(slog.DiscardHandler)}
	if _, err := s.refresh(ctx); err != nil {
		return nil, err
	}
	s.log = log // the start-up read says nothing: a failure is the caller's one line
	return s, nil
}

// Value returns the current value ("" when none was given).
func (s *Secret) Value() string {
	if s == nil {
		return ""
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.value
}

// Refreshes reports whether the secret comes from Secrets Manager, so that
// Refresh can change it.
func (s *Secret) Refreshes() bool { return s != nil && s.ref != "" }

// Refresh reads the secret again, unless it was read less than
// MinRefreshGap ago or it is static, and reports whether its value changed.
func (s *Secret) Refresh(ctx context.Context) (bool, error) {
	if !s.Refreshes() {
		return false, nil
	}
	gap := s.MinGap
	if gap <= 0 {
		gap = MinRefreshGap
	}
	s.mu.RLock()
	recent := time.Since(s.refreshed) < gap
	s.mu.RUnlock()
	if recent {
		return false, nil
	}
	return s.refresh(ctx)
}

// refresh reads the secret and stores it.
func (s *Secret) refresh(ctx context.Context) (bool, error) {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	v, err := Resolve(ctx, s.api, s.ref)
	if err != nil {
		return false, err // the caller names the variable
	}
	s.redactor.Add(v)
	s.mu.Lock()
	changed := s.value != "" && s.value != v
	s.value, s.refreshed = v, time.Now()
	s.mu.Unlock()
	level := slog.LevelDebug
	if changed {
		level = slog.LevelInfo // a rotation: worth a line, never the value
	}
	s.log.Log(ctx, level, "secret read from Secrets Manager", "secret", s.name, "changed", changed)
	return changed, nil
}

// Keep refreshes the secret every interval until ctx ends; a failed read
// keeps the old value and is logged. A static secret returns at once.
func (s *Secret) Keep(ctx context.Context, interval time.Duration) {
	if !s.Refreshes() || interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		if _, err := s.refresh(rctx); err != nil {
			s.log.Warn("cannot refresh a secret; keeping its value", "secret", s.name, "error", err)
		}
		cancel()
	}
}
