// Package site is the Handler of init and execute jobs on Astro site
// workspaces (CONTRACT.md section 3): it knows what a job does to a
// workspace, the agent and the preview, and nothing of queues.
package site

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/webordinary/claude-code-astro/internal/agent"
	"github.com/webordinary/claude-code-astro/internal/gateway"
	"github.com/webordinary/claude-code-astro/internal/money"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/preview"
	"github.com/webordinary/claude-code-astro/workspace"
)

// Agent runs the coding agent; *agent.Runner implements it.
type Agent interface {
	Run(ctx context.Context, req agent.Request, onProgress func(agent.Progress)) (agent.Result, error)
}

// Previewer runs each user's live preview, as its tenant; *preview.Servers
// implements it.
type Previewer interface {
	Target(ctx context.Context, t preview.Target) error
	// PIDFor returns the process id of the dev server serving projectDir,
	// 0 when none does.
	PIDFor(projectDir string) int
}

// Gateway gives each job its credentials for the Messages API and git;
// *gateway.Gateway implements it.
type Gateway interface {
	Lease(opts gateway.LeaseOptions) *gateway.Lease
}

// Config configures a Handler. Workspaces and Agent are required.
type Config struct {
	Workspaces *workspace.Workspaces
	Agent      Agent
	// Preview, when not nil, is pointed at the workspace of every job.
	Preview Previewer
	// DefaultRepoURL is cloned by an init without repoUrl (REPO_URL).
	DefaultRepoURL string
	// PreviewURL returns a user's previewUrl (PREVIEW_BASE_URL with the
	// user's preview and a preview token); nil answers none.
	PreviewURL func(clientID, userID string) string
	// Gateway, when not nil, gives every job a lease: the agent and git
	// reach the API and the repository through it, never with a real secret.
	Gateway Gateway
	// MaxBudgetUSD is the most one job may spend (CLAUDE_MAX_BUDGET_USD);
	// 0 means no limit. A job's own maxBudgetUsd never raises it.
	MaxBudgetUSD float64
	// Quota bounds each user's workspace (TENANT_DISK_MB,
	// TENANT_MAX_FILES); zero means none. It is checked every QuotaEvery
	// while a job runs (past it the job stops) and before an execute
	// commits; a job past it fails with quota_exceeded, nothing committed,
	// and its changes are discarded so the next job can run.
	Quota workspace.Quota
	// QuotaEvery is how often the quota is checked during a job; 0 means
	// DefaultQuotaEvery.
	QuotaEvery time.Duration
	// Running, when not nil, is where the handler marks the tenants whose
	// job runs, for others to ask (Running.Busy); nil keeps its own.
	Running *Running
	// Stopping, when not nil, is the worker's stop: once it has begun, a
	// job's last steps (see finishContext) end by its FinishBy, inside the
	// shutdown budget. Nil bounds them by jobs.FinishTimeout and
	// jobs.LeftoversTimeout alone.
	Stopping *jobs.Stop
	Logger   *slog.Logger
}

// DefaultQuotaEvery is how often a running job's workspace is measured
// when Config.QuotaEvery is 0. Each check walks the workspace (du): tens
// of milliseconds on a local disk, seconds on EFS for a large node_modules.
const DefaultQuotaEvery = 15 * time.Second

// Handler is the jobs.Handler of init and execute jobs on Astro site workspaces
// (CONTRACT.md section 3). The worker serialises one user's jobs; different
// users' jobs run at once.
type Handler struct {
	cfg     Config
	log     *slog.Logger
	running *Running
}

// Running is the set of tenants with a job running. The zero value is
// empty and ready; it is safe for concurrent use.
type Running struct {
	mu   sync.Mutex
	busy map[string]int // tenant keys with a job running, by count
}

// New returns the handler.
func New(cfg Config) *Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	running := cfg.Running
	if running == nil {
		running = &Running{}
	}
	return &Handler{cfg: cfg, log: cfg.Logger, running: running}
}

// Handle runs one job, holding the user's workspace lock meanwhile.
func (s *Handler) Handle(ctx context.Context, job jobs.Job, progress jobs.ProgressFunc) (jobs.Response, error) {
	u, err := s.user(job)
	if err != nil {
		return jobs.Response{}, err
	}
	unlock, err := u.Lock()
	if errors.Is(err, workspace.ErrBusy) {
		return jobs.Response{}, fmt.Errorf("%w: %w", jobs.ErrRetryLater, err)
	}
	if err != nil {
		return jobs.Response{}, classify(err)
	}
	defer func() {
		if err := unlock(); err != nil {
			s.log.WarnContext(ctx, "unlock the workspace", "error", err)
		}
	}()
	// Nothing the tenant started during the job outlives it, but its dev
	// server: a process left by an install script or the agent, even one
	// that left its process group and session, is found by its uid.
	defer s.stopLeftovers(ctx, u)
	defer s.running.enter(u.Tenant.Key)()
	var lease *gateway.Lease
	if s.cfg.Gateway != nil {
		// Only an execute runs the agent: only it gets an API credential.
		// A push may only create or fast-forward the job's own branch.
		lease = s.cfg.Gateway.Lease(gateway.LeaseOptions{Tenant: u.Tenant.Key, JobID: job.JobID, BudgetUSD: s.budget(job),
			API: job.Type == jobs.TypeExecute, ThreadID: job.ThreadID})
		defer lease.Close() // the job's credentials stop working when it ends
		u.Remote = func(repoURL string) (workspace.RemoteAccess, error) {
			url, env, err := lease.GitRemote(repoURL)
			return workspace.RemoteAccess{URL: url, Env: env}, err
		}
	}
	ctx, stopQuota := s.watchQuota(ctx, u)
	var resp jobs.Response
	switch job.Type {
	case jobs.TypeInit:
		resp, err = s.init(ctx, u, job)
	case jobs.TypeExecute:
		resp, err = s.execute(ctx, u, job, lease, progress)
	case jobs.TypeRevert:
		resp, err = s.revert(ctx, u, job)
	case jobs.TypePreview:
		resp, err = s.servePreview(ctx, u, job)
	default:
		err = jobs.Errorf(jobs.CodeInvalidJob, "unknown job type %q", job.Type)
	}
	stopQuota()
	if cause := context.Cause(ctx); err != nil && errors.Is(cause, workspace.ErrQuotaExceeded) && !isCode(err, jobs.CodeQuotaExceeded) {
		// The watcher stopped the job: its error is the stop's.
		err = s.overQuota(ctx, u, cause)
	}
	return resp, err
}

// failQuota records an execute that went past its workspace's quota as
// failed, discards its changes and returns its quota_exceeded error.
func (s *Handler) failQuota(ctx context.Context, u *workspace.User, job jobs.Job, record workspace.JobRecord, cause error) error {
	err := s.overQuota(ctx, u, cause)
	s.recordOutcome(ctx, u, job, record, jobs.Response{}, jobs.CodeQuotaExceeded)
	return err
}

// recordOutcome records how the job ended in its thread: succeeded when
// code is "" (an error code the record holds stays), else failed with code; pushed when resp's push landed; its
// finish time now (and its start too when it has none). A record that
// cannot be written is logged, not the job's failure: the job's commit,
// which FindJobCommit finds, is what keeps a redelivery from running it
// again.
func (s *Handler) recordOutcome(ctx context.Context, u *workspace.User, job jobs.Job, record workspace.JobRecord, resp jobs.Response, code jobs.Code) {
	record.Status = "succeeded"
	if code != "" {
		record.Status, record.ErrorCode = "failed", string(code)
	}
	record.Pushed = resp.Pushed != nil && *resp.Pushed
	record.FinishedAt = time.Now().UTC()
	if record.StartedAt.IsZero() {
		record.StartedAt = record.FinishedAt
	}
	if _, err := u.RecordJob(job.ThreadID, record); err != nil {
		s.log.WarnContext(ctx, "cannot record the job", "error", err)
	}
}

// checkQuota measures the user's workspace once more after the agent ran
// (the watcher measures only every QuotaEvery): an error wrapping
// workspace.ErrQuotaExceeded when it holds more than the quota. It runs
// even when the job's context has ended.
func (s *Handler) checkQuota(ctx context.Context, u *workspace.User) error {
	ctx, cancel := s.finishContext(ctx, jobs.FinishTimeout)
	defer cancel()
	if _, err := u.CheckQuota(ctx, s.cfg.Quota); errors.Is(err, workspace.ErrQuotaExceeded) {
		return err
	}
	return nil
}

// isCode reports whether err is a *jobs.Error of code.
func isCode(err error, code jobs.Code) bool {
	var je *jobs.Error
	return errors.As(err, &je) && je.Code == code
}

// watchQuota measures the user's workspace every QuotaEvery until stop is
// called, and cancels the returned context (its cause wrapping
// workspace.ErrQuotaExceeded) once it holds more than the quota: a job
// writing past it is stopped while it runs, not only after.
func (s *Handler) watchQuota(ctx context.Context, u *workspace.User) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	if s.cfg.Quota == (workspace.Quota{}) {
		return ctx, func() { cancel(nil) }
	}
	every := s.cfg.QuotaEvery
	if every <= 0 {
		every = DefaultQuotaEvery
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if _, err := u.CheckQuota(ctx, s.cfg.Quota); errors.Is(err, workspace.ErrQuotaExceeded) {
				s.log.WarnContext(ctx, "stopping the job: its workspace is over its quota", "error", err)
				cancel(err)
				return
			}
		}
	}()
	return ctx, func() {
		close(done)
		<-stopped
	}
}

// overQuota discards the job's changes so the workspace is usable again
// (workspace.Reclaim), and returns the job's quota_exceeded error.
func (s *Handler) overQuota(ctx context.Context, u *workspace.User, cause error) error {
	rctx, cancel := s.finishContext(ctx, jobs.FinishTimeout)
	defer cancel()
	if err := u.Reclaim(rctx, s.cfg.Quota); err != nil {
		s.log.WarnContext(ctx, "cannot bring the workspace back under its quota", "error", err)
	}
	return jobs.Errorf(jobs.CodeQuotaExceeded, "%s: the job's changes were discarded and nothing was committed", cause)
}

// budget returns the job's spending limit: the smaller of its own and
// MaxBudgetUSD, 0 for none.
func (s *Handler) budget(job jobs.Job) float64 {
	switch {
	case job.MaxBudgetUSD > 0 && s.cfg.MaxBudgetUSD > 0:
		return min(job.MaxBudgetUSD, s.cfg.MaxBudgetUSD)
	case job.MaxBudgetUSD > 0:
		return job.MaxBudgetUSD
	}
	return s.cfg.MaxBudgetUSD
}

// stopLeftovers kills every process of the user's tenant but its dev server.
func (s *Handler) stopLeftovers(ctx context.Context, u *workspace.User) {
	keep := 0
	if s.cfg.Preview != nil {
		keep = s.cfg.Preview.PIDFor(u.ProjectDir)
	}
	sctx, cancel := s.finishContext(ctx, jobs.LeftoversTimeout)
	defer cancel()
	n, err := u.Tenant.Stop(sctx, keep)
	if err != nil {
		s.log.WarnContext(ctx, "cannot stop the tenant's leftover processes", "error", err)
	}
	if n > 0 {
		s.log.InfoContext(ctx, "stopped processes the job left behind", "processes", n)
	}
}

func (s *Handler) user(job jobs.Job) (*workspace.User, error) {
	u, err := s.cfg.Workspaces.User(job.ClientID, job.UserID)
	if err != nil {
		return nil, classify(fmt.Errorf("open workspace: %w", err))
	}
	return u, nil
}

// init clones or resumes the workspace and checks out the thread's branch.
func (s *Handler) init(ctx context.Context, u *workspace.User, job jobs.Job) (jobs.Response, error) {
	repo := job.RepoURL
	if repo == "" {
		if meta, err := u.Metadata(); err != nil || meta.RepoURL == "" {
			repo = s.cfg.DefaultRepoURL
		}
	}
	res, err := u.Init(ctx, workspace.InitOptions{RepoURL: repo, BaseBranch: job.BaseBranch, ThreadID: job.ThreadID, FromThreadID: job.FromThreadID})
	if err != nil {
		if repo == "" && errors.Is(err, workspace.ErrInvalidRepoURL) {
			return jobs.Response{}, jobs.Errorf(jobs.CodeInvalidJob, "the job has no repoUrl and REPO_URL is not set")
		}
		return jobs.Response{}, classify(err)
	}
	if err := u.Touch(); err != nil {
		s.log.WarnContext(ctx, "cannot update metadata.json", "error", err)
	}
	if _, err := u.LoadThread(job.ThreadID); err != nil {
		s.log.WarnContext(ctx, "cannot read the thread record", "error", err)
	}
	s.preview(ctx, u, job)
	return jobs.Response{Branch: res.Branch, Resumed: jobs.Bool(res.Resumed), ForkedFrom: res.ForkedFrom, PreviewURL: s.previewURL(job)}, nil
}

// revert undoes job commits of the thread with a revert commit, and pushes.
func (s *Handler) revert(ctx context.Context, u *workspace.User, job jobs.Job) (jobs.Response, error) {
	resp := jobs.Response{Branch: job.Branch(), PreviewURL: s.previewURL(job)}
	started := time.Now().UTC()
	res, err := u.Revert(ctx, workspace.RevertOptions{ThreadID: job.ThreadID, JobID: job.JobID, ToCommit: job.ToCommit, Steps: job.Steps})
	if err != nil {
		return resp, classify(err)
	}
	if err := u.Touch(); err != nil {
		s.log.WarnContext(ctx, "cannot update metadata.json", "error", err)
	}
	s.preview(ctx, u, job) // the dev server shows the reverted files
	resp.Commit, resp.FilesChanged, resp.RevertedCommits = res.SHA, res.Files, res.Reverted
	ctx, cancel := s.finishContext(ctx, jobs.FinishTimeout)
	defer cancel()
	s.push(ctx, u, job, &resp)
	s.recordOutcome(ctx, u, job, workspace.JobRecord{JobID: job.JobID, Type: string(job.Type), Commit: res.SHA, Reverted: res.Reverted,
		StartedAt: started}, resp, "")
	return resp, nil
}

// execute runs the agent on the thread and commits what it changed.
func (s *Handler) execute(ctx context.Context, u *workspace.User, job jobs.Job, lease *gateway.Lease, progress jobs.ProgressFunc) (jobs.Response, error) {
	branch, err := u.SwitchThread(ctx, job.ThreadID)
	if err != nil {
		return jobs.Response{}, classify(err)
	}
	resp := jobs.Response{Branch: branch, PreviewURL: s.previewURL(job)}
	if err := u.Touch(); err != nil {
		s.log.WarnContext(ctx, "cannot update metadata.json", "error", err)
	}
	// The dev server starts (and the user's preview lease moves here)
	// while the agent runs, not before it: on a worker that did not serve
	// the user, a dev server's start would otherwise delay the edit.
	defer s.previewWhile(ctx, u, job)()

	thread, err := u.LoadThread(job.ThreadID)
	if err != nil {
		return resp, classify(err)
	}

	// A job that committed before its worker died is not run again.
	if sha, found, err := u.FindJobCommit(ctx, job.ThreadID, job.JobID); err != nil {
		return resp, classify(err)
	} else if found {
		s.log.InfoContext(ctx, "job already committed by an earlier attempt: not running the agent again", "commit", sha)
		resp.Commit = sha
		if resp.FilesChanged, err = u.CommitFiles(ctx, sha); err != nil {
			return resp, classify(err)
		}
		rec, ok := thread.Job(job.JobID)
		if ok && rec.SessionID != "" {
			resp.Claude = &jobs.ClaudeResult{SessionID: rec.SessionID, CostUSD: rec.CostUSD}
		}
		s.push(ctx, u, job, &resp)
		rec.JobID, rec.Type, rec.Commit = job.JobID, string(job.Type), sha
		s.recordOutcome(ctx, u, job, rec, resp, "")
		return resp, nil
	}

	started := time.Now().UTC()
	record := workspace.JobRecord{JobID: job.JobID, Type: string(job.Type), Instruction: job.Instruction, Status: "running", StartedAt: started}
	if _, err := u.RecordJob(job.ThreadID, record); err != nil {
		return resp, classify(err)
	}
	mode := agent.ModeExecute
	if job.Mode == jobs.ModePlan {
		mode = agent.ModePlan
	}
	req := agent.Request{
		Instruction: job.Instruction, Mode: mode,
		ProjectDir: u.ProjectDir, ConfigDir: u.AgentDir, HomeDir: u.HomeDir, TmpDir: u.TmpDir,
		SessionID: thread.SessionID, Credential: u.Tenant.Credential(), Limit: u.Tenant.Limit,
	}
	if req.SessionID == "" && thread.ForkedFrom != nil && thread.ForkedFrom.SessionID != "" {
		// A fork's first job: the parent's conversation, as a new session.
		req.SessionID, req.ForkSession = thread.ForkedFrom.SessionID, true
	}
	if lease != nil {
		req.APIKey = lease.APIKey()
	}
	result, runErr := s.cfg.Agent.Run(ctx, req, func(p agent.Progress) {
		progress(ctx, jobs.Progress{Kind: p.Kind, Tool: p.Tool, Summary: p.Summary})
	})
	if result.SessionID != "" {
		resp.Claude = &jobs.ClaudeResult{SessionID: result.SessionID, Result: result.Result, NumTurns: result.NumTurns,
			CostUSD: money.Round(result.CostUSD), DurationMs: result.DurationMs, IsError: result.IsError, FreshSession: result.FreshSession}
		if lease != nil {
			used, _ := lease.Usage()
			resp.Claude.Usage = &jobs.Usage{InputTokens: used.InputTokens, OutputTokens: used.OutputTokens,
				CacheReadTokens: used.CacheReadTokens, CacheWriteTokens: used.CacheWriteTokens}
		}
		record.SessionID = result.SessionID
		record.CostUSD = money.Round(result.CostUSD)
	}
	if cause := context.Cause(ctx); errors.Is(cause, workspace.ErrQuotaExceeded) {
		return resp, s.failQuota(ctx, u, job, record, cause)
	}
	// Whatever the agent's run came to (done, failed, stopped at the budget
	// or by a cancel), nothing it left is kept past the quota: a run that
	// fails on purpose must not fill the disk either.
	if err := s.checkQuota(ctx, u); err != nil {
		return resp, s.failQuota(ctx, u, job, record, err)
	}
	if lease != nil && lease.BudgetExceeded() {
		// The gateway stopped the agent at the budget: keep what it did.
		_, spent := lease.Usage()
		return s.keepPartial(ctx, u, job, resp, record, "budget exceeded",
			jobs.Errorf(jobs.CodeBudgetExceeded, "the job reached its budget of $%.2f (spent $%.4f at list prices): its edits so far are committed; send another execute to go on", s.budget(job), spent))
	}
	if runErr != nil && errors.Is(context.Cause(ctx), jobs.ErrCancelled) {
		// A cancel stopped the agent: keep what it did, as a commit that a
		// revert can undo; the session resumes with the next execute.
		return s.keepPartial(ctx, u, job, resp, record, "cancelled", jobs.Errorf(jobs.CodeCancelled,
			"%s: the agent was stopped; its edits so far are committed, and the thread's next execute resumes the conversation", context.Cause(ctx)))
	}
	if runErr != nil {
		// Changes the agent made stay in the working tree, uncommitted: a
		// retry of the job sees them, and a switch to another thread saves
		// them on this thread's branch.
		failure := classify(runErr)
		s.recordOutcome(ctx, u, job, record, jobs.Response{}, jobs.ErrorBodyOf(failure).Code)
		return resp, failure
	}

	// The agent's work is done: commit and push it even if the job's time
	// runs out or the worker is stopping now, so a redelivery finds the
	// commit instead of running the instruction again on top of its edits.
	ctx, cancel := s.finishContext(ctx, jobs.FinishTimeout)
	defer cancel()
	if job.Mode != jobs.ModePlan {
		commit, err := u.Commit(ctx, job.ThreadID, job.JobID, job.Instruction)
		if err != nil {
			return resp, classify(err)
		}
		resp.Commit, resp.FilesChanged = commit.SHA, commit.Files
		record.Commit = commit.SHA
		// Pushed even when nothing changed: an earlier job's failed push
		// lands now.
		s.push(ctx, u, job, &resp)
	}
	s.recordOutcome(ctx, u, job, record, resp, "")
	return resp, nil
}

// keepPartial commits and pushes what an agent stopped midway did, with a
// commit subject that says why it stopped, records the job as failed with
// failure, and returns the response and failure. The thread's session is
// recorded, so the next execute resumes it.
func (s *Handler) keepPartial(ctx context.Context, u *workspace.User, job jobs.Job, resp jobs.Response, record workspace.JobRecord, why string, failure *jobs.Error) (jobs.Response, error) {
	ctx, cancel := s.finishContext(ctx, jobs.FinishTimeout)
	defer cancel()
	if job.Mode != jobs.ModePlan {
		commit, err := u.CommitPartial(ctx, job.ThreadID, job.JobID, job.Instruction, why)
		if err != nil {
			s.log.WarnContext(ctx, "cannot commit the stopped agent's edits; they stay in the working tree", "error", err)
		} else {
			resp.Commit, resp.FilesChanged = commit.SHA, commit.Files
			record.Commit = commit.SHA
			s.push(ctx, u, job, &resp)
		}
	}
	s.recordOutcome(ctx, u, job, record, resp, failure.Code)
	return resp, failure
}

// push pushes the thread branch; a failed push is reported, not an error.
func (s *Handler) push(ctx context.Context, u *workspace.User, job jobs.Job, resp *jobs.Response) {
	pushed, reason, err := u.Push(ctx, job.ThreadID)
	if err != nil {
		reason = err.Error()
	}
	resp.Pushed = jobs.Bool(pushed)
	if !pushed && reason != "" {
		resp.PushError = reason
		s.log.WarnContext(ctx, "thread branch not pushed", "reason", reason)
	}
}

// servePreview starts the user's dev server here (and so takes the user's
// preview lease), on the job's thread or, without one, on the thread the
// workspace has checked out.
func (s *Handler) servePreview(ctx context.Context, u *workspace.User, job jobs.Job) (jobs.Response, error) {
	if s.cfg.Preview == nil {
		return jobs.Response{}, jobs.Errorf(jobs.CodeInvalidJob, "the preview is off on this worker (ASTRO_DEV_MODE=false)")
	}
	if _, err := u.Metadata(); err != nil {
		return jobs.Response{}, classify(err)
	}
	var resp jobs.Response
	if job.ThreadID != "" {
		branch, err := u.SwitchThread(ctx, job.ThreadID)
		if err != nil {
			return jobs.Response{}, classify(err)
		}
		resp.Branch = branch
	}
	if err := s.cfg.Preview.Target(ctx, PreviewTarget(u, job.ThreadID)); err != nil {
		return jobs.Response{}, jobs.Errorf(jobs.CodeInternal, "start the preview: %v", err)
	}
	resp.PreviewURL = s.previewURL(job)
	return resp, nil
}

// preview points the dev server at the user's project when another
// workspace was active. A preview that does not start is logged, not a job
// failure: /health shows the dev server's state.
func (s *Handler) preview(ctx context.Context, u *workspace.User, job jobs.Job) {
	if s.cfg.Preview == nil {
		return
	}
	if err := s.cfg.Preview.Target(ctx, PreviewTarget(u, job.ThreadID)); err != nil {
		s.log.WarnContext(ctx, "preview not serving", "error", err)
	}
}

// previewWhile points the dev server at the user's project in the
// background, as preview does, and returns a func that waits until it is
// done.
func (s *Handler) previewWhile(ctx context.Context, u *workspace.User, job jobs.Job) (wait func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.preview(ctx, u, job)
	}()
	return func() { <-done }
}

// PreviewTarget is what serves u's preview: its project, run as its tenant,
// on threadID ("" for the thread the workspace has checked out).
func PreviewTarget(u *workspace.User, threadID string) preview.Target {
	return preview.Target{ID: preview.ID(u.ClientID, u.UserID), Key: u.Tenant.Key, ThreadID: threadID, Dir: u.ProjectDir,
		As: preview.RunAs{Credential: u.Tenant.Credential(), Home: u.HomeDir, Limit: u.Tenant.Limit}}
}

// previewURL returns the job's user's previewUrl, "" without one.
func (s *Handler) previewURL(job jobs.Job) string {
	if s.cfg.PreviewURL == nil {
		return ""
	}
	return s.cfg.PreviewURL(job.ClientID, job.UserID)
}

// Busy reports whether a job of tenant key ("clientId/userId") runs now.
func (s *Handler) Busy(key string) bool { return s.running.Busy(key) }

// Busy reports whether a job of tenant key ("clientId/userId") runs now.
func (r *Running) Busy(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.busy[key] > 0
}

// enter marks a job of tenant key running, until the returned func.
func (r *Running) enter(key string) func() {
	r.mu.Lock()
	if r.busy == nil {
		r.busy = map[string]int{}
	}
	r.busy[key]++
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.busy[key]--; r.busy[key] <= 0 {
			delete(r.busy, key)
		}
	}
}

// classify wraps err in a *jobs.Error with the response code its kind maps to.
// The message is err's own text: the workspace's errors already say what was
// being done, so nothing is said twice.
func classify(err error) error {
	var je *jobs.Error
	if errors.As(err, &je) {
		return err
	}
	var ae *agent.Error
	var ge *workspace.GitError
	var ie *workspace.InstallError
	code := jobs.CodeInternal
	msg := err.Error()
	switch {
	case errors.As(err, &ae):
		code, msg = jobs.Code(ae.Code), ae.Message
	case errors.Is(err, context.DeadlineExceeded):
		code = jobs.CodeTimeout
	case errors.Is(err, context.Canceled):
		code = jobs.CodeCancelled
	case errors.Is(err, workspace.ErrNotInitialized):
		code = jobs.CodeNotInitialized
		msg = "the thread's workspace is not initialized: send an init job for it first"
	case errors.Is(err, workspace.ErrInvalidID), errors.Is(err, workspace.ErrOutsideRoot),
		errors.Is(err, workspace.ErrInvalidRepoURL), errors.Is(err, workspace.ErrRepoMismatch),
		errors.Is(err, workspace.ErrBaseBranchNotFound), errors.Is(err, workspace.ErrThreadNotFound),
		errors.Is(err, workspace.ErrThreadExists), errors.Is(err, workspace.ErrBadRevert):
		code = jobs.CodeInvalidJob
	case errors.Is(err, workspace.ErrQuotaExceeded):
		code = jobs.CodeQuotaExceeded
	case errors.Is(err, workspace.ErrRevertConflict):
		code = jobs.CodeGitFailed
	case errors.As(err, &ie):
		code = jobs.CodeInstallFailed
	case errors.As(err, &ge):
		code = jobs.CodeGitFailed
	}
	return &jobs.Error{Code: code, Msg: msg, Err: err}
}
