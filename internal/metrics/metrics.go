// Package metrics writes the worker's and the router's metrics as
// CloudWatch embedded metric format (EMF) lines: one JSON object per line,
// which CloudWatch Logs turns into metrics by itself. No agent, no API call,
// no extra permission: the task's log stream carries them.
//
// Every metric is declared once, in Catalog, with its unit and dimensions;
// the README's metrics table is checked against it. Dimension values come
// from bounded sets (job types, statuses, error codes, "worker" or
// "router"): never a user, client, job or thread id.
//
// Off AWS (worker local) a Recorder writes the same figures as readable log
// lines instead (Options.Readable).
package metrics

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"
)

// Namespace is the CloudWatch namespace of every metric.
const Namespace = "ClaudeCodeAstro"

// Unit is a CloudWatch unit.
type Unit string

// The units the catalog uses.
const (
	Milliseconds Unit = "Milliseconds"
	Count        Unit = "Count"
	None         Unit = "None"
)

// Dimension names.
const (
	DimService   = "Service"   // "worker" or "router"
	DimJobType   = "JobType"   // init, execute, cancel, revert, preview, or "invalid"
	DimStatus    = "Status"    // succeeded or failed
	DimErrorCode = "ErrorCode" // an error code of CONTRACT.md section 2, or "none"
)

// Metric names.
const (
	JobDuration   = "JobDuration"
	QueueWait     = "QueueWait"
	AgentDuration = "AgentDuration"
	CostUSD       = "CostUSD"
	InputTokens   = "InputTokens"
	OutputTokens  = "OutputTokens"
	Jobs          = "Jobs"

	JobsInFlight      = "JobsInFlight"
	FreeLanes         = "FreeLanes"
	DevServersRunning = "DevServersRunning"
	LeasesHeld        = "LeasesHeld"
	RouterRequests    = "RouterRequests"
	Router5xx         = "Router5xx"
	RouterUpstreamMs  = "RouterUpstreamLatency"

	PreviewWakeTime   = "PreviewWakeTime"
	LeaseTakeoverTime = "LeaseTakeoverTime"
	BudgetExceeded    = "BudgetExceeded"
	QuotaExceeded     = "QuotaExceeded"
)

// Spec describes one metric: what it measures, its unit, the dimension sets
// it is published under, and when it is written.
type Spec struct {
	Name       string
	Unit       Unit
	Dimensions [][]string
	When       string // "answer" (per final answer), "minute" or "event"
	Meaning    string
}

var (
	perAnswer = [][]string{{DimService, DimJobType, DimStatus, DimErrorCode}, {DimService, DimStatus}}
	perTask   = [][]string{{DimService}}
)

// Catalog is every metric the worker and the router write.
var Catalog = []Spec{
	{JobDuration, Milliseconds, perAnswer, "answer", "the job's own time: finishedAt - startedAt"},
	{QueueWait, Milliseconds, perAnswer, "answer", "from the message's SentTimestamp to startedAt"},
	{AgentDuration, Milliseconds, perAnswer, "answer", "the agent's run (claude.durationMs); execute jobs only"},
	{CostUSD, None, perAnswer, "answer", "the job's cost in US dollars (claude.costUsd); execute jobs only"},
	{InputTokens, Count, perAnswer, "answer", "input tokens counted by the API gateway; execute jobs only"},
	{OutputTokens, Count, perAnswer, "answer", "output tokens counted by the API gateway; execute jobs only"},
	{Jobs, Count, perAnswer, "answer", "1 per final answer: sums give job counts and, by Status, the failure rate"},
	{JobsInFlight, None, perTask, "minute", "jobs running on the task"},
	{FreeLanes, None, perTask, "minute", "jobs the task could start now (MAX_CONCURRENT_USERS - in flight)"},
	{DevServersRunning, None, perTask, "minute", "users' dev servers running on the task"},
	{LeasesHeld, None, perTask, "minute", "preview leases the task holds"},
	{RouterRequests, Count, perTask, "minute", "requests the router handled in the minute"},
	{Router5xx, Count, perTask, "minute", "of those, answered 5xx"},
	{RouterUpstreamMs, Milliseconds, perTask, "minute", "mean time to the owner's response headers over the minute"},
	{PreviewWakeTime, Milliseconds, perTask, "event", "router: a preview with no live lease, from its wake (the preview job sent) to the first request proxied to its new owner"},
	{LeaseTakeoverTime, Milliseconds, perTask, "event", "worker: a lease taken from another worker by a job, from the take to the dev server serving here"},
	{BudgetExceeded, Count, perTask, "event", "a job stopped at its budget (budget_exceeded)"},
	{QuotaExceeded, Count, perTask, "event", "a job past TENANT_DISK_MB (quota_exceeded)"},
}

// Lookup returns the catalog's spec of name.
func Lookup(name string) (Spec, bool) {
	i := slices.IndexFunc(Catalog, func(s Spec) bool { return s.Name == name })
	if i < 0 {
		return Spec{}, false
	}
	return Catalog[i], true
}

// Value is one figure of a metric.
type Value struct {
	Name  string
	Value float64
}

// Options configures a Recorder.
type Options struct {
	// Service is the DimService value: "worker" or "router".
	Service string
	// Readable writes each line as a log line of Logger instead of EMF
	// (worker local). Logger must then be set.
	Readable bool
	Logger   *slog.Logger
	// Now returns the time of a line; default time.Now.
	Now func() time.Time
}

// Recorder writes metric lines. It is safe for concurrent use; the zero
// value and a nil *Recorder write nothing.
type Recorder struct {
	w   io.Writer
	opt Options
	mu  sync.Mutex // one line at a time
}

// New returns a Recorder writing EMF lines to w (os.Stdout in production:
// the container's log stream).
func New(w io.Writer, opt Options) *Recorder {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	return &Recorder{w: w, opt: opt}
}

// Emit writes one line: values under the dimensions dims (the Service
// dimension added), each value published under the dimension sets its
// spec names. A name missing from the catalog is a programming error and
// panics, so that a test finds it.
func (r *Recorder) Emit(dims map[string]string, values ...Value) {
	if r == nil || r.w == nil && !r.opt.Readable || len(values) == 0 {
		return
	}
	all := map[string]string{DimService: r.opt.Service}
	for k, v := range dims {
		all[k] = v
	}
	if r.opt.Readable {
		r.readable(all, values)
		return
	}
	line, err := r.emf(all, values)
	if err != nil {
		return // values are finite numbers and strings: cannot happen
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	_, _ = r.w.Write(line) // a log stream that fails has nowhere to report to
}

// emf builds one EMF line (specification:
// https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html).
func (r *Recorder) emf(dims map[string]string, values []Value) ([]byte, error) {
	type metricDef struct {
		Name string `json:"Name"`
		Unit Unit   `json:"Unit"`
	}
	type directive struct {
		Namespace  string      `json:"Namespace"`
		Dimensions [][]string  `json:"Dimensions"`
		Metrics    []metricDef `json:"Metrics"`
	}
	// One directive per distinct set of dimension sets.
	var directives []directive
	root := map[string]any{}
	for _, v := range values {
		spec, ok := Lookup(v.Name)
		if !ok {
			panic(fmt.Sprintf("metrics: %q is not in the catalog", v.Name))
		}
		if math.IsNaN(v.Value) || math.IsInf(v.Value, 0) {
			continue
		}
		sets := present(spec.Dimensions, dims)
		i := slices.IndexFunc(directives, func(d directive) bool { return equalSets(d.Dimensions, sets) })
		if i < 0 {
			directives = append(directives, directive{Namespace: Namespace, Dimensions: sets})
			i = len(directives) - 1
		}
		directives[i].Metrics = append(directives[i].Metrics, metricDef{spec.Name, spec.Unit})
		root[v.Name] = v.Value
	}
	for _, set := range directives {
		for _, names := range set.Dimensions {
			for _, d := range names {
				root[d] = dims[d]
			}
		}
	}
	root["_aws"] = map[string]any{"Timestamp": r.opt.Now().UnixMilli(), "CloudWatchMetrics": directives}
	b, err := json.Marshal(root)
	if err != nil {
		return nil, fmt.Errorf("encode metric line: %w", err)
	}
	return append(b, '\n'), nil
}

// present keeps the dimension sets whose every dimension has a value.
func present(sets [][]string, dims map[string]string) [][]string {
	var out [][]string
	for _, set := range sets {
		if !slices.ContainsFunc(set, func(d string) bool { return dims[d] == "" }) {
			out = append(out, set)
		}
	}
	return out
}

func equalSets(a, b [][]string) bool {
	return slices.EqualFunc(a, b, func(x, y []string) bool { return slices.Equal(x, y) })
}

// readable logs the line for a person: "metrics" with each value in its
// unit and the dimensions.
func (r *Recorder) readable(dims map[string]string, values []Value) {
	if r.opt.Logger == nil {
		return
	}
	var attrs []slog.Attr
	for _, v := range values {
		spec, ok := Lookup(v.Name)
		if !ok {
			panic(fmt.Sprintf("metrics: %q is not in the catalog", v.Name))
		}
		switch spec.Unit {
		case Milliseconds:
			attrs = append(attrs, slog.String(v.Name, (time.Duration(v.Value*float64(time.Millisecond))).Round(time.Millisecond).String()))
		default:
			attrs = append(attrs, slog.Float64(v.Name, v.Value))
		}
	}
	keys := make([]string, 0, len(dims))
	for k := range dims {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		attrs = append(attrs, slog.String(strings.ToLower(k[:1])+k[1:], dims[k]))
	}
	r.opt.Logger.LogAttrs(context.Background(), slog.LevelInfo, "metrics", attrs...)
}

// Every calls sample each interval until ctx ends and writes what it
// returns, so that per-minute figures need one goroutine, owned by the
// caller (it returns when ctx ends).
func (r *Recorder) Every(ctx context.Context, interval time.Duration, sample func() []Value) {
	if r == nil {
		<-ctx.Done()
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Emit(nil, sample()...)
		}
	}
}
