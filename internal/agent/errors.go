package agent

import "errors"

// Error codes of *Error. They are the response error codes of the contract.
const (
	// CodeAgentFailed: the CLI failed, reported an error or hit the turn limit.
	CodeAgentFailed = "agent_failed"
	// CodeTimeout: the run's context reached its deadline (the job timeout).
	CodeTimeout = "timeout"
	// CodeCancelled: the run's context was cancelled (worker shutdown).
	CodeCancelled = "cancelled"
)

// ErrInvalidRequest is wrapped by the error Run returns for a Request it
// cannot run (no instruction, no project or config directory, unknown mode).
var ErrInvalidRequest = errors.New("invalid agent request")

// Error is a failed run of the agent, classified for the job's response.
// Message is safe to show: secrets are redacted from it.
type Error struct {
	// Code is CodeAgentFailed, CodeTimeout or CodeCancelled.
	Code string
	// Message says what happened, redacted.
	Message string
	// Err is the underlying cause, if any (e.g. context.DeadlineExceeded
	// or an *exec.ExitError). Its text is not part of Error().
	Err error
}

// Error returns the redacted message.
func (e *Error) Error() string {
	return e.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error {
	return e.Err
}

// ErrorCode returns the code of the *Error in err's chain, or "" when there is
// none.
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
