package ledger

import (
	"os"
	"path/filepath"
	"strconv"
	"sync"
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

// TestMarkQueuedNeverOverwritesTheStart: a job marked queued as it waits
// behind its user's running job can be started by its lane at that very
// moment. Whichever of the two writes comes first, the record ends up
// running: a cancel that reads it on another worker must not answer
// "queued" for a job that runs.
func TestMarkQueuedNeverOverwritesTheStart(t *testing.T) {
	l := New(t.TempDir())
	for i := range 300 {
		job := jobs.Job{JobID: "j" + strconv.Itoa(i), ClientID: "acme", UserID: "u1"}
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := l.MarkQueued(job); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			if err := l.Put(job, Record{JobID: job.JobID, State: StateRunning, Attempts: 1}); err != nil {
				t.Error(err)
			}
		})
		wg.Wait()
		if rec, _, err := l.Get(job); err != nil || rec.State != StateRunning {
			t.Fatalf("round %d: the record is %+v (%v) after the job started, want running", i, rec, err)
		}
	}
}

func TestLedgerQueuedAndCancelMarks(t *testing.T) {
	root := t.TempDir()
	l := New(root)
	job := jobs.Job{JobID: "j1", ClientID: "acme", UserID: "u1"}
	if err := l.MarkQueued(job); err != nil {
		t.Fatal(err)
	}
	if rec, found, err := l.Get(job); err != nil || !found || rec.State != StateQueued {
		t.Fatalf("after MarkQueued: %+v %v %v", rec, found, err)
	}
	// A record that says more is never turned back into queued.
	if err := l.Put(job, Record{JobID: "j1", State: StateRunning, Attempts: 1}); err != nil {
		t.Fatal(err)
	}
	if err := l.MarkQueued(job); err != nil {
		t.Fatal(err)
	}
	if rec, _, _ := l.Get(job); rec.State != StateRunning {
		t.Errorf("MarkQueued overwrote a running record: %+v", rec)
	}

	if _, ok, err := l.CancelRequested(job); ok || err != nil {
		t.Fatalf("cancel mark before any cancel: %v %v", ok, err)
	}
	if err := New(root).RequestCancel(jobs.Job{ClientID: "acme", UserID: "u1"}, "j1", "c1"); err != nil {
		t.Fatal(err)
	}
	mark, ok, err := l.CancelRequested(job)
	if err != nil || !ok || mark.By != "c1" {
		t.Fatalf("cancel mark: %+v %v %v", mark, ok, err)
	}
	// Another user's job of the same id is not cancelled.
	if _, ok, _ := l.CancelRequested(jobs.Job{JobID: "j1", ClientID: "acme", UserID: "u2"}); ok {
		t.Error("a cancel of acme/u1's job reached acme/u2's job of the same id")
	}
	if err := l.ClearCancel(job); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := l.CancelRequested(job); ok {
		t.Error("mark still there after ClearCancel")
	}
	// A mark older than the queue's retention is stale and goes.
	p := filepath.Join(root, "acme", "u1", ".jobs", "cancel-j1.json")
	old := `{"by":"c0","at":"` + time.Now().Add(-CancelMarkTTL-time.Hour).UTC().Format(time.RFC3339) + `"}`
	if err := os.WriteFile(p, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := l.CancelRequested(job); ok {
		t.Error("a stale mark still cancels")
	}
	if _, err := os.Stat(p); err == nil {
		t.Error("the stale mark was not removed")
	}
	if err := l.RequestCancel(jobs.Job{ClientID: "acme", UserID: "u1"}, "../x", "c1"); err == nil {
		t.Error("RequestCancel accepted a target id that is a path")
	}
}
