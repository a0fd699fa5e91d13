// Package taskprotect keeps a busy ECS task from being chosen by a service's
// scale-in: it sets ECS task scale-in protection through the ECS agent's
// endpoint ($ECS_AGENT_URI/task-protection/v1/state) while anything holds
// it, renews it before it expires, and clears it once nothing does.
//
// Holders are counted, whatever they are: the worker holds protection for
// every job from receipt to answer, and anything else that must keep the
// task alive (a preview lease, say) takes a Hold of its own.
package taskprotect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/webordinary/claude-code-astro/internal/backoff"
)

// StatePath is the agent's task-protection path, below ECS_AGENT_URI.
const StatePath = "/task-protection/v1/state"

// MaxExpires is the longest protection the agent grants in one call (48 h).
const MaxExpires = 2880 * time.Minute

// Agent is the ECS agent's task-protection endpoint. The zero Client means
// http.DefaultClient.
type Agent struct {
	URI    string // ECS_AGENT_URI
	Client *http.Client
}

// stateRequest is the body of the PUT.
type stateRequest struct {
	ProtectionEnabled bool `json:"ProtectionEnabled"`
	ExpiresInMinutes  *int `json:"ExpiresInMinutes,omitempty"`
}

// stateResponse is the agent's answer: protection on success, failure or
// error otherwise.
type stateResponse struct {
	Protection *struct {
		ProtectionEnabled bool   `json:"ProtectionEnabled"`
		ExpirationDate    string `json:"ExpirationDate"`
		TaskArn           string `json:"TaskArn"`
	} `json:"protection"`
	Failure *struct {
		Arn    string `json:"Arn"`
		Reason string `json:"Reason"`
		Detail string `json:"Detail"`
	} `json:"failure"`
	Error *struct {
		Code    string `json:"Code"`
		Message string `json:"Message"`
	} `json:"error"`
}

// Set turns the task's protection on for expires (rounded up to whole
// minutes, 1 to 2880) or off.
func (a Agent) Set(ctx context.Context, on bool, expires time.Duration) error {
	req := stateRequest{ProtectionEnabled: on}
	if on {
		m := int(math.Ceil(expires.Minutes()))
		m = min(max(m, 1), int(MaxExpires/time.Minute))
		req.ExpiresInMinutes = &m
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode task protection: %w", err)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPut, strings.TrimRight(a.URI, "/")+StatePath, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("task protection request: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	client := a.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(hreq)
	if err != nil {
		return fmt.Errorf("set task protection: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read task protection answer: %w", err)
	}
	var out stateResponse
	_ = json.Unmarshal(data, &out) // an unreadable body is reported by status or the missing protection below
	switch {
	case out.Error != nil:
		return fmt.Errorf("set task protection: %s: %s", out.Error.Code, out.Error.Message)
	case out.Failure != nil:
		return fmt.Errorf("set task protection: %s: %s", out.Failure.Reason, out.Failure.Detail)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("set task protection: status %d", resp.StatusCode)
	case out.Protection == nil || out.Protection.ProtectionEnabled != on:
		return errors.New("set task protection: the agent's answer does not confirm it")
	}
	return nil
}

// Setter sets or clears the protection; Agent implements it.
type Setter interface {
	Set(ctx context.Context, on bool, expires time.Duration) error
}

// Config configures a Keeper. Setter is required.
type Config struct {
	Setter Setter
	// Expires is how long each set protects the task, default 15m: a
	// worker that hangs with protection set is reclaimable after it.
	Expires time.Duration
	// Renew is how often protection that is still held is set again,
	// default a third of Expires.
	Renew  time.Duration
	Logger *slog.Logger
}

// Keeper holds the task's protection while anything holds the Keeper.
// Create it with New and call Run once; Hold and Begin are safe for
// concurrent use.
type Keeper struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	holds   int
	changed chan struct{} // closed and replaced when holds goes to or from 0
}

// New returns a Keeper.
func New(cfg Config) *Keeper {
	if cfg.Expires <= 0 {
		cfg.Expires = 15 * time.Minute
	}
	if cfg.Renew <= 0 {
		cfg.Renew = cfg.Expires / 3
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Keeper{cfg: cfg, log: cfg.Logger, changed: make(chan struct{})}
}

// Hold keeps the task protected until release is called (more than once
// is fine).
func (k *Keeper) Hold() (release func()) {
	k.add(1)
	var once sync.Once
	return func() { once.Do(func() { k.add(-1) }) }
}

// Begin is Hold, so a Keeper can be told of the worker's jobs.
func (k *Keeper) Begin() (end func()) { return k.Hold() }

func (k *Keeper) add(n int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	before := k.holds > 0
	k.holds += n
	if before != (k.holds > 0) {
		close(k.changed)
		k.changed = make(chan struct{})
	}
}

func (k *Keeper) wanted() (bool, <-chan struct{}) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.holds > 0, k.changed
}

// Run sets and clears the protection as holds come and go, renewing it
// every Renew while held, until ctx ends. A failed call is retried with
// backoff; it is logged, never fatal: an unprotected task may be scaled
// in, and its jobs are then released for another worker.
func (k *Keeper) Run(ctx context.Context) {
	bo := backoff.Backoff{Min: time.Second, Max: min(k.cfg.Renew, 30*time.Second)}
	protected := false
	var renewAt time.Time
	for {
		want, changed := k.wanted()
		var wake <-chan time.Time
		if want != protected || (want && !time.Now().Before(renewAt)) {
			if err := k.cfg.Setter.Set(ctx, want, k.cfg.Expires); err != nil {
				if ctx.Err() != nil {
					return
				}
				d := bo.Next()
				k.log.Warn("cannot set the task's scale-in protection; retrying", "protect", want, "error", err, "retry_in", d.String())
				if !backoff.Sleep(ctx, d) {
					return
				}
				continue
			}
			bo.Reset()
			if want != protected {
				k.log.Info("task scale-in protection", "protected", want)
			}
			protected, renewAt = want, time.Now().Add(k.cfg.Renew)
		}
		var t *time.Timer
		if protected {
			t = time.NewTimer(time.Until(renewAt))
			wake = t.C
		}
		select {
		case <-ctx.Done():
			if t != nil {
				t.Stop()
			}
			return
		case <-changed:
		case <-wake:
		}
		if t != nil {
			t.Stop()
		}
	}
}
