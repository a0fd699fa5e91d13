package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/webordinary/claude-code-astro/internal/agent"
	"github.com/webordinary/claude-code-astro/internal/config"
	"github.com/webordinary/claude-code-astro/internal/gateway"
	"github.com/webordinary/claude-code-astro/internal/idle"
	"github.com/webordinary/claude-code-astro/internal/ledger"
	"github.com/webordinary/claude-code-astro/internal/logging"
	"github.com/webordinary/claude-code-astro/internal/metrics"
	"github.com/webordinary/claude-code-astro/internal/portcap"
	"github.com/webordinary/claude-code-astro/internal/redact"
	"github.com/webordinary/claude-code-astro/internal/sandbox"
	"github.com/webordinary/claude-code-astro/internal/secrets"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/jobs/site"
	"github.com/webordinary/claude-code-astro/preview"
	"github.com/webordinary/claude-code-astro/worker"
	"github.com/webordinary/claude-code-astro/workspace"
)

// Shutdown budget: ECS gives a task stopTimeout (30 s by default) between
// SIGTERM and SIGKILL; the worker is done well inside it.
const (
	shutdownBudget = 18 * time.Second
	// closeBudget is what stopping the dev servers and the HTTP port may
	// take after the job loop.
	closeBudget = 4 * time.Second
	// exitBudget bounds SIGTERM to exit: the figure the README, the compose
	// file, infra/README.md and the task definition give (a test checks).
	exitBudget     = shutdownBudget + closeBudget
	awsHTTPTimeout = 40 * time.Second // above the 20 s long poll
	secretsTimeout = 20 * time.Second
)

// RunCommand is `worker run`, the container's process.
type RunCommand struct {
	*Main
}

// Run reads the configuration from the environment and serves until a
// signal, or until it has been idle for AUTO_SHUTDOWN_MINUTES.
func (c *RunCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("worker run", flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	fs.Usage = func() {
		fmt.Fprintln(c.Stderr, "Usage: worker run\n\nRuns the worker with the configuration in the environment (see README.md).")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	cfg, err := config.FromEnv(c.Getenv)
	if err != nil {
		return err
	}
	awsCfg, err := loadAWS(ctx)
	if err != nil {
		return err
	}
	// Before any call: where the calls go, and what signs them.
	if err := checkQueueEndpoints(c.Getenv, awsCfg, map[string]string{
		"JOB_QUEUE_URL": cfg.JobQueueURL, "RESPONSE_QUEUE_URL": cfg.ResponseQueueURL}); err != nil {
		return err
	}
	if err := checkCredentials(ctx, awsCfg); err != nil {
		return err
	}
	return serve(ctx, cfg, serveOptions{AWS: awsCfg, Stdout: c.Stdout, Stderr: c.Stderr, PATH: c.Getenv("PATH"), Hurry: c.Hurry})
}

// loadAWS reads the AWS SDK's configuration from the environment, with an
// HTTP client whose timeout outlasts a long poll: the worker's and the
// router's.
func loadAWS(ctx context.Context) (aws.Config, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithHTTPClient(awshttp.NewBuildableClient().WithTimeout(awsHTTPTimeout)))
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	return cfg, nil
}

// serveOptions are what serve needs beyond the configuration.
type serveOptions struct {
	AWS aws.Config
	// Stdout takes the metric lines (CloudWatch embedded metric format);
	// nil writes them readable to the log instead (worker local).
	Stdout io.Writer
	Stderr io.Writer
	PATH   string
	// Ready, when set, is called once the worker listens, with the HTTP
	// address and the Claude Code CLI that tenants run.
	Ready func(httpAddr, claudeBin string)
	// Hurry, once closed, ends the drain of a stop at once.
	Hurry <-chan struct{}
}

// serve runs the worker: secrets, workspaces, agent, preview, the HTTP port
// and the job loop, until ctx ends or the worker is idle.
func serve(ctx context.Context, cfg config.Config, opt serveOptions) error {
	red := redact.New()
	log := logging.New(opt.Stderr, logging.Options{Level: cfg.LogLevel, Format: cfg.LogFormat, Redactor: red})

	// The tenant boundary first: as root, the worker keeps only what it
	// needs to start tenant processes, before anything else runs. (Logged
	// once the configuration is known to be good: a bad one gets one line.)
	var confined *sandbox.Confinement
	if os.Geteuid() == 0 {
		c, err := sandbox.Confine(sandbox.Limits{MaxProcs: uint64(cfg.TenantMaxProcs), MaxFileBytes: uint64(cfg.TenantMaxFileMB) << 20})
		if err != nil {
			return err
		}
		confined = &c
	} else if err := sandbox.SetNotDumpable(); err != nil {
		return err
	}
	sb, err := sandbox.New(sandbox.Config{Root: cfg.WorkspacePath, UIDs: cfg.TenantUIDs,
		Limits: sandbox.ChildLimits{DataBytes: uint64(cfg.TenantMaxMemoryMB) << 20, Nice: cfg.TenantNice}})
	if err != nil {
		return fmt.Errorf("start the tenant sandbox (TENANT_UIDS, TENANT_MAX_MEMORY_MB, TENANT_NICE): %w", err)
	}
	if sb.Privileged() && cfg.TenantMaxPorts > 0 {
		ports, err := portcap.New(portcap.Config{MinUID: cfg.TenantUIDs.Min, MaxUID: cfg.TenantUIDs.Max,
			Max: cfg.TenantMaxPorts, Logger: log.With("component", "portcap")})
		if err != nil {
			return fmt.Errorf("bound the tenants' ports (TENANT_MAX_PORTS, TENANT_UIDS): %w", err)
		}
		go ports.Run(ctx)
	}
	// What tenant processes run must be within their reach; the CLI is
	// copied where it is when it is not.
	claudeBin := cfg.ClaudeBin
	if sb.Privileged() {
		if claudeBin, err = tenantTools(ctx, cfg, opt.PATH, log); err != nil {
			return err
		}
	}

	apiKey, token, err := resolveSecrets(ctx, cfg, opt.AWS, red, log)
	if err != nil {
		return err
	}
	if apiKey.Value() == "" {
		log.Warn("no ANTHROPIC_API_KEY or ANTHROPIC_API_KEY_SECRET_ID: execute jobs will fail")
	}

	// runCtx ends at a stop (a signal, idle): the worker stops receiving.
	// What running jobs use (the secrets, the gateway, the dev servers'
	// janitor) lives on in svcCtx until the worker has drained them.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	svcCtx, stopServices := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServices()
	var wg sync.WaitGroup
	wg.Go(func() { apiKey.Keep(svcCtx, cfg.SecretRefresh) })
	wg.Go(func() { token.Keep(svcCtx, cfg.SecretRefresh) })
	gw := gateway.New(gateway.Config{APIUpstream: cfg.AnthropicBaseURL, APIKey: apiKey, GitToken: token,
		TokenHosts: cfg.GitTokenHosts, Pricing: cfg.ClaudePricing, Logger: log.With("component", "gateway")})
	gwDone, err := gw.Listen(svcCtx)
	if err != nil {
		return err
	}
	defer func() {
		stopServices()
		<-gwDone
	}()

	ws, err := workspace.Open(workspace.Config{
		Root: cfg.WorkspacePath, Sandbox: sb, AuthorName: cfg.GitAuthorName, AuthorEmail: cfg.GitAuthorEmail, NpmSeedCache: cfg.NpmCacheDir,
		PATH: opt.PATH, Redactor: red, Logger: log.With("component", "workspace"),
	})
	if err != nil {
		return fmt.Errorf("WORKSPACE_PATH: %w", err)
	}
	runner := agent.NewRunner(agent.Config{
		Bin: claudeBin, Model: cfg.ClaudeModel, MaxTurns: cfg.ClaudeMaxTurns,
		BaseURL: gw.BaseURL() + "/anthropic", PATH: opt.PATH, Redactor: red, Logger: log.With("component", "agent"),
	})
	activity := idle.New(cfg.AutoShutdown)
	service := inService(ctx, cfg, log)
	keeper := protection(cfg, service, log)
	jobActivity := activities{activity}
	if keeper != nil {
		jobActivity = append(jobActivity, keeper)
		wg.Go(func() { keeper.Run(svcCtx) })
	}

	siteCfg := site.Config{Workspaces: ws, Agent: runner, DefaultRepoURL: cfg.RepoURL,
		Gateway: gw, MaxBudgetUSD: cfg.ClaudeMaxBudgetUSD, Logger: log.With("component", "jobs"),
		Quota: workspace.Quota{Bytes: int64(cfg.TenantDiskMB) << 20, Inodes: int64(cfg.TenantMaxFiles)}}
	var handler *site.Handler
	var pv *previews
	met := metrics.New(opt.Stdout, metrics.Options{Service: "worker", Readable: opt.Stdout == nil, Logger: log})
	lc := &leases{} // LEASE_TABLE: taken once the HTTP port listens
	if cfg.AstroDevMode {
		pv, err = newPreviews(ctx, cfg, opt.AWS, ws, opt.PATH, func(key string) bool { return handler.Busy(key) }, lc, red, log)
		if err != nil {
			return err
		}
		siteCfg.Preview, siteCfg.PreviewURL = jobPreviewer{Servers: pv.servers, leases: lc, metrics: met}, pv.url
		wg.Go(func() { pv.servers.Run(svcCtx) })
	}
	handler = site.New(siteCfg)

	sqsClient := sqs.NewFromConfig(opt.AWS)
	w, err := worker.New(sqsClient, worker.Config{
		JobQueueURL: cfg.JobQueueURL, ResponseQueueURL: cfg.ResponseQueueURL,
		Handler: handler, Ledger: ledger.New(cfg.WorkspacePath), Activity: jobActivity, Redactor: red,
		Logger: log, MaxConcurrentUsers: cfg.MaxConcurrentUsers, JobTimeout: cfg.JobTimeout, Answered: met.Answered,
	})
	if err != nil {
		return err
	}
	wg.Go(func() { met.Every(runCtx, time.Minute, func() []metrics.Value { return taskGauges(cfg, w, pv, lc) }) })

	statusSocket := cfg.StatusSocket
	if statusSocket == "" {
		statusSocket = DefaultStatusSocket()
	}
	statusDone, err := listenStatus(svcCtx, statusSocket, func() healthReport {
		rep := report(cfg, w, pv, activity, true)
		rep.Status = "ok"
		if len(rep.Problems) > 0 {
			rep.Status = "unhealthy"
		}
		return rep
	}, log)
	if err != nil {
		return err
	}
	defer func() {
		stopServices()
		<-statusDone
	}()
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("HTTP_ADDR: %w", err)
	}
	srv := &http.Server{
		Handler:           routes(cfg, w, pv, activity, log),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("HTTP server failed", "error", err)
		}
	})
	if pv != nil {
		holder, err := lc.start(ctx, cfg, opt.AWS, ln.Addr().String(), keeper, func(id string) {
			lc.lost(id)
			// The open pages first: 1012 makes Vite's client poll (through
			// the router, to the new owner) and reload.
			if n := pv.sockets.Close(id, closeServiceRestart, "the preview moved to another worker"); n > 0 {
				log.Info("closed the preview's sockets: the pages reload from its new worker", "preview", id, "sockets", n)
			}
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := pv.servers.Stop(sctx, id); err != nil {
				log.Warn("stop the dev server of a preview taken over", "preview", id, "error", err)
			}
		}, log)
		if err != nil {
			srv.Close()
			return err
		}
		if holder != nil {
			wg.Go(func() { holder.Run(svcCtx) })
			// A stop ends the leases at once: routers then wake the
			// previews on other workers while this one drains.
			wg.Go(func() {
				<-runCtx.Done()
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer cancel()
				holder.Close(cctx)
			})
		}
	}
	if confined != nil {
		log.Info("worker confined: tenants run under uids of their own", "capabilities", confined.Caps, "tenant_uids", cfg.TenantUIDs.String(),
			"tenant_max_procs", confined.MaxProcs, "tenant_max_file_bytes", confined.MaxFileBytes)
	} else {
		log.Warn("the worker is not root, so it cannot run tenants under uids of their own: it serves ONE tenant (the first job's client/user) and refuses others",
			"uid", os.Geteuid())
	}
	log.Info("listening", "http_addr", ln.Addr().String(), "preview", cfg.AstroDevMode, "version", version(), "ecs_service", service)
	if opt.Ready != nil {
		opt.Ready(ln.Addr().String(), claudeBin)
	}

	if cfg.AutoShutdown > 0 {
		wg.Go(func() { idleStop(runCtx, stop, cfg, service, opt.AWS, activity, log) })
	}
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	wg.Go(func() {
		select {
		case <-opt.Hurry:
			log.Warn("asked again to stop: stopping the running jobs now")
			w.Hurry()
		case <-svcCtx.Done():
		}
	})

	var runErr error
	select {
	case runErr = <-done:
	case <-runCtx.Done():
		log.Info("shutting down")
		select {
		case runErr = <-done:
		case <-time.After(shutdownBudget):
			log.Error("the job loop did not stop in time; exiting anyway", "budget", shutdownBudget.String())
		}
	}
	stop()
	stopServices() // the jobs are done (or abandoned): nothing uses them now

	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeBudget)
	defer cancel()
	if pv != nil {
		if err := pv.servers.Close(closeCtx); err != nil {
			log.Warn("stop the dev servers", "error", err)
		}
	}
	if err := srv.Shutdown(closeCtx); err != nil {
		srv.Close()
	}
	wg.Wait()
	log.Info("worker exited")
	return runErr
}

// resolveSecrets returns the API key and the git token, given in the
// environment or read from Secrets Manager (and then refreshed). Errors name
// the variable, never the value.
func resolveSecrets(ctx context.Context, cfg config.Config, awsCfg aws.Config, red *redact.Redactor, log *slog.Logger) (apiKey, token *secrets.Secret, err error) {
	apiKey = secrets.Static("ANTHROPIC_API_KEY", cfg.AnthropicAPIKey, red)
	token = secrets.Static("GITHUB_TOKEN", cfg.GitHubToken, red)
	if cfg.AnthropicAPIKeySecretID == "" && cfg.GitHubTokenSecretID == "" {
		return apiKey, token, nil
	}
	ctx, cancel := context.WithTimeout(ctx, secretsTimeout)
	defer cancel()
	sm := secretsmanager.NewFromConfig(awsCfg)
	log = log.With("component", "secrets")
	if id := cfg.AnthropicAPIKeySecretID; id != "" {
		if apiKey, err = secrets.FromManager(ctx, sm, "ANTHROPIC_API_KEY_SECRET_ID", id, red, log); err != nil {
			return nil, nil, &config.FieldError{Var: "ANTHROPIC_API_KEY_SECRET_ID", Reason: err.Error()}
		}
	}
	if id := cfg.GitHubTokenSecretID; id != "" {
		if token, err = secrets.FromManager(ctx, sm, "GITHUB_TOKEN_SECRET_ID", id, red, log); err != nil {
			return nil, nil, &config.FieldError{Var: "GITHUB_TOKEN_SECRET_ID", Reason: err.Error()}
		}
	}
	return apiKey, token, nil
}

// routes is the one HTTP port: /health, and the previews for everything
// else, each behind its preview token.
func routes(cfg config.Config, w *worker.Worker, pv *previews, activity *idle.Tracker, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/health", healthHandler(func() healthReport {
		return report(cfg, w, pv, activity, false)
	}))
	if pv != nil {
		proxy := preview.NewProxy(preview.ProxyConfig{Servers: pv.servers, Activity: activity, ViewMax: cfg.PreviewViewMax, Logger: log.With("component", "proxy")})
		mux.Handle("/", preview.NewGate(preview.GateConfig{Tokens: pv.tokens, PerHost: pv.perHost(), Next: pv.sockets.Wrap(proxy), Logger: log.With("component", "proxy")}))
	} else {
		mux.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) {
			http.Error(rw, "The preview is off on this worker (ASTRO_DEV_MODE=false).", http.StatusServiceUnavailable)
		})
	}
	return mux
}

// report builds /health's body; detailed adds what only `worker status`
// may see: the tenants, their paths and branches, the dev servers.
func report(cfg config.Config, w *worker.Worker, pv *previews, activity *idle.Tracker, detailed bool) healthReport {
	st := w.Stats()
	r := healthReport{
		Version:        version(),
		Jobs:           jobCounts{InFlight: st.InFlight, Succeeded: st.Succeeded, Failed: st.Failed},
		LastActivityAt: timePtr(activity.LastActivity()),
	}
	if d, ok := activity.Deadline(); ok {
		r.IdleShutdownAt = timePtr(d)
	}
	r.Retrying = w.Retrying()
	if !w.Healthy() {
		r.Problems = append(r.Problems, "the job queue poll loop is stuck")
	}
	if !detailed {
		return r
	}
	r.Workspace = cfg.WorkspacePath
	r.Astro = &astroState{State: "disabled"}
	if j := st.LastJob; j != nil {
		r.ClientID, r.UserID, r.ThreadID, r.Branch = j.ClientID, j.UserID, j.ThreadID, j.Branch()
		r.Workspace = filepath.Join(cfg.WorkspacePath, j.ClientID, j.UserID)
	}
	if pv != nil {
		r.Astro.State = preview.StateStopped
		r.Previews = []previewReport{}
		for i, s := range pv.servers.List() {
			client, user, _ := strings.Cut(s.Key, "/")
			pr := previewReport{Preview: s.ID, ClientID: client, UserID: user, ThreadID: s.ThreadID, State: s.State,
				Port: s.Port, LastViewedAt: timePtr(s.LastViewed)}
			if s.ThreadID != "" {
				pr.Branch = jobs.BranchName(s.ThreadID)
			}
			r.Previews = append(r.Previews, pr)
			if i == 0 || s.Key == r.ClientID+"/"+r.UserID {
				r.Astro.State = s.State // the latest job's user's, else the most recently viewed
			}
		}
	}
	return r
}

// taskGauges are the worker's per-minute figures.
func taskGauges(cfg config.Config, w *worker.Worker, pv *previews, lc *leases) []metrics.Value {
	inFlight := w.Stats().InFlight
	values := []metrics.Value{
		{Name: metrics.JobsInFlight, Value: float64(inFlight)},
		{Name: metrics.FreeLanes, Value: float64(max(int64(cfg.MaxConcurrentUsers)-inFlight, 0))},
	}
	if pv != nil {
		running := 0
		for _, s := range pv.servers.List() {
			if s.State != preview.StateStopped && s.State != preview.StateFailed {
				running++
			}
		}
		values = append(values, metrics.Value{Name: metrics.DevServersRunning, Value: float64(running)})
	}
	if cfg.LeaseTable != "" {
		values = append(values, metrics.Value{Name: metrics.LeasesHeld, Value: float64(lc.held())})
	}
	return values
}
