package main

import (
	"context"
	"errors"
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
	"github.com/webordinary/claude-code-astro/internal/taskprotect"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/jobs/site"
	"github.com/webordinary/claude-code-astro/preview"
	"github.com/webordinary/claude-code-astro/worker"
	"github.com/webordinary/claude-code-astro/workspace"
)

const (
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
	if err := parseNoArgs(c.Stderr, "worker run", "Usage: worker run\n\nRuns the worker with the configuration in the environment (see README.md).", args); err != nil {
		return err
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
// and the job loop, until ctx ends or the worker is idle; then it stops
// within jobs.ShutdownBudget.
func serve(ctx context.Context, cfg config.Config, opt serveOptions) error {
	red := redact.New()
	s := &server{cfg: cfg, opt: opt, red: red,
		log: logging.New(opt.Stderr, logging.Options{Level: cfg.LogLevel, Format: cfg.LogFormat, Redactor: red})}
	// runCtx ends at a stop (a signal, idle): the worker stops receiving.
	// What running jobs use (the secrets, the gateway, the dev servers'
	// janitor) lives on in svcCtx until the worker has drained them.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	svcCtx, stopServices := context.WithCancel(context.WithoutCancel(ctx))
	defer s.waitServices(stopServices)

	if err := s.confine(ctx); err != nil {
		return err
	}
	if err := s.startGateway(ctx, svcCtx); err != nil {
		return err
	}
	if err := s.wire(ctx, svcCtx, runCtx); err != nil {
		return err
	}
	if err := s.listen(ctx, svcCtx, runCtx); err != nil {
		return err
	}
	s.announce()
	if cfg.AutoShutdown > 0 {
		s.wg.Go(func() { idleStop(runCtx, stop, cfg, s.service, opt.AWS, s.activity, s.log) })
	}
	runErr := s.run(runCtx, svcCtx)
	stop()
	stopServices() // the jobs are done (or abandoned): nothing uses them now
	s.close(ctx)
	return runErr
}

// server is one run of the worker: what serve wires, and what its stop
// takes down. Its steps run in the order serve calls them.
type server struct {
	cfg config.Config
	opt serveOptions
	red *redact.Redactor
	log *slog.Logger

	confined  *sandbox.Confinement // nil when not root
	sb        *sandbox.Sandbox
	claudeBin string // the Claude Code CLI tenants run
	gw        *gateway.Gateway
	ws        *workspace.Workspaces
	activity  *idle.Tracker
	service   bool // an ECS service task
	keeper    *taskprotect.Keeper
	lc        *leases
	pv        *previews // nil with ASTRO_DEV_MODE=false
	w         *worker.Worker
	ln        net.Listener
	srv       *http.Server

	// wg holds every background loop; servicesDone are closed once the
	// services (the gateway, the status socket) have stopped.
	wg           sync.WaitGroup
	servicesDone []<-chan struct{}
}

// confine sets the tenant boundary first: as root, the worker keeps only
// what it needs to start tenant processes, before anything else runs. (It
// is logged once the configuration is known to be good: a bad one gets one
// line.) What tenant processes run must be within their reach: the CLI is
// copied where it is when it is not.
func (s *server) confine(ctx context.Context) error {
	cfg := s.cfg
	if os.Geteuid() == 0 {
		c, err := sandbox.Confine(sandbox.Limits{MaxProcs: uint64(cfg.TenantMaxProcs), MaxFileBytes: uint64(cfg.TenantMaxFileMB) << 20})
		if err != nil {
			return err
		}
		s.confined = &c
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
			Max: cfg.TenantMaxPorts, Logger: s.log.With("component", "portcap")})
		if err != nil {
			return fmt.Errorf("bound the tenants' ports (TENANT_MAX_PORTS, TENANT_UIDS): %w", err)
		}
		go ports.Run(ctx)
	}
	s.sb, s.claudeBin = sb, cfg.ClaudeBin
	if sb.Privileged() {
		if s.claudeBin, err = tenantTools(ctx, cfg, s.opt.PATH, s.log); err != nil {
			return err
		}
	}
	return nil
}

// startGateway reads the API key and the git token (see resolveSecrets),
// keeps them fresh, and starts the gateway that lends them to jobs, all
// until svcCtx ends.
func (s *server) startGateway(ctx, svcCtx context.Context) error {
	cfg := s.cfg
	apiKey, token, err := resolveSecrets(ctx, cfg, s.opt.AWS, s.red, s.log)
	if err != nil {
		return err
	}
	if apiKey.Value() == "" {
		s.log.Warn("no ANTHROPIC_API_KEY or ANTHROPIC_API_KEY_SECRET_ID: execute jobs will fail")
	}
	s.wg.Go(func() { apiKey.Keep(svcCtx, cfg.SecretRefresh) })
	s.wg.Go(func() { token.Keep(svcCtx, cfg.SecretRefresh) })
	s.gw = gateway.New(gateway.Config{APIUpstream: cfg.AnthropicBaseURL, APIKey: apiKey, GitToken: token,
		TokenHosts: cfg.GitTokenHosts, Pricing: cfg.ClaudePricing, Logger: s.log.With("component", "gateway")})
	done, err := s.gw.Listen(svcCtx)
	if err != nil {
		return err
	}
	s.servicesDone = append(s.servicesDone, done)
	return nil
}

// waitServices stops the services and waits for them: serve's last step,
// whichever way it returns.
func (s *server) waitServices(stopServices context.CancelFunc) {
	stopServices()
	for i := len(s.servicesDone) - 1; i >= 0; i-- {
		<-s.servicesDone[i]
	}
}

// wire builds what runs jobs: the workspaces, the agent, the previews, the
// site handler and the job loop, with the task's protection and metrics.
func (s *server) wire(ctx, svcCtx, runCtx context.Context) error {
	cfg, opt, log := s.cfg, s.opt, s.log
	wsCfg := workspace.Config{
		Root: cfg.WorkspacePath, Sandbox: s.sb, AuthorName: cfg.GitAuthorName, AuthorEmail: cfg.GitAuthorEmail, NpmSeedCache: cfg.NpmCacheDir,
		PATH: opt.PATH, Redactor: s.red, Logger: log.With("component", "workspace"),
	}
	// Every worker keeps the index of users by preview id (cold previews
	// are looked up in it), whether it serves previews or not: a worker
	// with the preview on may take any user over.
	wsCfg.PreviewID = preview.ID
	ws, err := workspace.Open(wsCfg)
	if err != nil {
		return fmt.Errorf("WORKSPACE_PATH: %w", err)
	}
	s.ws = ws
	runner := agent.NewRunner(agent.Config{
		Bin: s.claudeBin, Model: cfg.ClaudeModel, MaxTurns: cfg.ClaudeMaxTurns,
		BaseURL: s.gw.BaseURL() + "/anthropic", PATH: opt.PATH, Redactor: s.red, Logger: log.With("component", "agent"),
	})
	s.activity = idle.New(cfg.AutoShutdown)
	s.service = inService(ctx, cfg, log)
	s.keeper = protection(cfg, s.service, log)
	jobActivity := activities{s.activity}
	if s.keeper != nil {
		jobActivity = append(jobActivity, s.keeper)
		s.wg.Go(func() { s.keeper.Run(svcCtx) })
	}

	// The stop begins when runCtx ends (a signal, idle): from then on, a
	// job's last steps end inside the shutdown budget.
	stopping := jobs.NewStop()
	context.AfterFunc(runCtx, func() { stopping.Begin(time.Now()) })
	running := &site.Running{}
	siteCfg := site.Config{Workspaces: ws, Agent: runner, DefaultRepoURL: cfg.RepoURL, Gateway: s.gw,
		MaxBudgetUSD: cfg.ClaudeMaxBudgetUSD, Running: running, Stopping: stopping, Logger: log.With("component", "jobs"),
		Quota: workspace.Quota{Bytes: int64(cfg.TenantDiskMB) << 20, Inodes: int64(cfg.TenantMaxFiles)}}
	met := metrics.New(opt.Stdout, metrics.Options{Service: "worker", Readable: opt.Stdout == nil, Logger: log})
	s.lc = &leases{} // LEASE_TABLE: taken once the HTTP port listens
	if cfg.AstroDevMode {
		s.pv, err = newPreviews(ctx, cfg, previewsDeps{AWS: opt.AWS, Workspaces: ws, PATH: opt.PATH, Running: running,
			Leases: s.lc, Redactor: s.red, Logger: log})
		if err != nil {
			return err
		}
		siteCfg.Preview, siteCfg.PreviewURL = jobPreviewer{Servers: s.pv.servers, leases: s.lc, metrics: met}, s.pv.url
		s.wg.Go(func() { s.pv.servers.Run(svcCtx) })
	}

	s.w, err = worker.New(sqs.NewFromConfig(opt.AWS), worker.Config{
		JobQueueURL: cfg.JobQueueURL, ResponseQueueURL: cfg.ResponseQueueURL,
		Handler: site.New(siteCfg), Ledger: ledger.New(cfg.WorkspacePath), Activity: jobActivity, Redactor: s.red,
		Logger: log, MaxConcurrentUsers: cfg.MaxConcurrentUsers, JobTimeout: cfg.JobTimeout, Answered: met.Answered,
		DrainTimeout: jobs.ShutdownDrain, StopBudget: jobs.ShutdownStop,
	})
	if err != nil {
		return err
	}
	s.wg.Go(func() {
		met.Every(runCtx, time.Minute, func() []metrics.Value { return taskGauges(cfg, s.w, s.pv, s.lc) })
	})
	return nil
}

// listen opens the status socket and the HTTP port, then takes the
// previews' leases (LEASE_TABLE), which name the port.
func (s *server) listen(ctx, svcCtx, runCtx context.Context) error {
	cfg, log := s.cfg, s.log
	statusSocket := cfg.StatusSocket
	if statusSocket == "" {
		statusSocket = DefaultStatusSocket()
	}
	statusDone, err := listenStatus(svcCtx, statusSocket, func() healthReport {
		rep := report(cfg, s.w, s.pv, s.activity, !s.service, true)
		rep.Status = "ok"
		if len(rep.Problems) > 0 {
			rep.Status = "unhealthy"
		}
		return rep
	}, log)
	if err != nil {
		return err
	}
	s.servicesDone = append(s.servicesDone, statusDone)
	if s.ln, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return fmt.Errorf("HTTP_ADDR: %w", err)
	}
	s.srv = &http.Server{
		Handler:           routes(cfg, s.w, s.pv, s.activity, !s.service, log),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	s.wg.Go(func() {
		if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("HTTP server failed", "error", err)
		}
	})
	if s.pv == nil {
		return nil
	}
	holder, err := s.lc.start(ctx, cfg, s.opt.AWS, s.ln.Addr().String(), s.keeper, func(id string) { s.leaseLost(ctx, id) }, log)
	if err != nil {
		s.srv.Close()
		return err
	}
	if holder != nil {
		s.wg.Go(func() { holder.Run(svcCtx) })
		// A stop ends the leases at once: routers then wake the
		// previews on other workers while this one drains.
		s.wg.Go(func() {
			<-runCtx.Done()
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			holder.Close(cctx)
		})
	}
	return nil
}

// leaseLost gives up preview id, whose lease another worker took over.
func (s *server) leaseLost(ctx context.Context, id string) {
	s.lc.lost(id)
	// The open pages first: 1012 makes Vite's client poll (through the
	// router, to the new owner) and reload.
	if n := s.pv.sockets.Close(id, closeServiceRestart, "the preview moved to another worker"); n > 0 {
		s.log.Info("closed the preview's sockets: the pages reload from its new worker", "preview", id, "sockets", n)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := s.pv.servers.Stop(sctx, id); err != nil {
		s.log.Warn("stop the dev server of a preview taken over", "preview", id, "error", err)
	}
}

// announce logs how the worker runs, and tells opt.Ready.
func (s *server) announce() {
	cfg, log := s.cfg, s.log
	if c := s.confined; c != nil {
		log.Info("worker confined: tenants run under uids of their own", "capabilities", c.Caps, "tenant_uids", cfg.TenantUIDs.String(),
			"tenant_max_procs", c.MaxProcs, "tenant_max_file_bytes", c.MaxFileBytes)
	} else {
		log.Warn("the worker is not root, so it cannot run tenants under uids of their own: it serves ONE tenant (the first job's client/user) and refuses others",
			"uid", os.Geteuid())
	}
	addr := s.ln.Addr().String()
	log.Info("listening", "http_addr", addr, "preview", cfg.AstroDevMode, "version", version(), "ecs_service", s.service)
	if s.opt.Ready != nil {
		s.opt.Ready(addr, s.claudeBin)
	}
}

// run runs the job loop until it fails or runCtx ends; then it waits for
// the loop's stop, at most jobs.ShutdownLoop.
func (s *server) run(runCtx, svcCtx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- s.w.Run(runCtx) }()
	s.wg.Go(func() {
		select {
		case <-s.opt.Hurry:
			s.log.Warn("asked again to stop: stopping the running jobs now")
			s.w.Hurry()
		case <-svcCtx.Done():
		}
	})
	select {
	case err := <-done:
		return err
	case <-runCtx.Done():
	}
	s.log.Info("shutting down")
	select {
	case err := <-done:
		return err
	case <-time.After(jobs.ShutdownLoop):
		s.log.Error("the job loop did not stop in time; exiting anyway", "budget", jobs.ShutdownLoop.String())
		return nil
	}
}

// close stops the dev servers and the HTTP port within
// jobs.ShutdownClose, and waits for the background loops.
func (s *server) close(ctx context.Context) {
	closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), jobs.ShutdownClose)
	defer cancel()
	if s.pv != nil {
		if err := s.pv.servers.Close(closeCtx); err != nil {
			s.log.Warn("stop the dev servers", "error", err)
		}
	}
	if err := s.srv.Shutdown(closeCtx); err != nil {
		s.srv.Close()
	}
	s.wg.Wait()
	s.log.Info("worker exited")
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
func routes(cfg config.Config, w *worker.Worker, pv *previews, activity *idle.Tracker, idleStops bool, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/health", healthHandler(func() healthReport {
		return report(cfg, w, pv, activity, idleStops, false)
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
// idleStops is false in an ECS service, where an idle worker does not stop
// (the service scales in): no idleShutdownAt then.
func report(cfg config.Config, w *worker.Worker, pv *previews, activity *idle.Tracker, idleStops, detailed bool) healthReport {
	st := w.Stats()
	r := healthReport{
		Version:        version(),
		Jobs:           jobCounts{InFlight: st.InFlight, Succeeded: st.Succeeded, Failed: st.Failed},
		LastActivityAt: timePtr(activity.LastActivity()),
	}
	if d, ok := activity.Deadline(); ok && idleStops {
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
