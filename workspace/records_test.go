package workspace_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/workspace"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

func TestThreadRecords(t *testing.T) {
	u := mustUser(t, newWorkspaces(t), "c", "u")

	empty, err := u.LoadThread("t1")
	if err != nil {
		t.Fatal(err)
	}
	if empty.ThreadID != "t1" || empty.Branch != "thread-t1" || len(empty.Jobs) != 0 || empty.SessionID != "" {
		t.Errorf("missing record = %+v", empty)
	}

	start := time.Now().UTC().Truncate(time.Second)
	long := strings.Repeat("ü", workspace.MaxRecordedInstruction+10)
	steps := []struct {
		job       workspace.JobRecord
		jobs      int
		count     int
		cost      float64
		sessionID string
	}{
		{workspace.JobRecord{JobID: "job-1", Status: "running", StartedAt: start}, 1, 1, 0, ""},
		{workspace.JobRecord{JobID: "job-1", Status: "succeeded", CostUSD: 0.25, SessionID: "s-1", Commit: "abc", StartedAt: start, FinishedAt: start.Add(time.Second)}, 1, 1, 0.25, "s-1"},
		{workspace.JobRecord{JobID: "job-2", Status: "failed", CostUSD: 0.5, Instruction: long + " " + testToken}, 2, 2, 0.75, "s-1"},
		{workspace.JobRecord{JobID: "job-3", Status: "succeeded", CostUSD: 0.125, SessionID: "s-2"}, 3, 3, 0.875, "s-2"},
	}
	for i, st := range steps {
		th, err := u.RecordJob("t1", st.job)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if len(th.Jobs) != st.jobs || th.JobCount != st.count || th.TotalCostUSD != st.cost || th.SessionID != st.sessionID {
			t.Errorf("step %d: jobs %d count %d cost %v session %q; want %d %d %v %q",
				i, len(th.Jobs), th.JobCount, th.TotalCostUSD, th.SessionID, st.jobs, st.count, st.cost, st.sessionID)
		}
	}

	th, err := u.LoadThread("t1")
	if err != nil {
		t.Fatal(err)
	}
	j1, ok := th.Job("job-1")
	if !ok || j1.Status != "succeeded" || j1.Commit != "abc" || !j1.StartedAt.Equal(start) {
		t.Errorf("job-1 = %+v", j1)
	}
	j2, _ := th.Job("job-2")
	if n := len([]rune(j2.Instruction)); n != workspace.MaxRecordedInstruction {
		t.Errorf("instruction kept %d runes, want %d", n, workspace.MaxRecordedInstruction)
	}
	if th.CreatedAt.IsZero() || th.UpdatedAt.Before(th.CreatedAt) {
		t.Errorf("timestamps %v %v", th.CreatedAt, th.UpdatedAt)
	}

	// The file is plain JSON with the documented field names, and no
	// temporary files are left beside it.
	data := readFile(t, u.ThreadsDir+"/t1.json")
	var raw map[string]any
	if err := json.Unmarshal([]byte(data), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"threadId", "branch", "sessionId", "jobs", "totalCostUsd", "jobCount"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("record lacks %q", k)
		}
	}
	job := raw["jobs"].([]any)[0].(map[string]any)
	for _, k := range []string{"jobId", "instruction", "commit", "status", "costUsd", "startedAt", "finishedAt"} {
		if _, ok := job[k]; !ok && k != "instruction" {
			t.Errorf("job record lacks %q", k)
		}
	}
	entries, err := os.ReadDir(u.ThreadsDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("threads dir holds %v", entries)
	}
	if hits := filesContaining(t, testToken, u.Dir); len(hits) > 0 {
		t.Errorf("token recorded in %v", hits)
	}

	// A job id that could not be a job id is refused.
	if _, err := u.RecordJob("t1", workspace.JobRecord{JobID: "a/b"}); err == nil {
		t.Error("RecordJob accepted job id a/b")
	}
}

func TestRecordKeepsNewestJobs(t *testing.T) {
	u := mustUser(t, newWorkspaces(t), "c", "u")
	th := workspace.Thread{ThreadID: "t"}
	for i := range workspace.MaxRecordedJobs {
		th.Jobs = append(th.Jobs, workspace.JobRecord{JobID: "old-" + string(rune('a'+i%26)), Status: "succeeded"})
	}
	th.JobCount = workspace.MaxRecordedJobs
	if err := u.SaveThread(th); err != nil {
		t.Fatal(err)
	}
	got, err := u.RecordJob("t", workspace.JobRecord{JobID: "newest", Status: "succeeded", CostUSD: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Jobs) != workspace.MaxRecordedJobs || got.Jobs[len(got.Jobs)-1].JobID != "newest" || got.JobCount != workspace.MaxRecordedJobs+1 {
		t.Errorf("jobs %d, last %q, count %d", len(got.Jobs), got.Jobs[len(got.Jobs)-1].JobID, got.JobCount)
	}
}

func TestTouch(t *testing.T) {
	g := workspacetest.NewGit(t)
	remote := workspacetest.NewRemote(t, g, plainSite())
	u := mustUser(t, newWorkspaces(t), "c", "u")
	mustInit(t, u, workspace.InitOptions{RepoURL: remote.URL, ThreadID: "t"})
	before, err := u.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Touch(); err != nil {
		t.Fatal(err)
	}
	after, err := u.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	if !after.LastAccessed.After(before.LastAccessed) || !after.Created.Equal(before.Created) || after.RepoURL != before.RepoURL {
		t.Errorf("touch: before %+v after %+v", before, after)
	}
}

// TestRecordedCostsAreRounded: a thread's total of float costs is kept to
// six decimals, as each job's cost is.
func TestRecordedCostsAreRounded(t *testing.T) {
	u := mustUser(t, newWorkspaces(t), "c", "u")
	var got workspace.Thread
	var err error
	for _, id := range []string{"a", "b", "c"} {
		if got, err = u.RecordJob("t", workspace.JobRecord{JobID: id, Status: "succeeded", CostUSD: 0.1 + 0.0000000001}); err != nil {
			t.Fatal(err)
		}
	}
	if got.TotalCostUSD != 0.3 || got.Jobs[0].CostUSD != 0.1 {
		t.Errorf("total %v, first job %v; want 0.3 and 0.1", got.TotalCostUSD, got.Jobs[0].CostUSD)
	}
}
