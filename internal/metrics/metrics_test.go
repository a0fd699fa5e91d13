package metrics_test

import (
	"bytes"
	"context"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/metrics"
	"github.com/webordinary/claude-code-astro/internal/testkit/emf"
	"github.com/webordinary/claude-code-astro/internal/testkit/logbuf"
	"github.com/webordinary/claude-code-astro/jobs"
)

func parseAll(t *testing.T, out string) []emf.Metric {
	t.Helper()
	var all []emf.Metric
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		ms, ok, err := emf.Parse(line)
		if !ok || err != nil {
			t.Fatalf("not a valid EMF line (ok %v): %v\n%s", ok, err, line)
		}
		all = append(all, ms...)
	}
	return all
}

func find(ms []emf.Metric, name string) (emf.Metric, bool) {
	for _, m := range ms {
		if m.Name == name {
			return m, true
		}
	}
	return emf.Metric{}, false
}

// TestAnsweredExecute: an execute job's answer becomes one line whose
// values are the answer's and whose dimensions are bounded (never an id).
func TestAnsweredExecute(t *testing.T) {
	var out bytes.Buffer
	rec := metrics.New(&out, metrics.Options{Service: "worker", Now: func() time.Time { return time.UnixMilli(1_700_000_000_000) }})
	sent := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	resp := jobs.Response{JobID: "job-secret-id", Type: jobs.TypeExecute, ClientID: "acme", UserID: "alice", ThreadID: "t1",
		Status: jobs.StatusSucceeded, StartedAt: sent.Add(1500 * time.Millisecond).Format(time.RFC3339Nano), DurationMs: 4200,
		Claude: &jobs.ClaudeResult{DurationMs: 3900, CostUSD: 0.012345, Usage: &jobs.Usage{InputTokens: 1200, OutputTokens: 340}}}
	rec.Answered(resp, sent)
	ms := parseAll(t, out.String())
	want := map[string]struct {
		value float64
		unit  string
	}{
		metrics.Jobs: {1, "Count"}, metrics.JobDuration: {4200, "Milliseconds"}, metrics.QueueWait: {1500, "Milliseconds"},
		metrics.AgentDuration: {3900, "Milliseconds"}, metrics.CostUSD: {0.012345, "None"},
		metrics.InputTokens: {1200, "Count"}, metrics.OutputTokens: {340, "Count"},
	}
	for name, w := range want {
		m, ok := find(ms, name)
		if !ok {
			t.Errorf("no %s in %s", name, out.String())
			continue
		}
		if m.Value != w.value || m.Unit != w.unit || m.Namespace != metrics.Namespace {
			t.Errorf("%s = %v %s in %s, want %v %s", name, m.Value, m.Unit, m.Namespace, w.value, w.unit)
		}
		wantDims := []map[string]string{
			{"Service": "worker", "JobType": "execute", "Status": "succeeded", "ErrorCode": "none"},
			{"Service": "worker", "Status": "succeeded"},
		}
		if len(m.Dimensions) != 2 || !maps.Equal(m.Dimensions[0], wantDims[0]) || !maps.Equal(m.Dimensions[1], wantDims[1]) {
			t.Errorf("%s dimensions %v, want %v", name, m.Dimensions, wantDims)
		}
	}
	for _, id := range []string{"job-secret-id", "acme", "alice", `"t1"`} {
		if strings.Contains(out.String(), id) {
			t.Errorf("the metric line holds the id %s: %s", id, out.String())
		}
	}
}

// TestAnsweredFailures: failures carry their code; budget and quota
// failures also count as their events; an invalid message without a type
// is "invalid".
func TestAnsweredFailures(t *testing.T) {
	tests := []struct {
		resp  jobs.Response
		code  string
		typ   string
		event string
	}{
		{jobs.Response{Type: jobs.TypeExecute, Status: jobs.StatusFailed, Error: &jobs.ErrorBody{Code: jobs.CodeBudgetExceeded}}, "budget_exceeded", "execute", metrics.BudgetExceeded},
		{jobs.Response{Type: jobs.TypeExecute, Status: jobs.StatusFailed, Error: &jobs.ErrorBody{Code: jobs.CodeQuotaExceeded}}, "quota_exceeded", "execute", metrics.QuotaExceeded},
		{jobs.Response{Status: jobs.StatusFailed, Error: &jobs.ErrorBody{Code: jobs.CodeInvalidJob}}, "invalid_job", "invalid", ""},
		{jobs.Response{Type: jobs.TypeInit, Status: jobs.StatusFailed, Error: &jobs.ErrorBody{Code: jobs.CodeGitFailed}}, "git_failed", "init", ""},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		metrics.New(&out, metrics.Options{Service: "worker"}).Answered(tt.resp, time.Time{})
		ms := parseAll(t, out.String())
		jobsMetric, ok := find(ms, metrics.Jobs)
		if !ok || jobsMetric.Dimensions[0]["ErrorCode"] != tt.code || jobsMetric.Dimensions[0]["JobType"] != tt.typ {
			t.Errorf("%s: Jobs %+v", tt.code, jobsMetric)
		}
		if _, ok := find(ms, metrics.QueueWait); ok {
			t.Errorf("%s: a QueueWait without a sent time", tt.code)
		}
		for _, event := range []string{metrics.BudgetExceeded, metrics.QuotaExceeded} {
			m, ok := find(ms, event)
			if ok != (event == tt.event) {
				t.Errorf("%s: event %s written: %v", tt.code, event, ok)
			}
			if ok && (m.Value != 1 || len(m.Dimensions) != 1 || !maps.Equal(m.Dimensions[0], map[string]string{"Service": "worker"})) {
				t.Errorf("%s: %+v", event, m)
			}
		}
	}
}

func TestReadableLines(t *testing.T) {
	var logs bytes.Buffer
	rec := metrics.New(nil, metrics.Options{Service: "worker", Readable: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	rec.Answered(jobs.Response{Type: jobs.TypeExecute, Status: jobs.StatusSucceeded, DurationMs: 1500,
		Claude: &jobs.ClaudeResult{CostUSD: 0.00009, DurationMs: 1200}}, time.Time{})
	line := logs.String()
	for _, want := range []string{"msg=metrics", "JobDuration=1.5s", "CostUSD=9e-05", "AgentDuration=1.2s", "jobType=execute", "status=succeeded", "errorCode=none"} {
		if !strings.Contains(line, want) {
			t.Errorf("readable line %q lacks %q", line, want)
		}
	}
	if strings.Contains(line, "_aws") {
		t.Errorf("readable line is EMF: %s", line)
	}
}

func TestEveryWritesUntilCancelled(t *testing.T) {
	var out logbuf.Buffer
	rec := metrics.New(&out, metrics.Options{Service: "worker"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	n := 0
	go func() {
		defer close(done)
		rec.Every(ctx, time.Millisecond, func() []metrics.Value {
			n++
			if n == 3 {
				cancel()
			}
			return []metrics.Value{{Name: metrics.JobsInFlight, Value: 2}, {Name: metrics.FreeLanes, Value: 0}}
		})
	}()
	<-done
	ms := parseAll(t, out.String())
	if m, ok := find(ms, metrics.FreeLanes); !ok || m.Value != 0 || m.Unit != "None" {
		t.Errorf("FreeLanes %+v", m)
	}
}

// TestUnknownMetricPanics: a name missing from the catalog is a bug that a
// test must find, not a line CloudWatch quietly drops.
func TestUnknownMetricPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("an unknown metric did not panic")
		}
	}()
	metrics.New(&bytes.Buffer{}, metrics.Options{Service: "worker"}).Emit(nil, metrics.Value{Name: "Typo", Value: 1})
}

// TestREADMETableIsTheCatalog: the README's metrics table lists exactly
// the catalog's metrics, with their units and dimensions.
func TestREADMETableIsTheCatalog(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	readme, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `([A-Za-z0-9]+)` \\| ([A-Za-z]+) \\| ([^|]+) \\| ([a-z]+) \\|")
	rows := map[string][]string{}
	for _, m := range row.FindAllStringSubmatch(string(readme), -1) {
		rows[m[1]] = m[2:]
	}
	for _, spec := range metrics.Catalog {
		r, ok := rows[spec.Name]
		if !ok {
			t.Errorf("README's metrics table has no row for %s", spec.Name)
			continue
		}
		var sets []string
		for _, set := range spec.Dimensions {
			sets = append(sets, strings.Join(set, ", "))
		}
		if r[0] != string(spec.Unit) || strings.TrimSpace(r[1]) != strings.Join(sets, "; ") || r[2] != spec.When {
			t.Errorf("README's row for %s says %q, the catalog %s | %s | %s", spec.Name, r, spec.Unit, strings.Join(sets, "; "), spec.When)
		}
		delete(rows, spec.Name)
	}
	for name := range rows {
		t.Errorf("README's metrics table has %s, which the catalog does not", name)
	}
}
