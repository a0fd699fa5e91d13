package agent

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/webordinary/claude-code-astro/internal/money"
	"github.com/webordinary/claude-code-astro/internal/redact"
)

// maxLineBytes bounds one stream-json line kept in memory; longer lines (a
// huge tool result) are skipped.
const maxLineBytes = 16 << 20

// summaryRunes bounds a progress summary.
const summaryRunes = 200

// streamLine is the part of a stream-json line the runner reads.
type streamLine struct {
	Type      string `json:"type"`
	Subtype   string `json:"subtype"`
	SessionID string `json:"session_id"`
	Model     string `json:"model"`

	// assistant
	Message *struct {
		Content []struct {
			Type  string          `json:"type"`
			Text  string          `json:"text"`
			Name  string          `json:"name"`
			Input json.RawMessage `json:"input"`
		} `json:"content"`
	} `json:"message"`

	// result
	IsError        bool     `json:"is_error"`
	APIErrorStatus *int     `json:"api_error_status"`
	NumTurns       int      `json:"num_turns"`
	DurationMs     int64    `json:"duration_ms"`
	TotalCostUSD   float64  `json:"total_cost_usd"`
	Result         string   `json:"result"`
	Errors         []string `json:"errors"`

	// system/api_retry
	Attempt     int `json:"attempt"`
	MaxRetries  int `json:"max_retries"`
	ErrorStatus int `json:"error_status"`
}

// cliResult is the CLI's final result line.
type cliResult struct {
	Subtype        string
	IsError        bool
	APIErrorStatus int
	NumTurns       int
	DurationMs     int64
	CostUSD        float64
	Result         string
	Errors         []string
	SessionID      string
}

// streamParser consumes the CLI's stdout as an io.Writer, decoding one JSON
// object per line. It is written to by one goroutine (exec's copier) and read
// after Wait; the mutex makes the hand-over explicit.
type streamParser struct {
	log        *slog.Logger
	redactor   *redact.Redactor
	projectDir string
	progress   func(Progress)
	started    time.Time

	mu        sync.Mutex
	buf       []byte
	skipping  bool
	sessionID string
	initAt    time.Duration
	result    *cliResult
}

// Write implements io.Writer, splitting p into lines.
func (p *streamParser) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			p.append(b)
			break
		}
		p.append(b[:i])
		if !p.skipping {
			p.line(p.buf)
		}
		p.buf = p.buf[:0]
		p.skipping = false
		b = b[i+1:]
	}
	return n, nil
}

// append adds part of a line to the buffer unless the line is too long.
func (p *streamParser) append(b []byte) {
	if p.skipping {
		return
	}
	if len(p.buf)+len(b) > maxLineBytes {
		p.log.Warn("agent output line too long, skipped", "limit", maxLineBytes)
		p.buf = p.buf[:0]
		p.skipping = true
		return
	}
	p.buf = append(p.buf, b...)
}

// flush handles a last line without a newline.
func (p *streamParser) flush() {
	if len(p.buf) > 0 && !p.skipping {
		p.line(p.buf)
	}
	p.buf = nil
}

// line handles one line of output.
func (p *streamParser) line(b []byte) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return
	}
	var l streamLine
	if b[0] != '{' || json.Unmarshal(b, &l) != nil {
		p.log.Debug("agent output not JSON, ignored", "line", p.redactor.String(truncate(string(b), 500)))
		return
	}
	switch {
	case l.Type == "system" && l.Subtype == "init":
		p.mu.Lock()
		p.sessionID = l.SessionID
		p.initAt = time.Since(p.started)
		p.mu.Unlock()
		p.log.Debug("agent session started", "model", l.Model)
	case l.Type == "system" && l.Subtype == "api_retry":
		p.log.Warn("agent API call retried", "attempt", l.Attempt, "max_retries", l.MaxRetries, "status", l.ErrorStatus)
	case l.Type == "assistant" && l.Message != nil:
		for _, c := range l.Message.Content {
			switch c.Type {
			case "tool_use":
				p.emit(Progress{Kind: KindToolUse, Tool: c.Name, Summary: p.toolSummary(c.Name, c.Input)})
			case "text":
				if s := oneLine(c.Text); s != "" {
					p.emit(Progress{Kind: KindText, Summary: p.redactor.String(truncate(s, summaryRunes))})
				}
			}
		}
	case l.Type == "result":
		r := &cliResult{
			Subtype:    l.Subtype,
			IsError:    l.IsError,
			NumTurns:   l.NumTurns,
			DurationMs: l.DurationMs,
			CostUSD:    money.Round(l.TotalCostUSD),
			Result:     l.Result,
			Errors:     l.Errors,
			SessionID:  l.SessionID,
		}
		if l.APIErrorStatus != nil {
			r.APIErrorStatus = *l.APIErrorStatus
		}
		p.mu.Lock()
		p.result = r
		if p.sessionID == "" {
			p.sessionID = l.SessionID
		}
		p.mu.Unlock()
	}
}

func (p *streamParser) emit(pr Progress) {
	if p.progress != nil {
		p.progress(pr)
	}
}

// state returns what the parser learned.
func (p *streamParser) state() (sessionID string, initAt time.Duration, res *cliResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sessionID, p.initAt, p.result
}

// toolSummary describes a tool call in a few words: the file, the command,
// the pattern.
func (p *streamParser) toolSummary(tool string, raw json.RawMessage) string {
	var in map[string]any
	if json.Unmarshal(raw, &in) != nil {
		return ""
	}
	str := func(key string) string {
		s, _ := in[key].(string)
		return s
	}
	var s string
	switch {
	case str("file_path") != "":
		s = p.relative(str("file_path"))
	case str("notebook_path") != "":
		s = p.relative(str("notebook_path"))
	case str("command") != "":
		s = str("command")
	case str("pattern") != "":
		s = str("pattern")
		if path := str("path"); path != "" {
			s += " in " + p.relative(path)
		}
	case str("url") != "":
		s = str("url")
	case str("description") != "":
		s = str("description")
	case str("query") != "":
		s = str("query")
	case str("path") != "":
		s = p.relative(str("path"))
	}
	return p.redactor.String(truncate(oneLine(s), summaryRunes))
}

// relative returns path relative to the project when it lies inside it.
func (p *streamParser) relative(path string) string {
	if p.projectDir == "" || !filepath.IsAbs(path) {
		return path
	}
	rel, err := filepath.Rel(p.projectDir, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return path
	}
	return rel
}

// oneLine collapses whitespace runs, newlines included, to single spaces.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// truncate shortens s to at most n runes, marking the cut with "…".
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
