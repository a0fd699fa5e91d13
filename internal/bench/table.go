// Package bench is the worker's benchmark report. Its one benchmark,
// BenchmarkReport (in the test files), measures the worker end to end with
// real components (the worker binary, the SQS emulator, git, npm, the Claude
// Code CLI against a fake Messages API, the Astro dev server, headless
// Chromium) and prints one table, each row with its goal and a verdict:
//
//	internal/bench/run    # or: go test -run '^$' -bench Report -benchtime 1x -timeout 20m ./internal/bench
//
// This file renders that table; the measurements are in the test files, so
// `go test ./internal/bench` without -bench runs only the table's unit test.
package bench

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Verdict says how a row's result compares with its goal.
type Verdict string

// The verdicts.
const (
	// Pass: the result meets the goal.
	Pass Verdict = "PASS"
	// Fail: the result misses the goal.
	Fail Verdict = "FAIL"
	// Info: the row has no goal; it is reported only.
	Info Verdict = "info"
	// Error: the measurement did not complete; the row has no number.
	Error Verdict = "ERROR"
)

// Spec declares one row of the report before it is measured.
type Spec struct {
	ID   string // "1a": the row's number in the report
	Name string // what is measured
	Goal string // "< 30 MiB"; empty for a row reported only
}

// Row is one measured (or failed) row of the report.
type Row struct {
	Spec
	Result  string
	Verdict Verdict
}

// Table collects the report's rows. Rows are declared with their specs up
// front, in the order they are printed; measurements fill them in any order.
// Its methods are safe for concurrent use.
type Table struct {
	mu    sync.Mutex
	specs []Spec
	rows  map[string]Row
	tried map[string]bool // the section measuring the row ran
}

// NewTable returns a table of the given rows, none measured yet.
func NewTable(specs ...Spec) *Table {
	return &Table{specs: specs, rows: map[string]Row{}, tried: map[string]bool{}}
}

// spec returns the declared spec of id; it panics on an undeclared id, a
// programming error in the benchmark.
func (t *Table) spec(id string) Spec {
	for _, s := range t.specs {
		if s.ID == id {
			return s
		}
	}
	panic(fmt.Sprintf("bench: row %q is not declared", id))
}

// Check records a measured row with a goal: pass says whether result meets it.
func (t *Table) Check(id, result string, pass bool) {
	v := Fail
	if pass {
		v = Pass
	}
	t.set(id, result, v)
}

// Info records a measured row reported without a goal.
func (t *Table) Info(id, result string) { t.set(id, result, Info) }

func (t *Table) set(id, result string, v Verdict) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.spec(id)
	if s.Goal == "" && v != Info {
		panic(fmt.Sprintf("bench: row %q has no goal to check", id))
	}
	t.rows[id] = Row{Spec: s, Result: result, Verdict: v}
}

// Tried marks rows whose measurement ran: those left without a result are
// printed as errors, never with a number. Rows never tried (filtered out
// with -bench) are left out of the table.
func (t *Table) Tried(ids ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range ids {
		t.spec(id)
		t.tried[id] = true
	}
}

// Rows returns the rows to print, in declaration order: measured rows, and
// rows whose measurement ran but gave no result (Verdict Error).
func (t *Table) Rows() []Row {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Row
	for _, s := range t.specs {
		if r, ok := t.rows[s.ID]; ok {
			out = append(out, r)
		} else if t.tried[s.ID] {
			out = append(out, Row{Spec: s, Result: "not measured (see the log above)", Verdict: Error})
		}
	}
	return out
}

// Failed reports whether a row misses its goal or was not measured.
func (t *Table) Failed() bool {
	return slices.ContainsFunc(t.Rows(), func(r Row) bool { return r.Verdict == Fail || r.Verdict == Error })
}

// Markdown renders the rows as a Markdown table followed by a summary line.
func (t *Table) Markdown() string {
	rows := t.Rows()
	var sb strings.Builder
	sb.WriteString("| # | measurement | result | goal | verdict |\n")
	sb.WriteString("|---|---|---|---|---|\n")
	count := map[Verdict]int{}
	for _, r := range rows {
		goal := r.Goal
		if goal == "" {
			goal = "report only"
		}
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s |\n", cell(r.ID), cell(r.Name), cell(r.Result), cell(goal), r.Verdict)
		count[r.Verdict]++
	}
	fmt.Fprintf(&sb, "\n%d rows: %d pass, %d fail, %d report only, %d not measured.\n",
		len(rows), count[Pass], count[Fail], count[Info], count[Error])
	return sb.String()
}

// cell escapes what would break a Markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

// Ms formats a duration in milliseconds with a precision that suits it.
func Ms(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms < 10:
		return fmt.Sprintf("%.2f ms", ms)
	case ms < 100:
		return fmt.Sprintf("%.1f ms", ms)
	case ms < 10000:
		return fmt.Sprintf("%.0f ms", ms)
	default:
		return fmt.Sprintf("%.1f s", ms/1000)
	}
}

// MiB formats a byte count in mebibytes.
func MiB(bytes int64) string {
	return fmt.Sprintf("%.1f MiB", float64(bytes)/(1<<20))
}

// Quantile returns the q-quantile (0 to 1) of ds by nearest rank; 0 for none.
func Quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s)) + 0.5)
	return s[min(max(i, 1), len(s))-1]
}

// Median returns the median of ds (the lower middle for an even count).
func Median(ds []time.Duration) time.Duration { return Quantile(ds, 0.5) }

// Ratio returns how many times the median of base the median of ds is:
// a result judged against a baseline measured in the same run, on the same
// machine, so that the machine's load moves both. 0 when either is empty.
func Ratio(ds, base []time.Duration) float64 {
	b := Median(base)
	if len(ds) == 0 || b <= 0 {
		return 0
	}
	return float64(Median(ds)) / float64(b)
}

// VsBaseline formats a row judged on its ratio to a baseline: the ratio,
// then the absolute figures beside it, as "1.31x (93.4 ms, max 120 ms;
// baseline 71.2 ms)".
func VsBaseline(ds, base []time.Duration) string {
	return fmt.Sprintf("%.2fx (%s, max %s; baseline %s)", Ratio(ds, base), Ms(Median(ds)), Ms(Quantile(ds, 1)), Ms(Median(base)))
}
