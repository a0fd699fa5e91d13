// Package agent runs the Claude Code CLI headlessly for one job: one
// instruction, in one project directory, in one resumable session per
// thread. It builds the CLI's argument list and allowlisted environment,
// reads its stream-json output into progress callbacks and a Result, and
// classifies failures as *Error with the contract's error codes. The CLI runs
// in its own process group, which is killed whole when the run ends.
package agent

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"

	claudecode "github.com/webordinary/claude-code-astro/internal/agent/claude-code"
	"github.com/webordinary/claude-code-astro/internal/config"
	"github.com/webordinary/claude-code-astro/internal/redact"
	"github.com/webordinary/claude-code-astro/internal/sandbox"
)

// Defaults applied by NewRunner to zero Config fields.
const (
	DefaultMaxRetries       = 2
	DefaultProgressInterval = time.Second
	DefaultKillGrace        = 5 * time.Second
)

// stderrTail is how much of the CLI's stderr is kept for error messages.
const stderrTail = 8 << 10

// treeScanInterval is how often the CLI's process tree is recorded.
const treeScanInterval = 250 * time.Millisecond

// maxMessage bounds an error message built from the CLI's output.
const maxMessage = 2000

// noConversation is what the CLI says when --resume finds no session.
const noConversation = "No conversation found with session ID"

// errNoConversation is the internal signal to retry with a fresh session.
var errNoConversation = errors.New("no conversation found")

// writeTools are the tools that change files; plan mode never has them.
var writeTools = []string{"Edit", "MultiEdit", "Write", "NotebookEdit"}

// DefaultTools returns the built-in tools the agent has: reading, searching
// and editing files. No Bash: the worker runs git itself, and a shell would
// reach past the rules below (`git log --output=` writes any file).
func DefaultTools() []string {
	return []string{"Read", "Edit", "MultiEdit", "Write", "Glob", "Grep"}
}

// projectRules are the permission rules of every run: files of the project
// (the CLI's working directory) may be read and edited, nothing outside it
// (the CLI's dontAsk mode denies what no rule allows; Glob and Grep follow
// the Read rules), and nothing in .git. The repository's own settings are
// not read at all (--setting-sources ""), so none of its rules, hooks or env
// apply.
var projectRules = map[string][]string{
	"allow": {"Read(./**)", "Edit(./**)"},
	"deny":  {"Edit(./.git/**)", "Edit(./.git)"},
}

// Config configures a Runner. The zero value of each field means its default.
type Config struct {
	// Bin is the CLI executable, a path or a name looked up in PATH
	// (CLAUDE_BIN); "" means config.Default()'s.
	Bin string
	// Model is passed as --model (CLAUDE_MODEL); "" means the CLI's default.
	Model string
	// MaxTurns is the agent's turn limit per run (CLAUDE_MAX_TURNS); 0
	// means config.Default()'s.
	MaxTurns int
	// Tools are the built-in tools the agent has (--tools). Default
	// DefaultTools(); plan mode drops the write tools.
	Tools []string
	// Allow are permission rules allowed beyond the project's files (such
	// as "Bash(sleep:*)" in a test). Default none.
	Allow []string
	// APIKey is given to the CLI as ANTHROPIC_API_KEY when the Request has
	// none. It is masked in every error and log line of the runner.
	APIKey string
	// BaseURL, when set, is given as ANTHROPIC_BASE_URL.
	BaseURL string
	// PATH is the child's PATH. Default sandbox.DefaultPATH.
	PATH string
	// MaxRetries is CLAUDE_CODE_MAX_RETRIES, how often the CLI retries a
	// failed API call (529 overloaded, dropped connection) with backoff.
	// 0 means DefaultMaxRetries; a negative value means no retry.
	MaxRetries int
	// ExtraEnv are further "KEY=value" entries for the child's environment
	// (e.g. a proxy or CA setting). The runner's own entries take precedence.
	ExtraEnv []string
	// ProgressInterval is the least time between two progress callbacks;
	// the latest progress of an interval is delivered. Default one second.
	ProgressInterval time.Duration
	// KillGrace is how long the CLI has to exit after SIGTERM before its
	// process group is killed. Default five seconds.
	KillGrace time.Duration
	// Redactor masks secrets in captured output; APIKey is always added.
	// Nil means only APIKey (and URL credentials) are masked.
	Redactor *redact.Redactor
	// Logger receives the runner's logs. Nil discards them.
	Logger *slog.Logger
	// Started, when set, is called with the CLI's process id (which is also
	// its process group id) after each start. For tests and metrics.
	Started func(pid int)
}

// Runner runs the Claude Code CLI. It is safe for concurrent use; each Run
// is independent (callers serialise runs that share a session).
type Runner struct {
	cfg      Config
	log      *slog.Logger
	redactor *redact.Redactor
}

// NewRunner returns a Runner for cfg with defaults applied.
func NewRunner(cfg Config) *Runner {
	if cfg.Bin == "" {
		cfg.Bin = config.Default().ClaudeBin
	}
	if cfg.MaxTurns <= 0 {
		cfg.MaxTurns = config.Default().ClaudeMaxTurns
	}
	if cfg.Tools == nil {
		cfg.Tools = DefaultTools()
	}
	if cfg.PATH == "" {
		cfg.PATH = sandbox.DefaultPATH
	}
	switch {
	case cfg.MaxRetries == 0:
		cfg.MaxRetries = DefaultMaxRetries
	case cfg.MaxRetries < 0:
		cfg.MaxRetries = 0
	}
	if cfg.ProgressInterval <= 0 {
		cfg.ProgressInterval = DefaultProgressInterval
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = DefaultKillGrace
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runner{cfg: cfg, log: log, redactor: cfg.Redactor.With(cfg.APIKey)}
}

// Mode is what the agent may do.
type Mode string

// Modes.
const (
	// ModeExecute lets the agent edit files (permission mode acceptEdits).
	ModeExecute Mode = "execute"
	// ModePlan lets the agent read but not change files (permission mode plan).
	ModePlan Mode = "plan"
)

// Request is one run of the agent.
type Request struct {
	// Instruction is the prompt, given to the CLI on stdin. Required.
	Instruction string
	// Mode is ModeExecute (the default when empty) or ModePlan.
	Mode Mode
	// ProjectDir is the CLI's working directory. Required. Sessions are
	// bound to this path: resume from the same path.
	ProjectDir string
	// ConfigDir is CLAUDE_CONFIG_DIR, where sessions are stored. Required;
	// created when missing.
	ConfigDir string
	// HomeDir is the child's HOME. Default: the parent of ConfigDir.
	HomeDir string
	// TmpDir is CLAUDE_CODE_TMPDIR and TMPDIR. Default: a new temporary
	// directory removed after the run.
	TmpDir string
	// SessionID is the thread's session to resume; "" starts a new session
	// with a fresh id.
	SessionID string
	// ForkSession resumes SessionID as a new session (the CLI's
	// --fork-session): the run sees the conversation so far, and what it
	// adds goes to the new session only (Result.SessionID), not to
	// SessionID's. It forks a thread.
	ForkSession bool
	// APIKey, when set, is the CLI's ANTHROPIC_API_KEY for this run (a
	// per-job credential of the worker's API gateway) instead of
	// Config.APIKey.
	APIKey string
	// Credential, when set, is the uid and gid the CLI and everything it
	// starts run as: the tenant's. Its directories (ProjectDir, ConfigDir,
	// HomeDir, TmpDir) must exist and be the tenant's; the runner creates
	// none of them.
	Credential *syscall.Credential
	// Limit, when set, is applied to the CLI's command before it starts:
	// the tenant's resource limits (sandbox.Tenant.Limit).
	Limit func(*exec.Cmd)
}

// Result is the outcome of a run, as reported in the `claude` object of an
// execute response.
type Result struct {
	// SessionID is the session the run used: resume it next time. Empty
	// when the run made none (the CLI did not start, or ended before it
	// named its session) and resumed none.
	SessionID string `json:"sessionId"`
	// Result is the agent's final text.
	Result string `json:"result"`
	// NumTurns is the number of turns the CLI counted.
	NumTurns int `json:"numTurns"`
	// CostUSD is the CLI's cost estimate for the run.
	CostUSD float64 `json:"costUsd"`
	// DurationMs is the CLI's own duration of the run.
	DurationMs int64 `json:"durationMs"`
	// IsError is the CLI's is_error flag.
	IsError bool `json:"isError"`
	// FreshSession is true when SessionID was asked for but could not be
	// resumed, and a new session was started instead.
	FreshSession bool `json:"-"`
	// StartupMs is the time from starting the CLI to its init line.
	StartupMs int64 `json:"-"`
}

// Run runs the CLI for req and waits for it. onProgress, if not nil, is
// called with the agent's steps (at most about once per ProgressInterval,
// never concurrently); every call has returned when Run returns.
//
// A failed run returns an *Error (CodeAgentFailed, CodeTimeout when ctx's
// deadline passed, CodeCancelled when ctx was cancelled) and whatever Result
// was learned (at least the session id once the CLI started). A Request
// that cannot be run returns an error wrapping ErrInvalidRequest. When Run
// returns, no process of the CLI's process group is running.
func (r *Runner) Run(ctx context.Context, req Request, onProgress func(Progress)) (Result, error) {
	req, cleanup, err := r.prepare(req)
	if err != nil {
		return Result{}, err
	}
	defer cleanup()

	var emit func(Progress)
	if onProgress != nil {
		c := newCoalescer(r.cfg.ProgressInterval, onProgress)
		defer c.close()
		emit = c.add
	}

	fresh := false
	resume := req.SessionID != ""
	if resume {
		if ok, why := r.sessionAvailable(req); !ok {
			r.log.WarnContext(ctx, "agent session not resumable, starting a new one", "session", req.SessionID, "reason", why)
			resume, fresh = false, true
		}
	}
	if !resume {
		req.SessionID = uuid.NewString()
	}
	res, err := r.runOnce(ctx, req, resume, emit)
	if errors.Is(err, errNoConversation) {
		r.log.WarnContext(ctx, "agent session not found in the project directory, starting a new one", "session", req.SessionID)
		req.SessionID, fresh = uuid.NewString(), true
		res, err = r.runOnce(ctx, req, false, emit)
		if errors.Is(err, errNoConversation) {
			err = &Error{Code: CodeAgentFailed, Message: "claude: new session not found", Err: err}
		}
	}
	res.FreshSession = fresh
	return res, err
}

// prepare validates req, applies defaults and creates its directories.
func (r *Runner) prepare(req Request) (Request, func(), error) {
	noop := func() {}
	if strings.TrimSpace(req.Instruction) == "" {
		return req, noop, fmt.Errorf("%w: empty instruction", ErrInvalidRequest)
	}
	if strings.IndexByte(req.Instruction, 0) >= 0 {
		return req, noop, fmt.Errorf("%w: instruction contains NUL", ErrInvalidRequest)
	}
	switch req.Mode {
	case "":
		req.Mode = ModeExecute
	case ModeExecute, ModePlan:
	default:
		return req, noop, fmt.Errorf("%w: unknown mode %q", ErrInvalidRequest, req.Mode)
	}
	if req.ProjectDir == "" || req.ConfigDir == "" {
		return req, noop, fmt.Errorf("%w: project and config directories are required", ErrInvalidRequest)
	}
	var err error
	if req.ProjectDir, err = filepath.Abs(req.ProjectDir); err != nil {
		return req, noop, fmt.Errorf("%w: project dir: %w", ErrInvalidRequest, err)
	}
	if fi, err := os.Stat(req.ProjectDir); err != nil || !fi.IsDir() {
		return req, noop, fmt.Errorf("%w: project dir %s is not a directory", ErrInvalidRequest, req.ProjectDir)
	}
	if req.ConfigDir, err = filepath.Abs(req.ConfigDir); err != nil {
		return req, noop, fmt.Errorf("%w: config dir: %w", ErrInvalidRequest, err)
	}
	if req.HomeDir == "" {
		req.HomeDir = filepath.Dir(req.ConfigDir)
	}
	if req.Credential != nil {
		// The tenant's directories: the worker creates nothing in them.
		if req.TmpDir == "" {
			return req, noop, fmt.Errorf("%w: a run as another uid needs its TmpDir", ErrInvalidRequest)
		}
		return req, noop, nil
	}
	for _, dir := range []string{req.ConfigDir, req.HomeDir} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return req, noop, fmt.Errorf("create agent dir: %w", err)
		}
	}
	if req.TmpDir != "" {
		if err := os.MkdirAll(req.TmpDir, 0o700); err != nil {
			return req, noop, fmt.Errorf("create agent tmp dir: %w", err)
		}
		return req, noop, nil
	}
	tmp, err := os.MkdirTemp("", "claude-run-")
	if err != nil {
		return req, noop, fmt.Errorf("create agent tmp dir: %w", err)
	}
	req.TmpDir = tmp
	return req, func() {
		if err := os.RemoveAll(tmp); err != nil {
			r.log.Warn("remove agent tmp dir", "dir", tmp, "error", err)
		}
	}, nil
}

// SessionPath returns the file where the CLI keeps the transcript of session
// id run in projectDir: configDir/projects/<projectDir with every
// non-alphanumeric byte as '-'>/<id>.jsonl.
func SessionPath(configDir, projectDir, id string) string {
	name := []byte(projectDir)
	for i, c := range name {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			name[i] = '-'
		}
	}
	return filepath.Join(configDir, "projects", string(name), id+".jsonl")
}

// sessionAvailable reports whether req.SessionID may be resumed, and if not
// why. Whether its transcript is there is checked where the CLI starts, as
// the user the CLI runs as (see launch): the worker may not read a tenant's
// files.
func (r *Runner) sessionAvailable(req Request) (bool, string) {
	if u, err := uuid.Parse(req.SessionID); err != nil || u.String() != req.SessionID {
		return false, "session id is not a canonical UUID"
	}
	return true, ""
}

// sessionFiles returns where a resume of req.SessionID must find its
// transcript: under the project directory's own name, as given and with its
// symlinks resolved (the CLI may name it either way; the second is the
// first when the path cannot be resolved). A session of the thread is never
// taken from another directory: since 2.1.223 the CLI resumes a session id
// it finds under any project, which would carry another checkout's
// conversation and file paths into this one.
func sessionFiles(req Request) (string, string) {
	own := SessionPath(req.ConfigDir, req.ProjectDir, req.SessionID)
	if real, err := filepath.EvalSymlinks(req.ProjectDir); err == nil && real != req.ProjectDir {
		return own, SessionPath(req.ConfigDir, real, req.SessionID)
	}
	return own, own
}

// launch starts the CLI as the user it runs as (the tenant), in the
// project. $0 is the CLI; $1 and $2 are the transcript files a resume must
// find, one of them not empty (sessionFiles; both empty for a new session):
// when neither is, it says so as the CLI does for an unknown session and
// exits, and the runner starts a fresh session. The rest are the CLI's
// arguments. When the project has a CLAUDE.md it is added to the system
// prompt: the CLI reads CLAUDE.md only with the project's settings, which
// it must not read, so the file is given by name (the CLI, the same process
// after exec, reads it). Nothing from a job is part of the script.
const launch = `if [ -n "$1" ] && [ ! -s "$1" ] && [ ! -s "$2" ]; then echo "` + noConversation + ` in this project directory" >&2; exit 3; fi; shift 2; ` +
	`if [ -f CLAUDE.md ]; then exec "$0" "$@" --append-system-prompt-file ./CLAUDE.md; fi; exec "$0" "$@"`

// settings returns the --settings JSON of every run: projectRules plus
// Config.Allow, and no hooks.
func (r *Runner) settings() string {
	allow := append(slices.Clone(projectRules["allow"]), r.cfg.Allow...)
	b, err := json.Marshal(map[string]any{
		"permissions":     map[string]any{"allow": allow, "deny": projectRules["deny"]},
		"disableAllHooks": true,
	})
	if err != nil {
		panic(err) // a constant map of strings always marshals
	}
	return string(b)
}

// args returns the CLI's argument list. The instruction goes on stdin, so no
// argument comes from the job except the validated session id.
func (r *Runner) args(req Request, resume bool) []string {
	args := []string{
		"-p",
		"--output-format", "stream-json", "--verbose",
		"--max-turns", strconv.Itoa(r.cfg.MaxTurns),
		"--strict-mcp-config",
		"--setting-sources", "",
		"--settings", r.settings(),
	}
	if r.cfg.Model != "" {
		args = append(args, "--model", r.cfg.Model)
	}
	if resume {
		args = append(args, "--resume", req.SessionID)
		if req.ForkSession {
			args = append(args, "--fork-session")
		}
	} else {
		args = append(args, "--session-id", req.SessionID)
	}
	tools := r.cfg.Tools
	if req.Mode == ModePlan {
		args = append(args, "--permission-mode", "plan")
		tools = slices.DeleteFunc(slices.Clone(tools), func(t string) bool { return slices.Contains(writeTools, t) })
	} else {
		args = append(args, "--permission-mode", "dontAsk")
	}
	return append(args, "--tools", strings.Join(tools, ","))
}

// env returns the child's environment: an allowlist, never the parent's.
func (r *Runner) env(req Request) []string {
	own := []string{
		"PATH=" + r.cfg.PATH,
		"HOME=" + req.HomeDir,
		"CLAUDE_CONFIG_DIR=" + req.ConfigDir,
		"CLAUDE_CODE_TMPDIR=" + req.TmpDir,
		"TMPDIR=" + req.TmpDir,
		"LANG=C.UTF-8",
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
		"DISABLE_AUTOUPDATER=1",
		"DISABLE_TELEMETRY=1",
		"DISABLE_ERROR_REPORTING=1",
		"CLAUDE_CODE_MAX_RETRIES=" + strconv.Itoa(r.cfg.MaxRetries),
	}
	if key := cmp.Or(req.APIKey, r.cfg.APIKey); key != "" {
		own = append(own, "ANTHROPIC_API_KEY="+key)
	}
	if r.cfg.BaseURL != "" {
		own = append(own, "ANTHROPIC_BASE_URL="+r.cfg.BaseURL)
	}
	set := make(map[string]bool, len(own))
	for _, kv := range own {
		k, _, _ := strings.Cut(kv, "=")
		set[k] = true
	}
	env := make([]string, 0, len(own)+len(r.cfg.ExtraEnv))
	for _, kv := range r.cfg.ExtraEnv {
		if k, _, ok := strings.Cut(kv, "="); ok && !set[k] {
			env = append(env, kv)
		}
	}
	return append(env, own...)
}

// runOnce starts the CLI once and classifies its end.
func (r *Runner) runOnce(ctx context.Context, req Request, resume bool, emit func(Progress)) (Result, error) {
	log := r.log.With("session", req.SessionID)
	start := time.Now()
	parser := &streamParser{
		log:        log,
		redactor:   r.redactor,
		projectDir: req.ProjectDir,
		progress:   emit,
		started:    start,
	}
	stderr := &tailBuffer{max: stderrTail}

	// A CLI that never ran made no session: only one resumed as it is
	// (not forked) is the thread's still.
	notRun := Result{}
	if resume && !req.ForkSession {
		notRun.SessionID = req.SessionID
	}
	bin, err := r.bin()
	if err != nil {
		msg := "start claude: " + err.Error() + " (install the pinned CLI: npm ci --prefix " + claudecode.Dir +
			", which worker local does by itself at start; or set CLAUDE_BIN)"
		return notRun, &Error{Code: CodeAgentFailed, Message: r.redactor.String(msg), Err: err}
	}
	var own, resolved string
	if resume {
		own, resolved = sessionFiles(req)
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", append([]string{"-c", launch, bin, own, resolved}, r.args(req, resume)...)...)
	cmd.Dir = req.ProjectDir
	cmd.Env = r.env(req)
	cmd.Stdin = strings.NewReader(req.Instruction)
	cmd.Stdout = parser
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: req.Credential}
	if req.Limit != nil {
		req.Limit(cmd)
	}
	var tree atomic.Pointer[procTree]
	cmd.Cancel = func() error {
		// The CLI and every command its tools started (they run in
		// sessions of their own); WaitDelay then kills what remains.
		if t := tree.Load(); t != nil {
			t.signal(syscall.SIGTERM)
			return nil
		}
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	}
	cmd.WaitDelay = r.cfg.KillGrace

	if err := cmd.Start(); err != nil {
		if ctx.Err() != nil {
			return notRun, ctxError(ctx)
		}
		return notRun, &Error{
			Code:    CodeAgentFailed,
			Message: r.redactor.String(fmt.Sprintf("start claude: %v", err)),
			Err:     err,
		}
	}
	pid := cmd.Process.Pid
	tree.Store(newProcTree(pid))
	watchCtx, stopWatch := context.WithCancel(context.Background())
	var watching sync.WaitGroup
	watching.Go(func() { tree.Load().watch(watchCtx, treeScanInterval) })
	log.InfoContext(ctx, "agent started", "pid", pid, "mode", req.Mode, "resume", resume, "instruction_bytes", len(req.Instruction))
	if r.cfg.Started != nil {
		r.cfg.Started(pid)
	}
	waitErr := cmd.Wait()
	parser.flush()
	stopWatch()
	watching.Wait()
	log.DebugContext(ctx, "agent process exited", "error", waitErr, "wall_ms", time.Since(start).Milliseconds())

	// Nothing the agent started outlives the run.
	killCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.KillGrace+5*time.Second)
	if err := tree.Load().kill(killCtx); err != nil {
		log.ErrorContext(ctx, "kill agent processes", "pid", pid, "error", err)
	}
	cancel()
	log.DebugContext(ctx, "agent processes gone", "wall_ms", time.Since(start).Milliseconds())

	sessionID, initAt, cr := parser.state()
	res := notRun // a CLI that ended before it said its session wrote none
	if sessionID != "" {
		res.SessionID = sessionID
	}
	if initAt > 0 {
		res.StartupMs = initAt.Milliseconds()
	}
	if cr != nil {
		res.Result = cr.Result
		res.NumTurns = cr.NumTurns
		res.CostUSD = cr.CostUSD
		res.DurationMs = cr.DurationMs
		res.IsError = cr.IsError
	}
	stderrText := r.redactor.String(stderr.String())
	ok := cr != nil && !cr.IsError && (waitErr == nil || errors.Is(waitErr, exec.ErrWaitDelay))
	log.InfoContext(ctx, "agent finished", "ok", ok, "turns", res.NumTurns, "cost_usd", res.CostUSD,
		"duration_ms", res.DurationMs, "startup_ms", res.StartupMs, "wall_ms", time.Since(start).Milliseconds())

	switch {
	case ok:
		if waitErr != nil {
			log.WarnContext(ctx, "agent left its output open after exiting", "error", waitErr)
		}
		return res, nil
	case ctx.Err() != nil:
		return res, ctxError(ctx)
	case resume && (strings.Contains(stderrText, noConversation) || (cr != nil && strings.Contains(strings.Join(cr.Errors, "\n"), noConversation))):
		return res, errNoConversation
	}
	e := &Error{Code: CodeAgentFailed, Message: r.failureMessage(waitErr, cr, stderrText), Err: waitErr}
	log.WarnContext(ctx, "agent failed", "error", e.Message)
	return res, e
}

// bin finds the CLI: Config.Bin as a path, or looked up in Config.PATH.
func (r *Runner) bin() (string, error) {
	if strings.Contains(r.cfg.Bin, "/") {
		fi, err := os.Stat(r.cfg.Bin)
		if err != nil {
			return "", err
		}
		if !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			return "", fmt.Errorf("%s is not an executable file", r.cfg.Bin)
		}
		return r.cfg.Bin, nil
	}
	for _, dir := range filepath.SplitList(r.cfg.PATH) {
		p := filepath.Join(dir, r.cfg.Bin)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH %s", r.cfg.Bin, r.cfg.PATH)
}

// ctxError classifies a run ended by its context.
func ctxError(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		return &Error{Code: CodeTimeout, Message: "agent timed out: the job's time limit was reached", Err: ctx.Err()}
	}
	return &Error{Code: CodeCancelled, Message: "agent cancelled", Err: ctx.Err()}
}

// failureMessage says why a run failed, from the result line if there is
// one, else from the exit status and stderr. The text is redacted.
func (r *Runner) failureMessage(waitErr error, cr *cliResult, stderr string) string {
	var msg string
	switch {
	case cr != nil && cr.Subtype == "error_max_turns":
		msg = fmt.Sprintf("claude reached the turn limit (%d) before finishing", r.cfg.MaxTurns)
	case cr != nil && (cr.Result != "" || len(cr.Errors) > 0):
		text := cr.Result
		if text == "" {
			text = strings.Join(cr.Errors, "; ")
		}
		if cr.APIErrorStatus != 0 {
			msg = fmt.Sprintf("claude failed (API status %d): %s", cr.APIErrorStatus, text)
		} else {
			msg = "claude failed: " + text
		}
	case cr != nil && cr.IsError:
		msg = fmt.Sprintf("claude failed (%s)", cr.Subtype)
	case waitErr != nil:
		msg = fmt.Sprintf("claude exited: %v", waitErr)
		if tail := lastLines(stderr, 5); tail != "" {
			msg += ": " + tail
		}
	default:
		msg = "claude exited without a result"
		if tail := lastLines(stderr, 5); tail != "" {
			msg += ": " + tail
		}
	}
	return truncate(r.redactor.String(msg), maxMessage)
}

// lastLines returns the last n non-empty lines of s joined by " | ".
func lastLines(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	mu  sync.Mutex
	buf []byte
	cut bool // bytes were dropped from the front
}

// Write implements io.Writer.
func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
		t.cut = true
	}
	return len(p), nil
}

// String returns the kept bytes, at most max, starting at a line boundary
// when it was cut.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if len(b) > t.max || t.cut {
		b = b[max(0, len(b)-t.max):]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(bytes.ToValidUTF8(b, []byte("?")))
}
