package metrics

import (
	"time"

	"github.com/webordinary/claude-code-astro/jobs"
)

// Answered writes the figures of one final answer: its duration and queue
// wait, and for an execute job the agent's time, cost and tokens, under the
// job's type, status and error code; a budget_exceeded or quota_exceeded
// answer also counts as that event. sentAt is when upstream sent the
// message (SQS's SentTimestamp); zero leaves QueueWait out.
func (r *Recorder) Answered(resp jobs.Response, sentAt time.Time) {
	if r == nil {
		return
	}
	typ := string(resp.Type)
	if typ == "" {
		typ = "invalid" // a message too broken to have a type
	}
	code := "none"
	if resp.Error != nil {
		code = string(resp.Error.Code)
	}
	dims := map[string]string{DimJobType: typ, DimStatus: string(resp.Status), DimErrorCode: code}
	values := []Value{{Jobs, 1}, {JobDuration, float64(resp.DurationMs)}}
	if started, err := time.Parse(time.RFC3339Nano, resp.StartedAt); err == nil && !sentAt.IsZero() {
		values = append(values, Value{QueueWait, float64(max(started.Sub(sentAt), 0).Milliseconds())})
	}
	if c := resp.Claude; c != nil {
		values = append(values, Value{AgentDuration, float64(c.DurationMs)}, Value{CostUSD, c.CostUSD})
		if c.Usage != nil {
			values = append(values, Value{InputTokens, float64(c.Usage.InputTokens)}, Value{OutputTokens, float64(c.Usage.OutputTokens)})
		}
	}
	r.Emit(dims, values...)
	switch code {
	case string(jobs.CodeBudgetExceeded):
		r.Emit(nil, Value{BudgetExceeded, 1})
	case string(jobs.CodeQuotaExceeded):
		r.Emit(nil, Value{QuotaExceeded, 1})
	}
}
