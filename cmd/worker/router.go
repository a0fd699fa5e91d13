package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/webordinary/claude-code-astro/internal/config"
	"github.com/webordinary/claude-code-astro/internal/lease"
	"github.com/webordinary/claude-code-astro/internal/logging"
	"github.com/webordinary/claude-code-astro/internal/metrics"
	"github.com/webordinary/claude-code-astro/internal/redact"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/preview"
)

// RouterCommand is `worker router`: routes each preview host to the worker
// that holds its lease (CONTRACT.md section 6).
type RouterCommand struct {
	*Main
}

// Run reads the router's configuration from the environment and serves
// until a signal.
func (c *RouterCommand) Run(ctx context.Context, args []string) error {
	if err := parseNoArgs(c.Stderr, "worker router", "Usage: worker router\n\nRoutes each preview host to the worker serving it, with HTTP_ADDR, PREVIEW_BASE_URL, PREVIEW_SECRET (or PREVIEW_SECRET_SECRET_ID), LEASE_TABLE and JOB_QUEUE_URL from the environment (see README.md, \"Fleet\").", args); err != nil {
		return err
	}
	cfg, err := config.RouterFromEnv(c.Getenv)
	if err != nil {
		return err
	}
	awsCfg, err := loadAWS(ctx)
	if err != nil {
		return err
	}
	return route(ctx, cfg, routerOptions{AWS: awsCfg, Stdout: c.Stdout, Stderr: c.Stderr})
}

// routerOptions are what route needs beyond the configuration.
type routerOptions struct {
	AWS aws.Config
	// Stdout takes the metric lines (CloudWatch embedded metric format);
	// nil writes them readable to the log instead (worker local).
	Stdout io.Writer
	Stderr io.Writer
	// Ready, when set, is called with the HTTP address once it listens.
	Ready func(httpAddr string)
}

// route runs the router until ctx ends.
func route(ctx context.Context, cfg config.Router, opt routerOptions) error {
	red := redact.New()
	log := logging.New(opt.Stderr, logging.Options{Level: cfg.LogLevel, Format: cfg.LogFormat, Redactor: red}).With("component", "router")
	key, err := previewKey(ctx, config.Config{PreviewSecret: cfg.PreviewSecret, PreviewSecretSecretID: cfg.PreviewSecretSecretID}, opt.AWS, red)
	if err != nil {
		return err
	}
	table := lease.NewTable(dynamodb.NewFromConfig(opt.AWS), cfg.LeaseTable)
	met := metrics.New(opt.Stdout, metrics.Options{Service: "router", Readable: opt.Stdout == nil, Logger: log})
	stats := &routerStats{}
	waker := &previewWaker{sqs: sqs.NewFromConfig(opt.AWS), queueURL: cfg.JobQueueURL}
	rt := preview.NewRouter(preview.RouterConfig{
		Tokens: preview.NewTokens(key, cfg.PreviewTokenTTL), Domain: cfg.PreviewDomain(), Leases: table,
		Wake: waker.wake,
		Health: func(ctx context.Context) error {
			_, _, err := table.Get(ctx, "-") // no preview id: a read that finds nothing
			return err
		},
		Observe: stats.observe,
		Woke: func(took time.Duration) {
			met.Emit(nil, metrics.Value{Name: metrics.PreviewWakeTime, Value: float64(took.Milliseconds())})
		},
		Version: version(), Logger: log,
	})
	wgMetrics := sync.WaitGroup{}
	mctx, stopMetrics := context.WithCancel(ctx)
	defer func() { stopMetrics(); wgMetrics.Wait() }()
	wgMetrics.Go(func() { met.Every(mctx, time.Minute, stats.minute) })
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("HTTP_ADDR: %w", err)
	}
	srv := &http.Server{Handler: rt, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("HTTP server failed", "error", err)
		}
	})
	log.Info("routing previews", "http_addr", ln.Addr().String(), "preview_domain", cfg.PreviewDomain(), "lease_table", cfg.LeaseTable, "version", version())
	if opt.Ready != nil {
		opt.Ready(ln.Addr().String())
	}
	<-ctx.Done()
	log.Info("router shutting down")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close() // open WebSockets: cut them
	}
	wg.Wait()
	return nil
}

// previewWaker sends preview jobs to the job queue.
type previewWaker struct {
	sqs interface {
		SendMessage(ctx context.Context, in *sqs.SendMessageInput, opts ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	}
	queueURL string
}

// wake sends one preview job for clientID/userID. On a FIFO queue it goes
// to the user's group, deduplicated per 30 s window (routers that wake one
// preview at once send it once).
func (p *previewWaker) wake(ctx context.Context, clientID, userID string) error {
	now := time.Now()
	jobID := "wake-" + preview.ID(clientID, userID) + "-" + strconv.FormatInt(now.Unix()/30, 36)
	body, err := json.Marshal(map[string]string{"type": string(jobs.TypePreview), "jobId": jobID, "clientId": clientID, "userId": userID})
	if err != nil {
		return fmt.Errorf("encode a preview job: %w", err)
	}
	in := &sqs.SendMessageInput{QueueUrl: aws.String(p.queueURL), MessageBody: aws.String(string(body))}
	if strings.HasSuffix(p.queueURL, ".fifo") {
		in.MessageGroupId = aws.String(clientID + "/" + userID)
		in.MessageDeduplicationId = aws.String(jobID)
	}
	if _, err := p.sqs.SendMessage(ctx, in); err != nil {
		return fmt.Errorf("send a preview job: %w", err)
	}
	return nil
}

// routerStats sums the router's requests over a minute, for its metrics.
type routerStats struct {
	mu        sync.Mutex
	requests  int
	errors    int           // answered 5xx
	proxied   int           // sent to an owner
	upstreams time.Duration // their time to the owner's response headers
}

// observe counts one answered request.
func (s *routerStats) observe(status int, upstream time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests++
	if status >= 500 {
		s.errors++
	}
	if upstream > 0 {
		s.proxied++
		s.upstreams += upstream
	}
}

// minute returns the minute's figures and starts the next minute.
func (s *routerStats) minute() []metrics.Value {
	s.mu.Lock()
	defer s.mu.Unlock()
	values := []metrics.Value{{Name: metrics.RouterRequests, Value: float64(s.requests)}, {Name: metrics.Router5xx, Value: float64(s.errors)}}
	if s.proxied > 0 {
		values = append(values, metrics.Value{Name: metrics.RouterUpstreamMs, Value: float64((s.upstreams / time.Duration(s.proxied)).Microseconds()) / 1000})
	}
	s.requests, s.errors, s.proxied, s.upstreams = 0, 0, 0, 0
	return values
}
