// Package jobs defines the jobs the worker receives and the responses it sends
// (CONTRACT.md sections 1 and 2), their strict decoding and validation, and the
// Handler the worker calls to run a job. It knows what a job does, not where it
// came from: nothing here imports SQS.
package jobs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/webordinary/claude-code-astro/internal/ident"
)

// Type is the kind of a job.
type Type string

// The job types.
const (
	TypeInit    Type = "init"
	TypeExecute Type = "execute"
	// TypeCancel stops another job of the same user (TargetJobID).
	TypeCancel Type = "cancel"
	// TypeRevert undoes job commits of a thread with revert commits.
	TypeRevert Type = "revert"
)

// Known reports whether t is one of the job types.
func (t Type) Known() bool {
	return t == TypeInit || t == TypeExecute || t == TypeCancel || t == TypeRevert
}

// ControlGroupSuffix ends the FIFO message group of a cancel:
// clientId/userId/control, so that it never waits behind the job it stops.
const ControlGroupSuffix = "/control"

// MaxRevertSteps bounds a revert's steps.
const MaxRevertSteps = 1000

// Mode says whether an execute job may change files.
type Mode string

// The execute modes.
const (
	ModeExecute Mode = "execute" // edits allowed, changes committed
	ModePlan    Mode = "plan"    // read-only: nothing is changed or committed
)

// MaxInstructionBytes is the largest instruction an execute job may carry.
const MaxInstructionBytes = 100_000

// MaxMessageBytes bounds the message body the decoder reads: SQS itself caps
// bodies at 256 KiB (1 MiB with newer limits).
const MaxMessageBytes = 1 << 20

var (
	commitPattern = regexp.MustCompile(`^[0-9a-fA-F]{4,64}$`)
)

// Job is one unit of work, decoded from a queue message.
type Job struct {
	Type        Type   `json:"type"`
	JobID       string `json:"jobId,omitempty"`
	ClientID    string `json:"clientId"`
	UserID      string `json:"userId"`
	ThreadID    string `json:"threadId"`
	RepoURL     string `json:"repoUrl,omitempty"`
	BaseBranch  string `json:"baseBranch,omitempty"`
	Instruction string `json:"instruction,omitempty"`
	Mode        Mode   `json:"mode,omitempty"`
	// MaxBudgetUSD is an execute job's spending limit in US dollars; 0
	// means none of its own (CLAUDE_MAX_BUDGET_USD still applies).
	MaxBudgetUSD float64 `json:"maxBudgetUsd,omitempty"`
	// FromThreadID makes an init a fork: the new thread starts at the head
	// of thread-{FromThreadID} and its agent session is a fork of that
	// thread's.
	FromThreadID string `json:"fromThreadId,omitempty"`
	// TargetJobID is the job a cancel stops.
	TargetJobID string `json:"targetJobId,omitempty"`
	// ToCommit and Steps say what a revert undoes (exactly one is set): the
	// thread's job commits after ToCommit, or its last Steps job commits.
	ToCommit string `json:"toCommit,omitempty"`
	Steps    int    `json:"steps,omitempty"`
}

// Branch is the git branch of the job's thread.
func (j Job) Branch() string { return BranchName(j.ThreadID) }

// UserKey names the job's user: the per-user lane and the FIFO message group.
func (j Job) UserKey() string { return j.ClientID + "/" + j.UserID }

// BranchName is the git branch of a thread.
func BranchName(threadID string) string { return "thread-" + threadID }

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid job")

// InvalidError says why a message is not a valid job. Job holds whatever
// could be read of it, so the answer can still be addressed when its ids are
// valid (see Addressable).
type InvalidError struct {
	Field  string // the JSON field at fault, "" for the message as a whole
	Reason string
	Job    Job
}

func (e *InvalidError) Error() string {
	if e.Field == "" {
		return "invalid job: " + e.Reason
	}
	return fmt.Sprintf("invalid job: %s: %s", e.Field, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Unwrap() error { return ErrInvalid }

// Addressable reports whether the invalid job's answer can be routed to its
// user: its client and user ids are valid, so it has a user and a FIFO group.
func (e *InvalidError) Addressable() bool {
	return ident.ValidID(e.Job.ClientID) && ident.ValidID(e.Job.UserID)
}

// Echo returns what an invalid_job answer may echo of the message: each id
// only when it is valid, the type only when it is a known one, and as job id
// the message's own when valid, else messageID (the queue's id, which
// upstream has from its send).
func (e *InvalidError) Echo(messageID string) Job {
	var j Job
	if ident.ValidJobID(e.Job.JobID) {
		j.JobID = e.Job.JobID
	} else {
		j.JobID = messageID
	}
	for _, f := range []struct{ src, dst *string }{
		{&e.Job.ClientID, &j.ClientID}, {&e.Job.UserID, &j.UserID}, {&e.Job.ThreadID, &j.ThreadID},
	} {
		if ident.ValidID(*f.src) {
			*f.dst = *f.src
		}
	}
	if e.Job.Type.Known() {
		j.Type = e.Job.Type
	}
	return j
}

// rawJob decodes fields leniently (any JSON type), so an invalid message still
// yields whatever ids it has and the error names the field at fault.
type rawJob map[string]json.RawMessage

// Decode parses and validates a message body. messageID is the queue's id for
// the message, the job id when the body has none. On failure the error is an
// *InvalidError.
func Decode(body []byte, messageID string) (Job, error) {
	if len(body) > MaxMessageBytes {
		return Job{}, &InvalidError{Reason: fmt.Sprintf("message is %d bytes, more than %d", len(body), MaxMessageBytes)}
	}
	if !utf8.Valid(body) {
		return Job{}, &InvalidError{Reason: "message is not UTF-8"}
	}
	var raw rawJob
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&raw); err != nil || raw == nil {
		return Job{}, &InvalidError{Reason: "message is not a JSON object"}
	}
	if _, err := dec.Token(); err != io.EOF {
		return Job{}, &InvalidError{Reason: "message has data after the JSON object"}
	}

	var job Job
	// Read the addressing fields first, so that later errors can be answered.
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{"clientId", &job.ClientID}, {"userId", &job.UserID}, {"threadId", &job.ThreadID},
		{"jobId", &job.JobID}, {"type", (*string)(&job.Type)},
	} {
		_ = stringField(raw, f.name, f.dst) // errors reported below, in order
	}
	if job.JobID == "" {
		job.JobID = messageID
	}
	invalid := func(field, reason string) (Job, error) {
		return Job{}, &InvalidError{Field: field, Reason: reason, Job: job}
	}

	known := map[string]bool{"type": true, "jobId": true, "clientId": true, "userId": true, "threadId": true,
		"repoUrl": true, "baseBranch": true, "instruction": true, "mode": true, "maxBudgetUsd": true,
		"fromThreadId": true, "targetJobId": true, "toCommit": true, "steps": true}
	for name := range raw {
		if !known[name] {
			return invalid(name, "unknown field")
		}
	}

	var typ string
	if err := stringField(raw, "type", &typ); err != nil {
		return invalid("type", err.Error())
	}
	switch Type(typ) {
	case TypeInit, TypeExecute, TypeCancel, TypeRevert:
	case "":
		return invalid("type", `is required ("init", "execute", "cancel" or "revert")`)
	default:
		return invalid("type", fmt.Sprintf(`%q is not "init", "execute", "cancel" or "revert"`, truncate(typ, 40)))
	}

	if _, ok := raw["jobId"]; ok {
		var id string
		if err := stringField(raw, "jobId", &id); err != nil {
			return invalid("jobId", err.Error())
		}
		if !ident.ValidJobID(id) {
			return invalid("jobId", "must be "+ident.JobIDRule)
		}
	} else if !ident.ValidJobID(messageID) {
		return invalid("jobId", "missing, and the message id cannot stand in for it")
	}

	for _, name := range []string{"clientId", "userId", "threadId"} {
		var v string
		if err := stringField(raw, name, &v); err != nil {
			return invalid(name, err.Error())
		}
		switch {
		case v == "" && name == "threadId" && job.Type == TypeCancel:
			// a cancel names its target by job id; a thread is optional
		case v == "":
			return invalid(name, "is required")
		case !ident.ValidID(v):
			return invalid(name, "must be "+ident.IDRule)
		}
	}

	for _, f := range []struct {
		name string
		dst  *string
	}{{"repoUrl", &job.RepoURL}, {"baseBranch", &job.BaseBranch}, {"instruction", &job.Instruction}, {"mode", (*string)(&job.Mode)},
		{"fromThreadId", &job.FromThreadID}, {"targetJobId", &job.TargetJobID}, {"toCommit", &job.ToCommit}} {
		if err := stringField(raw, f.name, f.dst); err != nil {
			return invalid(f.name, err.Error())
		}
	}
	// Each field belongs to some job types only.
	allowed := map[string][]Type{
		"repoUrl": {TypeInit}, "baseBranch": {TypeInit}, "fromThreadId": {TypeInit},
		"instruction": {TypeExecute}, "mode": {TypeExecute}, "maxBudgetUsd": {TypeExecute},
		"targetJobId": {TypeCancel}, "toCommit": {TypeRevert}, "steps": {TypeRevert},
	}
	for _, name := range []string{"repoUrl", "baseBranch", "fromThreadId", "instruction", "mode", "maxBudgetUsd", "targetJobId", "toCommit", "steps"} {
		if _, ok := raw[name]; ok && !slices.Contains(allowed[name], job.Type) {
			return invalid(name, fmt.Sprintf("is not allowed in %s %s job", article(job.Type), job.Type))
		}
	}

	switch job.Type {
	case TypeInit:
		if _, ok := raw["fromThreadId"]; ok {
			switch {
			case !ident.ValidID(job.FromThreadID):
				return invalid("fromThreadId", "must be a thread id: "+ident.IDRule)
			case job.FromThreadID == job.ThreadID:
				return invalid("fromThreadId", "must name another thread than threadId")
			case job.BaseBranch != "":
				return invalid("fromThreadId", "a fork starts at its parent thread: give fromThreadId or baseBranch, not both")
			}
		}
		if job.RepoURL != "" {
			var urlErr *ident.RepoURLError
			if errors.As(ident.CheckRepoURL(job.RepoURL), &urlErr) {
				return invalid("repoUrl", urlErr.Reason)
			}
		}
		if job.BaseBranch != "" && !ident.ValidBranch(job.BaseBranch) {
			return invalid("baseBranch", "is not a valid branch name")
		}
	case TypeCancel:
		switch {
		case job.TargetJobID == "":
			return invalid("targetJobId", "is required: the jobId of the job to stop")
		case !ident.ValidJobID(job.TargetJobID):
			return invalid("targetJobId", "must be "+ident.JobIDRule)
		case job.TargetJobID == job.JobID:
			return invalid("targetJobId", "a cancel cannot stop itself")
		}
	case TypeRevert:
		_, hasCommit := raw["toCommit"]
		_, hasSteps := raw["steps"]
		switch {
		case hasCommit == hasSteps:
			return invalid("toCommit", "give exactly one of toCommit (a commit of the thread's branch) and steps (how many job commits to undo)")
		case hasCommit && !commitPattern.MatchString(job.ToCommit):
			return invalid("toCommit", "must be a commit id: 4 to 64 hexadecimal digits")
		case hasSteps:
			var steps float64
			if err := json.Unmarshal(raw["steps"], &steps); err != nil || steps != float64(int(steps)) || steps < 1 || steps > MaxRevertSteps {
				return invalid("steps", fmt.Sprintf("must be a whole number from 1 to %d", MaxRevertSteps))
			}
			job.Steps = int(steps)
		}
	case TypeExecute:
		switch {
		case strings.TrimSpace(job.Instruction) == "":
			return invalid("instruction", "is required and must not be empty")
		case len(job.Instruction) > MaxInstructionBytes:
			return invalid("instruction", fmt.Sprintf("is %d bytes, more than %d", len(job.Instruction), MaxInstructionBytes))
		case strings.ContainsRune(job.Instruction, 0):
			return invalid("instruction", "contains a NUL character")
		}
		if v, ok := raw["maxBudgetUsd"]; ok {
			if err := json.Unmarshal(v, &job.MaxBudgetUSD); err != nil || job.MaxBudgetUSD <= 0 || job.MaxBudgetUSD > 1e6 {
				return invalid("maxBudgetUsd", "must be a number of US dollars above 0")
			}
		}
		switch job.Mode {
		case "":
			job.Mode = ModeExecute
		case ModeExecute, ModePlan:
		default:
			return invalid("mode", fmt.Sprintf(`%q is not "execute" or "plan"`, truncate(string(job.Mode), 40)))
		}
	}
	return job, nil
}

// article is "a" or "an" for a job type.
func article(t Type) string {
	if t == TypeInit || t == TypeExecute {
		return "an"
	}
	return "a"
}

// stringField reads raw[name] into dst when present. A present field must be a
// JSON string.
func stringField(raw rawJob, name string, dst *string) error {
	v, ok := raw[name]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(v, dst); err != nil {
		*dst = ""
		return errors.New("must be a string")
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
