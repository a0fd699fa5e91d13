package jobs

import (
	"errors"
	"fmt"
	"time"
)

// Status is a response's status.
type Status string

// The response statuses.
const (
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
	StatusProgress  Status = "progress"
)

// Code is a failed response's error code.
type Code string

// The error codes of CONTRACT.md section 2.
const (
	CodeInvalidJob     Code = "invalid_job"
	CodeNotInitialized Code = "workspace_not_initialized"
	CodeGitFailed      Code = "git_failed"
	CodeInstallFailed  Code = "install_failed"
	CodeAgentFailed    Code = "agent_failed"
	CodeBudgetExceeded Code = "budget_exceeded"
	CodeQuotaExceeded  Code = "quota_exceeded"
	CodeTimeout        Code = "timeout"
	CodeCancelled      Code = "cancelled"
	CodeInternal       Code = "internal"
)

// CancelState is where a cancel found its target job.
type CancelState string

// The cancel states.
const (
	// CancelRunning: the target was running; it stops and is answered
	// cancelled.
	CancelRunning CancelState = "running"
	// CancelQueued: a worker holds the target and had not started it; it
	// is answered cancelled without running.
	CancelQueued CancelState = "queued"
	// CancelFinished: too late, the target had already answered.
	CancelFinished CancelState = "finished"
	// CancelUnknown: no worker has seen the target. Should it still come
	// out of the queue (behind its user's running job), it is answered
	// cancelled without running.
	CancelUnknown CancelState = "unknown"
)

// ErrCancelled is the cause of a job context cancelled by a cancel job
// (context.Cause): a handler that sees it keeps what was done and answers
// CodeCancelled.
var ErrCancelled = errors.New("cancelled by a cancel job")

// Response is one message on the response queue.
type Response struct {
	JobID    string `json:"jobId"`
	Type     Type   `json:"type,omitempty"`
	ClientID string `json:"clientId,omitempty"`
	UserID   string `json:"userId,omitempty"`
	ThreadID string `json:"threadId,omitempty"`
	Status   Status `json:"status"`

	Branch       string        `json:"branch,omitempty"`
	Resumed      *bool         `json:"resumed,omitempty"`
	Commit       string        `json:"commit,omitempty"`
	Pushed       *bool         `json:"pushed,omitempty"`
	PushError    string        `json:"pushError,omitempty"`
	FilesChanged []string      `json:"filesChanged,omitempty"`
	PreviewURL   string        `json:"previewUrl,omitempty"`
	Claude       *ClaudeResult `json:"claude,omitempty"`
	// ForkedFrom is the parent thread of an init with fromThreadId.
	ForkedFrom string `json:"forkedFrom,omitempty"`
	// Cancelled says where a cancel found its target.
	Cancelled CancelState `json:"cancelled,omitempty"`
	// RevertedCommits are the job commits a revert undid, newest first.
	RevertedCommits []string   `json:"revertedCommits,omitempty"`
	Progress        *Progress  `json:"progress,omitempty"`
	Error           *ErrorBody `json:"error,omitempty"`

	// ReceivedAt is when the worker received the message; StartedAt when
	// it began the job, after any wait behind the same user's earlier jobs;
	// FinishedAt when the job ended. DurationMs is FinishedAt - StartedAt:
	// the job's own time, without the wait.
	ReceivedAt string `json:"receivedAt,omitempty"`
	StartedAt  string `json:"startedAt,omitempty"`
	FinishedAt string `json:"finishedAt,omitempty"`
	DurationMs int64  `json:"durationMs"`
}

// ClaudeResult is what the agent reported for an execute job.
type ClaudeResult struct {
	SessionID    string  `json:"sessionId"`
	Result       string  `json:"result"`
	NumTurns     int     `json:"numTurns"`
	CostUSD      float64 `json:"costUsd"`
	DurationMs   int64   `json:"durationMs"`
	IsError      bool    `json:"isError"`
	FreshSession bool    `json:"freshSession,omitempty"` // the thread's earlier session could not be resumed
	// Usage is what the job's API calls used, counted by the worker's API
	// gateway.
	Usage *Usage `json:"usage,omitempty"`
}

// Usage counts tokens.
type Usage struct {
	InputTokens      int64 `json:"inputTokens"`
	OutputTokens     int64 `json:"outputTokens"`
	CacheReadTokens  int64 `json:"cacheReadTokens"`
	CacheWriteTokens int64 `json:"cacheWriteTokens"`
}

// Progress is the body of a progress response.
type Progress struct {
	Kind    string `json:"kind"` // "tool_use" or "text"
	Tool    string `json:"tool,omitempty"`
	Summary string `json:"summary,omitempty"`
}

// ErrorBody is a failed response's error.
type ErrorBody struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
}

// Error is a job failure with its response code. Handlers return it (wrapped
// or not); any other error is answered as CodeInternal.
type Error struct {
	Code Code
	Msg  string
	Err  error // the cause, optional; not shown in the response
}

func (e *Error) Error() string {
	if e.Err != nil && e.Msg == "" {
		return string(e.Code) + ": " + e.Err.Error()
	}
	return string(e.Code) + ": " + e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// ErrorBodyOf turns any error into the response's error body.
func ErrorBodyOf(err error) *ErrorBody {
	var je *Error
	if errors.As(err, &je) {
		msg := je.Msg
		if msg == "" && je.Err != nil {
			msg = je.Err.Error()
		}
		return &ErrorBody{Code: je.Code, Message: msg}
	}
	var ie *InvalidError
	if errors.As(err, &ie) {
		return &ErrorBody{Code: CodeInvalidJob, Message: ie.Error()}
	}
	return &ErrorBody{Code: CodeInternal, Message: err.Error()}
}

// NewResponse returns the response envelope for job: ids echoed, branch set.
func NewResponse(job Job, status Status) Response {
	r := Response{JobID: job.JobID, Type: job.Type, ClientID: job.ClientID, UserID: job.UserID, ThreadID: job.ThreadID, Status: status}
	if ValidID(job.ThreadID) {
		r.Branch = job.Branch()
	}
	return r
}

// Finish sets the response's times: received from the queue, started by
// the worker (after any wait in the user's lane), finished. DurationMs is the
// job's own time, finished - started.
func (r *Response) Finish(received, started, finished time.Time) {
	r.ReceivedAt = received.UTC().Format(time.RFC3339Nano)
	r.StartedAt = started.UTC().Format(time.RFC3339Nano)
	r.FinishedAt = finished.UTC().Format(time.RFC3339Nano)
	r.DurationMs = finished.Sub(started).Milliseconds()
}

// Bool returns a pointer to b, for the optional boolean fields.
func Bool(b bool) *bool { return &b }
