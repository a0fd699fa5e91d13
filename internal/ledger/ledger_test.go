package ledger

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/jobs"
)

func TestLedgerRoundTrip(t *testing.T) {
	root := t.TempDir()
	l := New(root)
	job := jobs.Job{Type: jobs.TypeInit, JobID: "j:1", ClientID: "acme", UserID: "u1", ThreadID: "t1"}
	if _, found, err := l.Get(job); err != nil || found {
		t.Fatalf("empty ledger: found=%v err=%v", found, err)
	}
	resp := jobs.NewResponse(job, jobs.StatusSucceeded)
	rec := Record{JobID: job.JobID, State: StateFinished, Attempts: 1, StartedAt: time.Now().UTC(), Response: &resp}
	if err := l.Put(job, rec); err != nil {
		t.Fatal(err)
	}
	// A second ledger on the same root (a restarted worker) sees it.
	got, found, err := New(root).Get(job)
	if err != nil || !found {
		t.Fatalf("Get after Put: found=%v err=%v", found, err)
	}
	if got.State != StateFinished || got.Response == nil || got.Response.JobID != "j:1" {
		t.Errorf("got %+v", got)
	}
	if _, err := os.Stat(filepath.Join(root, "acme", "u1", ".jobs", "job-j:1.json")); err != nil {
		t.Errorf("record not where documented: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(root, "acme", "u1", ".jobs"))
	if len(entries) != 1 {
		t.Errorf("temp files left behind: %v", entries)
	}
}

func TestLedgerRefusesBadIDs(t *testing.T) {
	l := New(t.TempDir())
	for _, job := range []jobs.Job{
		{JobID: "..", ClientID: "a", UserID: "b"},
		{JobID: "j", ClientID: "..", UserID: "b"},
		{JobID: "j", ClientID: "a", UserID: "b/c"},
	} {
		if err := l.Put(job, Record{}); err == nil {
			t.Errorf("Put(%+v) accepted", job)
		}
	}
}

func TestLedgerCorruptRecordMeansRunAgain(t *testing.T) {
	root := t.TempDir()
	job := jobs.Job{JobID: "j1", ClientID: "a", UserID: "b"}
	p := filepath.Join(root, "a", "b", ".jobs", "job-j1.json")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(`{"jobId":`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, found, err := New(root).Get(job); found || err != nil {
		t.Errorf("corrupt record: found=%v err=%v, want not found", found, err)
	}
}
