package preview

import (
	"bytes"
	"context"
	"log/slog"
	"regexp"
	"sync"
)

// maxLogLine is the longest line of dev server output logged whole.
const maxLogLine = 16 << 10

// ansi matches terminal colour sequences in the dev server's output.
var ansi = regexp.MustCompile("\x1b\\[[0-9;]*[A-Za-z]")

// portTaken is what Vite prints when it moves to another port, and
// portTakenStrict what it prints when it may not (strictPort, as the
// launcher sets it).
var (
	portTaken       = []byte("is in use, trying another one")
	portTakenStrict = []byte("is already in use")
)

// lineLogger logs what the dev server writes to one stream, a record per
// line (ANSI colours removed, at most maxLogLine bytes), and signals
// portConflict when Vite says it moved to another port. exec.Cmd writes to
// it from one goroutine per stream; flush logs a last unterminated line
// once the process is gone.
type lineLogger struct {
	mu           sync.Mutex
	log          *slog.Logger
	level        slog.Level
	stream       string
	portConflict chan<- struct{}
	line         []byte
}

// setLog names the process in the lines logged from now on.
func (l *lineLogger) setLog(log *slog.Logger) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.log = log
}

// Write logs every complete line of p and keeps the rest for later.
func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if room := maxLogLine - len(l.line); room > 0 {
			l.line = append(l.line, chunk[:min(len(chunk), room)]...)
		}
		if i < 0 {
			break
		}
		l.emitLocked()
		p = p[i+1:]
	}
	return n, nil
}

// flush logs the last line if it had no newline.
func (l *lineLogger) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.line) > 0 {
		l.emitLocked()
	}
}

// emitLocked logs the current line and starts the next. l.mu must be held.
func (l *lineLogger) emitLocked() {
	line := bytes.TrimSpace(ansi.ReplaceAll(l.line, nil))
	l.line = l.line[:0]
	if len(line) == 0 {
		return
	}
	if bytes.Contains(line, portTaken) || bytes.Contains(line, portTakenStrict) {
		select {
		case l.portConflict <- struct{}{}:
		default:
		}
	}
	l.log.LogAttrs(context.Background(), l.level, string(line), slog.String("source", "astro"), slog.String("stream", l.stream))
}
