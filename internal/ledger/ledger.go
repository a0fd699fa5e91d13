// Package ledger keeps one record per job on disk, so that a job delivered
// again after it finished is answered from its record instead of run twice.
// Records live beside the user's workspace (WORKSPACE_PATH/{client}/{user}/
// .jobs/), so they survive a restart and a new container on EFS.
package ledger

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/webordinary/claude-code-astro/internal/atomicfile"
	"github.com/webordinary/claude-code-astro/internal/ident"
	"github.com/webordinary/claude-code-astro/jobs"
)

// State is where a job stands.
type State string

// The job states.
const (
	StateQueued   State = "queued"   // received by a worker and waiting to start
	StateRunning  State = "running"  // started; a crash leaves it so, and the job runs again
	StateFinished State = "finished" // its final response is in the record
)

// CancelMarkTTL is how long a cancel mark waits for a target that no worker
// has seen: SQS keeps a message at most 14 days.
const CancelMarkTTL = 14 * 24 * time.Hour

// Record is what the ledger keeps of one job.
type Record struct {
	JobID     string         `json:"jobId"`
	State     State          `json:"state"`
	Attempts  int            `json:"attempts"`
	StartedAt time.Time      `json:"startedAt"`
	Response  *jobs.Response `json:"response,omitempty"`
	// AnsweredMessages are the ids of the queue messages whose final response
	// was sent: a redelivery of one of them only needs deleting, while the
	// same job id in a new message is answered again.
	AnsweredMessages []string `json:"answeredMessages,omitempty"`
}

// Answered reports whether the final response to message messageID was sent.
func (r Record) Answered(messageID string) bool {
	for _, id := range r.AnsweredMessages {
		if id == messageID {
			return true
		}
	}
	return false
}

// Ledger stores records under a root directory. It is safe for concurrent
// use by different users; one user's jobs are serialised by the worker.
type Ledger struct {
	root string
}

// New returns a ledger rooted at root (WORKSPACE_PATH).
func New(root string) *Ledger { return &Ledger{root: root} }

// path returns the record's file. The ids were validated by jobs.Decode; they
// are checked again here because they become path segments.
func (l *Ledger) path(job jobs.Job) (string, error) {
	if !ident.ValidID(job.ClientID) || !ident.ValidID(job.UserID) || !ident.ValidJobID(job.JobID) {
		return "", fmt.Errorf("ledger: job %q: invalid ids", job.JobID)
	}
	return filepath.Join(l.root, job.ClientID, job.UserID, ".jobs", "job-"+job.JobID+".json"), nil
}

// Get returns the job's record; found is false when there is none.
func (l *Ledger) Get(job jobs.Job) (rec Record, found bool, err error) {
	p, err := l.path(job)
	if err != nil {
		return Record{}, false, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("read job record: %w", err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		// A torn or corrupt record says nothing reliable: run the job again.
		return Record{}, false, nil
	}
	return rec, true, nil
}

// Put writes the job's record atomically.
func (l *Ledger) Put(job jobs.Job, rec Record) error {
	p, err := l.path(job)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode job record: %w", err)
	}
	return writeFile(p, b, 0o600)
}

// MarkQueued records that a worker holds the job and has not started it,
// unless the job has a record already (it ran, or runs, elsewhere). The
// record is created only where none exists, in one step: a record the job's
// start writes meanwhile is never overwritten with "queued".
func (l *Ledger) MarkQueued(job jobs.Job) error {
	p, err := l.path(job)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(Record{JobID: job.JobID, State: StateQueued}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode job record: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(p), err)
	}
	if _, err := atomicfile.Create(p, b, 0o600); err != nil {
		return fmt.Errorf("record a waiting job: %w", err)
	}
	return nil
}

// CancelMark is what a cancel leaves for the job it stops.
type CancelMark struct {
	// By is the cancel's job id.
	By string    `json:"by"`
	At time.Time `json:"at"`
}

// cancelPath returns the file of the cancel mark of job targetJobID of
// user's client and user.
func (l *Ledger) cancelPath(user jobs.Job, targetJobID string) (string, error) {
	if !ident.ValidID(user.ClientID) || !ident.ValidID(user.UserID) || !ident.ValidJobID(targetJobID) {
		return "", fmt.Errorf("ledger: cancel of %q: invalid ids", targetJobID)
	}
	return filepath.Join(l.root, user.ClientID, user.UserID, ".jobs", "cancel-"+targetJobID+".json"), nil
}

// RequestCancel leaves the mark that stops job targetJobID of user's
// client and user: the worker that runs it, or later receives it, finds it
// on the shared root. by is the cancel's job id.
func (l *Ledger) RequestCancel(user jobs.Job, targetJobID, by string) error {
	p, err := l.cancelPath(user, targetJobID)
	if err != nil {
		return err
	}
	b, err := json.Marshal(CancelMark{By: by, At: time.Now().UTC()})
	if err != nil {
		return fmt.Errorf("encode cancel mark: %w", err)
	}
	return writeFile(p, b, 0o600)
}

// CancelRequested returns the cancel mark of job, if there is one. A mark
// older than CancelMarkTTL is removed and not returned. It costs one stat
// when there is none: a running job asks every few hundred milliseconds.
func (l *Ledger) CancelRequested(job jobs.Job) (CancelMark, bool, error) {
	p, err := l.cancelPath(job, job.JobID)
	if err != nil {
		return CancelMark{}, false, err
	}
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		return CancelMark{}, false, nil
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return CancelMark{}, false, nil
	}
	if err != nil {
		return CancelMark{}, false, fmt.Errorf("read cancel mark: %w", err)
	}
	var m CancelMark
	if err := json.Unmarshal(b, &m); err != nil {
		m = CancelMark{} // torn: still a cancel
	}
	if !m.At.IsZero() && time.Since(m.At) > CancelMarkTTL {
		_ = os.Remove(p) // stale; a failed remove only repeats this
		return CancelMark{}, false, nil
	}
	return m, true, nil
}

// ClearCancel removes job's cancel mark, if any.
func (l *Ledger) ClearCancel(job jobs.Job) error {
	p, err := l.cancelPath(job, job.JobID)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove cancel mark: %w", err)
	}
	return nil
}

// writeFile writes a record atomically (atomicfile.Write), creating its
// directory, private to the worker, on first use.
func writeFile(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	return atomicfile.Write(path, data, perm)
}
