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
	// TypePreview starts the user's dev server on the worker that takes
	// it, which so takes the user's preview lease: routers send it to wake
	// a preview (CONTRACT.md section 6).
	TypePreview Type = "preview"
)

// Known reports whether t is one of the job types.
func (t Type) Known() bool {
	return t == TypeInit || t == TypeExecute || t == TypeCancel || t == TypeRevert || t == TypePreview
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

// field is one field of the job schema (CONTRACT.md section 1): its JSON
// name (the same as Job's struct tag, which a test checks), the job types it
// belongs to, and how its value is read into a Job. read returns why the
// value is refused, "" when it is not.
type field struct {
	name  string
	types []Type // nil: every job type
	read  func(v json.RawMessage, job *Job) string
}

// schema is the job schema, declared once: Decode knows a field, reads it and
// refuses it in a job type it does not belong to from this list alone. The
// addressing fields come first so that a later error can still be answered.
var schema = []field{
	{"clientId", nil, text(func(j *Job) *string { return &j.ClientID })},
	{"userId", nil, text(func(j *Job) *string { return &j.UserID })},
	{"threadId", nil, text(func(j *Job) *string { return &j.ThreadID })},
	{"jobId", nil, text(func(j *Job) *string { return &j.JobID })},
	{"type", nil, text(func(j *Job) *string { return (*string)(&j.Type) })},
	{"repoUrl", []Type{TypeInit}, text(func(j *Job) *string { return &j.RepoURL })},
	{"baseBranch", []Type{TypeInit}, text(func(j *Job) *string { return &j.BaseBranch })},
	{"fromThreadId", []Type{TypeInit}, text(func(j *Job) *string { return &j.FromThreadID })},
	{"instruction", []Type{TypeExecute}, text(func(j *Job) *string { return &j.Instruction })},
	{"mode", []Type{TypeExecute}, text(func(j *Job) *string { return (*string)(&j.Mode) })},
	{"maxBudgetUsd", []Type{TypeExecute}, readBudget},
	{"targetJobId", []Type{TypeCancel}, text(func(j *Job) *string { return &j.TargetJobID })},
	{"toCommit", []Type{TypeRevert}, text(func(j *Job) *string { return &j.ToCommit })},
	{"steps", []Type{TypeRevert}, readSteps},
}

// text reads a field that must be a JSON string.
func text(dst func(*Job) *string) func(json.RawMessage, *Job) string {
	return func(v json.RawMessage, j *Job) string {
		if err := json.Unmarshal(v, dst(j)); err != nil {
			*dst(j) = ""
			return "must be a string"
		}
		return ""
	}
}

func readBudget(v json.RawMessage, j *Job) string {
	if err := json.Unmarshal(v, &j.MaxBudgetUSD); err != nil || j.MaxBudgetUSD <= 0 || j.MaxBudgetUSD > 1e6 {
		return "must be a number of US dollars above 0"
	}
	return ""
}

func readSteps(v json.RawMessage, j *Job) string {
	var steps float64
	if err := json.Unmarshal(v, &steps); err != nil || steps != float64(int(steps)) || steps < 1 || steps > MaxRevertSteps {
		return fmt.Sprintf("must be a whole number from 1 to %d", MaxRevertSteps)
	}
	j.Steps = int(steps)
	return ""
}

// lookup returns the schema's field of that name.
func lookup(name string) (field, bool) {
	i := slices.IndexFunc(schema, func(f field) bool { return f.name == name })
	if i < 0 {
		return field{}, false
	}
	return schema[i], true
}

// Decode parses and validates a message body. messageID is the queue's id for
// the message, the job id when the body has none. On failure the error is an
// *InvalidError.
func Decode(body []byte, messageID string) (Job, error) {
	raw, err := parseObject(body)
	if err != nil {
		return Job{}, err
	}
	var job Job
	// Read every field first, so that any later error can be answered to
	// whatever ids the message has; errors are reported below, in order.
	reasons := map[string]string{}
	for _, f := range schema {
		if v, ok := raw[f.name]; ok {
			reasons[f.name] = f.read(v, &job)
		}
	}
	if job.JobID == "" {
		job.JobID = messageID
	}
	invalid := func(field, reason string) (Job, error) {
		return Job{}, &InvalidError{Field: field, Reason: reason, Job: job}
	}
	for name := range raw {
		if _, ok := lookup(name); !ok {
			return invalid(name, "unknown field")
		}
	}
	if name, reason := checkEnvelope(raw, reasons, job, messageID); reason != "" {
		return invalid(name, reason)
	}
	for _, f := range schema {
		if _, ok := raw[f.name]; !ok {
			continue
		}
		if f.types != nil && !slices.Contains(f.types, job.Type) {
			return invalid(f.name, fmt.Sprintf("is not allowed in %s %s job", article(job.Type), job.Type))
		}
		if reasons[f.name] != "" {
			return invalid(f.name, reasons[f.name])
		}
	}
	var name, reason string
	switch job.Type {
	case TypeInit:
		name, reason = checkInit(job)
	case TypeExecute:
		name, reason = checkExecute(&job)
	case TypeCancel:
		name, reason = checkCancel(job)
	case TypeRevert:
		name, reason = checkRevert(raw, job)
	}
	if reason != "" {
		return invalid(name, reason)
	}
	return job, nil
}

// parseObject reads the body as one JSON object of UTF-8 text.
func parseObject(body []byte) (rawJob, error) {
	if len(body) > MaxMessageBytes {
		return nil, &InvalidError{Reason: fmt.Sprintf("message is %d bytes, more than %d", len(body), MaxMessageBytes)}
	}
	if !utf8.Valid(body) {
		return nil, &InvalidError{Reason: "message is not UTF-8"}
	}
	var raw rawJob
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&raw); err != nil || raw == nil {
		return nil, &InvalidError{Reason: "message is not a JSON object"}
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &InvalidError{Reason: "message has data after the JSON object"}
	}
	return raw, nil
}

// checkEnvelope checks what every job has: its type, its job id and the ids
// of its client, user and thread. It returns the field at fault and why.
func checkEnvelope(raw rawJob, reasons map[string]string, job Job, messageID string) (string, string) {
	switch {
	case reasons["type"] != "":
		return "type", reasons["type"]
	case job.Type == "":
		return "type", `is required ("init", "execute", "cancel", "revert" or "preview")`
	case !job.Type.Known():
		return "type", fmt.Sprintf(`%q is not "init", "execute", "cancel", "revert" or "preview"`, truncate(string(job.Type), 40))
	}
	if _, ok := raw["jobId"]; ok {
		if reasons["jobId"] != "" {
			return "jobId", reasons["jobId"]
		}
		if !ident.ValidJobID(job.JobID) {
			return "jobId", "must be " + ident.JobIDRule
		}
	} else if !ident.ValidJobID(messageID) {
		return "jobId", "missing, and the message id cannot stand in for it"
	}
	for _, id := range []struct{ name, value string }{{"clientId", job.ClientID}, {"userId", job.UserID}, {"threadId", job.ThreadID}} {
		switch {
		case reasons[id.name] != "":
			return id.name, reasons[id.name]
		case id.value == "" && id.name == "threadId" && (job.Type == TypeCancel || job.Type == TypePreview):
			// a cancel names its target by job id, a preview serves the
			// user's current thread: a thread is optional
		case id.value == "":
			return id.name, "is required"
		case !ident.ValidID(id.value):
			return id.name, "must be " + ident.IDRule
		}
	}
	return "", ""
}

func checkInit(job Job) (string, string) {
	switch {
	case job.FromThreadID != "" && !ident.ValidID(job.FromThreadID):
		return "fromThreadId", "must be a thread id: " + ident.IDRule
	case job.FromThreadID != "" && job.FromThreadID == job.ThreadID:
		return "fromThreadId", "must name another thread than threadId"
	case job.FromThreadID != "" && job.BaseBranch != "":
		return "fromThreadId", "a fork starts at its parent thread: give fromThreadId or baseBranch, not both"
	}
	if job.RepoURL != "" {
		var urlErr *ident.RepoURLError
		if errors.As(ident.CheckRepoURL(job.RepoURL), &urlErr) {
			return "repoUrl", urlErr.Reason
		}
	}
	if job.BaseBranch != "" && !ident.ValidBranch(job.BaseBranch) {
		return "baseBranch", "is not a valid branch name"
	}
	return "", ""
}

func checkExecute(job *Job) (string, string) {
	switch {
	case strings.TrimSpace(job.Instruction) == "":
		return "instruction", "is required and must not be empty"
	case len(job.Instruction) > MaxInstructionBytes:
		return "instruction", fmt.Sprintf("is %d bytes, more than %d", len(job.Instruction), MaxInstructionBytes)
	case strings.ContainsRune(job.Instruction, 0):
		return "instruction", "contains a NUL character"
	}
	switch job.Mode {
	case "":
		job.Mode = ModeExecute
	case ModeExecute, ModePlan:
	default:
		return "mode", fmt.Sprintf(`%q is not "execute" or "plan"`, truncate(string(job.Mode), 40))
	}
	return "", ""
}

func checkCancel(job Job) (string, string) {
	switch {
	case job.TargetJobID == "":
		return "targetJobId", "is required: the jobId of the job to stop"
	case !ident.ValidJobID(job.TargetJobID):
		return "targetJobId", "must be " + ident.JobIDRule
	case job.TargetJobID == job.JobID:
		return "targetJobId", "a cancel cannot stop itself"
	}
	return "", ""
}

func checkRevert(raw rawJob, job Job) (string, string) {
	_, hasCommit := raw["toCommit"]
	_, hasSteps := raw["steps"]
	switch {
	case hasCommit == hasSteps:
		return "toCommit", "give exactly one of toCommit (a commit of the thread's branch) and steps (how many job commits to undo)"
	case hasCommit && !commitPattern.MatchString(job.ToCommit):
		return "toCommit", "must be a commit id: 4 to 64 hexadecimal digits"
	}
	return "", ""
}

// article is "a" or "an" for a job type.
func article(t Type) string {
	if t == TypeInit || t == TypeExecute {
		return "an"
	}
	return "a"
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
