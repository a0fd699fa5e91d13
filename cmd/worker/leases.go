package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/webordinary/claude-code-astro/internal/config"
	"github.com/webordinary/claude-code-astro/internal/ecstask"
	"github.com/webordinary/claude-code-astro/internal/lease"
	"github.com/webordinary/claude-code-astro/internal/metrics"
	"github.com/webordinary/claude-code-astro/internal/taskprotect"
	"github.com/webordinary/claude-code-astro/preview"
)

// closeServiceRestart is WebSocket close code 1012 (service restart).
const closeServiceRestart = 1012

// leases is the worker's side of the lease table (LEASE_TABLE): the leases
// of the previews this worker serves. The zero value (no LEASE_TABLE) claims
// nothing: one worker serves every preview, as before fleets.
type leases struct {
	mu        sync.Mutex
	holder    *lease.Holder   // nil until the HTTP port listens, and without LEASE_TABLE
	takenOver map[string]bool // previews whose lease another worker took, until their dev server stopped
	// takeovers are when this worker took a preview's lease from another
	// worker, until that preview's dev server serves here (the
	// LeaseTakeoverTime metric).
	takeovers map[string]time.Time
}

// start makes the holder once the worker's HTTP port is known: its owner id
// is the task ARN on ECS (a random id off it), its address
// PREVIEW_ADVERTISE_ADDR or the task's private IPv4 and the port. lost is
// told of a lease another worker took over.
func (l *leases) start(ctx context.Context, cfg config.Config, awsCfg aws.Config, httpAddr string, keeper *taskprotect.Keeper,
	lost func(preview string), log *slog.Logger) (*lease.Holder, error) {
	if cfg.LeaseTable == "" {
		return nil, nil
	}
	owner, addr := "", cfg.PreviewAdvertiseAddr
	if cfg.ECSMetadataURI != "" {
		task, err := ecstask.FromMetadata(ctx, nil, cfg.ECSMetadataURI)
		if err != nil {
			return nil, &config.FieldError{Var: "LEASE_TABLE", Reason: "the worker's id is its task ARN: " + err.Error()}
		}
		owner = task.TaskARN
		if addr == "" {
			ip, err := ecstask.PrivateIPv4(ctx, nil, cfg.ECSMetadataURI)
			if err != nil {
				return nil, &config.FieldError{Var: "PREVIEW_ADVERTISE_ADDR", Reason: "not set, and " + err.Error()}
			}
			_, port, _ := net.SplitHostPort(httpAddr) // the listener's own address
			addr = net.JoinHostPort(ip, port)
		}
	}
	if owner == "" {
		owner = "worker-" + strings.ToLower(rand.Text()[:16])
	}
	hcfg := lease.HolderConfig{
		Table: lease.NewTable(dynamodb.NewFromConfig(awsCfg), cfg.LeaseTable),
		Owner: owner, Addr: addr, TTL: cfg.LeaseTTL, Lost: lost, Logger: log.With("component", "lease"),
	}
	if keeper != nil {
		hcfg.Protect = keeper.Hold
	}
	h := lease.NewHolder(hcfg)
	l.mu.Lock()
	l.holder = h
	l.mu.Unlock()
	log.Info("preview leases in the fleet's table", "lease_table", cfg.LeaseTable, "owner", owner, "advertise_addr", addr, "lease_ttl", cfg.LeaseTTL.String())
	return h, nil
}

// get returns the holder, nil without one.
func (l *leases) get() *lease.Holder {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.holder
}

// claim takes t's user's lease before their dev server starts here.
func (l *leases) claim(ctx context.Context, t preview.Target) error {
	h := l.get()
	if h == nil {
		return nil
	}
	client, user, _ := strings.Cut(t.Key, "/")
	byJob := ctx.Value(jobTargetKey{}) != nil
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	take := h.TakeFree // a page load here: never from a worker that holds it
	if byJob {
		take = h.Take // the lease follows the user's latest job
	}
	had := h.Holds(t.ID)
	start := time.Now()
	got, err := take(ctx, t.ID, client, user)
	if err != nil {
		// Not served here: a dev server of the user's that stops after
		// its lease was taken over is still another worker's business.
		return fmt.Errorf("take the preview lease: %w", err)
	}
	l.mu.Lock()
	delete(l.takenOver, t.ID) // served here again
	l.mu.Unlock()
	if byJob && !had && got.Epoch > 1 { // another worker had it before
		l.mu.Lock()
		if l.takeovers == nil {
			l.takeovers = map[string]time.Time{}
		}
		l.takeovers[t.ID] = start
		l.mu.Unlock()
	}
	return nil
}

// jobTargetKey marks the context of a job's Target.
type jobTargetKey struct{}

// jobPreviewer is the site handler's Previewer: a job's Target takes the
// user's lease over, wherever it was.
type jobPreviewer struct {
	*preview.Servers
	leases  *leases
	metrics *metrics.Recorder
}

// Target marks ctx as a job's and targets the user's dev server. A lease
// taken from another worker is timed until the dev server serves here
// (LeaseTakeoverTime).
func (p jobPreviewer) Target(ctx context.Context, t preview.Target) error {
	err := p.Servers.Target(context.WithValue(ctx, jobTargetKey{}, true), t)
	p.leases.mu.Lock()
	start, ok := p.leases.takeovers[t.ID]
	delete(p.leases.takeovers, t.ID)
	p.leases.mu.Unlock()
	if ok && err == nil {
		p.metrics.Emit(nil, metrics.Value{Name: metrics.LeaseTakeoverTime, Value: float64(time.Since(start).Milliseconds())})
	}
	return err
}

// held returns how many leases this worker holds (LeasesHeld).
func (l *leases) held() int {
	if h := l.get(); h != nil {
		return h.Held()
	}
	return 0
}

// lost notes that another worker took preview id's lease over.
func (l *leases) lost(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.takenOver == nil {
		l.takenOver = map[string]bool{}
	}
	l.takenOver[id] = true
}

// stopped ends t's user's lease: their dev server stopped here. It reports
// whether the lease had been taken over: another worker serves the user
// now, and the tenant's processes there are not this worker's to stop.
func (l *leases) stopped(t preview.Target) (takenOver bool) {
	l.mu.Lock()
	takenOver = l.takenOver[t.ID]
	delete(l.takenOver, t.ID)
	l.mu.Unlock()
	h := l.get()
	if h == nil || takenOver {
		return takenOver
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h.End(ctx, t.ID)
	return false
}
