package bench

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/metrics"
	"github.com/webordinary/claude-code-astro/jobs"
)

// metricsBatch and metricsBatches: 20a's per-answer cost is the median of
// batches, as 14d's.
const (
	metricsBatch   = 100
	metricsBatches = 300
)

// benchMetrics measures what the metrics add per job: the EMF line of an
// execute job's answer (the richest), built and written to a file as the
// worker writes it to its standard output.
func benchMetrics(b *testing.B, e *env) {
	out, err := os.Create(e.dir + "/metrics.log")
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	rec := metrics.New(out, metrics.Options{Service: "worker"})
	now := time.Now()
	resp := jobs.Response{JobID: "j", Type: jobs.TypeExecute, ClientID: "acme", UserID: "alice", ThreadID: "t1",
		Status: jobs.StatusSucceeded, StartedAt: now.Format(time.RFC3339Nano), DurationMs: 4200,
		Claude: &jobs.ClaudeResult{DurationMs: 3900, CostUSD: 0.012345, Usage: &jobs.Usage{InputTokens: 1200, OutputTokens: 340}}}
	var per []time.Duration
	for range metricsBatches {
		start := time.Now()
		for range metricsBatch {
			rec.Answered(resp, now.Add(-time.Second))
		}
		per = append(per, time.Since(start)/metricsBatch)
	}
	med := Median(per)
	e.table.Check("20a", fmt.Sprintf("%s (p95 %s)", us(med), us(Quantile(per, 0.95))), med < 100*time.Microsecond)
	b.ReportMetric(float64(med)/float64(time.Microsecond), "metrics-per-job-us")
}
