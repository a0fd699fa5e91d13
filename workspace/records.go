package workspace

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/webordinary/claude-code-astro/internal/atomicfile"
	"github.com/webordinary/claude-code-astro/internal/money"
)

// Limits of a thread record.
const (
	// MaxRecordedInstruction is how many runes of an instruction a job
	// record keeps.
	MaxRecordedInstruction = 2000
	// MaxRecordedJobs is how many jobs a thread record keeps, newest last.
	// Totals count every job.
	MaxRecordedJobs = 500
)

// Metadata is the content of a user's metadata.json.
type Metadata struct {
	ClientID     string    `json:"clientId"`
	UserID       string    `json:"userId"`
	Created      time.Time `json:"created"`
	RepoURL      string    `json:"repoUrl"`
	LastAccessed time.Time `json:"lastAccessed"`
	// Lockfile names the file LockfileHash was computed from.
	Lockfile string `json:"lockfile,omitempty"`
	// LockfileHash is "sha256:HEX" of the lockfile that node_modules was
	// last installed from; empty when nothing is installed.
	LockfileHash string `json:"lockfileHash,omitempty"`
}

// Thread is the record of one thread: .claude/threads/{threadId}.json.
type Thread struct {
	ThreadID string `json:"threadId"`
	Branch   string `json:"branch"`
	// SessionID is the thread's agent session, resumed by its next job.
	SessionID string      `json:"sessionId,omitempty"`
	CreatedAt time.Time   `json:"createdAt"`
	UpdatedAt time.Time   `json:"updatedAt"`
	Jobs      []JobRecord `json:"jobs"`
	// JobCount and TotalCostUSD count every job ever recorded, including
	// those dropped from Jobs.
	JobCount     int     `json:"jobCount"`
	TotalCostUSD float64 `json:"totalCostUsd"`
	// ForkedFrom is set on a thread forked from another: its first job
	// resumes the parent's session as a fork of it.
	ForkedFrom *Fork `json:"forkedFrom,omitempty"`
}

// Fork is where a forked thread started.
type Fork struct {
	// ThreadID is the parent thread.
	ThreadID string `json:"threadId"`
	// SessionID is the parent's agent session at the fork, "" when it had
	// none yet.
	SessionID string `json:"sessionId,omitempty"`
	// Commit is the parent branch's head at the fork.
	Commit string `json:"commit,omitempty"`
}

// JobRecord is one job of a thread.
type JobRecord struct {
	JobID string `json:"jobId"`
	Type  string `json:"type,omitempty"`
	// Instruction is the first MaxRecordedInstruction runes, secrets masked.
	Instruction string `json:"instruction,omitempty"`
	Commit      string `json:"commit,omitempty"`
	Pushed      bool   `json:"pushed,omitempty"`
	Status      string `json:"status"`
	ErrorCode   string `json:"errorCode,omitempty"`
	SessionID   string `json:"sessionId,omitempty"`
	// Reverted are the job commits a revert job undid.
	Reverted   []string  `json:"reverted,omitempty"`
	CostUSD    float64   `json:"costUsd"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
}

// Job returns the record of jobID, if the thread holds one.
func (t *Thread) Job(jobID string) (JobRecord, bool) {
	for i := len(t.Jobs) - 1; i >= 0; i-- {
		if t.Jobs[i].JobID == jobID {
			return t.Jobs[i], true
		}
	}
	return JobRecord{}, false
}

// Metadata reads metadata.json. A workspace without one fails with
// ErrNotInitialized.
func (u *User) Metadata() (Metadata, error) {
	var m Metadata
	if err := u.checkPaths(); err != nil {
		return m, fmt.Errorf("read metadata: %w", err)
	}
	data, err := os.ReadFile(u.MetadataPath)
	if errors.Is(err, fs.ErrNotExist) {
		return m, fmt.Errorf("read metadata: %w", ErrNotInitialized)
	}
	if err != nil {
		return m, fmt.Errorf("read metadata: %w", err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("read metadata: %w", err)
	}
	return m, nil
}

func (u *User) writeMetadata(m Metadata) error {
	if err := u.checkPaths(); err != nil {
		return fmt.Errorf("write metadata: %w", err)
	}
	if err := writeJSON(u.MetadataPath, m); err != nil {
		return fmt.Errorf("write metadata: %w", err)
	}
	return nil
}

// Touch sets lastAccessed in metadata.json to now.
func (u *User) Touch() error {
	m, err := u.Metadata()
	if err != nil {
		return fmt.Errorf("touch workspace: %w", err)
	}
	m.LastAccessed = time.Now().UTC()
	if err := u.writeMetadata(m); err != nil {
		return fmt.Errorf("touch workspace: %w", err)
	}
	return nil
}

func (u *User) threadPath(threadID string) (string, error) {
	if err := ValidateID(threadID); err != nil {
		return "", fmt.Errorf("thread id: %w", err)
	}
	if err := u.checkPaths(); err != nil {
		return "", err
	}
	return filepath.Join(u.ThreadsDir, threadID+".json"), nil
}

// LoadThread reads a thread's record. A thread without one gets an empty
// record (no jobs, no session).
func (u *User) LoadThread(threadID string) (Thread, error) {
	p, err := u.threadPath(threadID)
	if err != nil {
		return Thread{}, err
	}
	t := Thread{ThreadID: threadID, Branch: Branch(threadID)}
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return t, nil
	}
	if err != nil {
		return t, fmt.Errorf("read thread record: %w", err)
	}
	if err := json.Unmarshal(data, &t); err != nil {
		return t, fmt.Errorf("read thread record: %w", err)
	}
	t.ThreadID, t.Branch = threadID, Branch(threadID)
	return t, nil
}

// SaveThread writes a thread's record atomically.
func (u *User) SaveThread(t Thread) error {
	p, err := u.threadPath(t.ThreadID)
	if err != nil {
		return err
	}
	if err := u.Prepare(); err != nil {
		return fmt.Errorf("write thread record: %w", err)
	}
	t.Branch = Branch(t.ThreadID)
	now := time.Now().UTC()
	if t.CreatedAt.IsZero() {
		t.CreatedAt = now
	}
	t.UpdatedAt = now
	if t.Jobs == nil {
		t.Jobs = []JobRecord{}
	}
	if err := writeJSON(p, t); err != nil {
		return fmt.Errorf("write thread record: %w", err)
	}
	return nil
}

// RecordJob adds job to the thread's record, or replaces the record of the
// same job id (so a redelivered job is recorded once), keeps totals, and
// sets the thread's session to job.SessionID when that is not empty.
func (u *User) RecordJob(threadID string, job JobRecord) (Thread, error) {
	if err := ValidateJobID(job.JobID); err != nil {
		return Thread{}, fmt.Errorf("record job: %w", err)
	}
	t, err := u.LoadThread(threadID)
	if err != nil {
		return t, fmt.Errorf("record job: %w", err)
	}
	job.Instruction = truncateRunes(u.ws.redactor.String(job.Instruction), MaxRecordedInstruction)
	job.CostUSD = money.Round(job.CostUSD)
	replaced := false
	for i := range t.Jobs {
		if t.Jobs[i].JobID == job.JobID {
			t.TotalCostUSD -= t.Jobs[i].CostUSD
			t.Jobs[i] = job
			replaced = true
			break
		}
	}
	if !replaced {
		t.Jobs = append(t.Jobs, job)
		t.JobCount++
		if over := len(t.Jobs) - MaxRecordedJobs; over > 0 {
			t.Jobs = append([]JobRecord(nil), t.Jobs[over:]...)
		}
	}
	t.TotalCostUSD = money.Round(t.TotalCostUSD + job.CostUSD)
	if job.SessionID != "" {
		t.SessionID = job.SessionID
	}
	if err := u.SaveThread(t); err != nil {
		return t, fmt.Errorf("record job: %w", err)
	}
	return t, nil
}

// truncateRunes returns the first n runes of s.
func truncateRunes(s string, n int) string {
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos]
		}
		i++
	}
	return s
}

// writeJSON writes v as indented JSON to path atomically.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(data, '\n'), 0o600)
}

func ignoreNotExist(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
