// Package logging builds the worker's slog.Logger: coloured text (tint) on a
// terminal, one JSON object per line otherwise, with every secret masked.
package logging

import (
	"io"
	"log/slog"
	"os"
	"regexp"
	"time"

	"github.com/lmittmann/tint"
	"golang.org/x/term"

	"github.com/webordinary/claude-code-astro/internal/redact"
)

// Options configure New.
type Options struct {
	Level  slog.Level
	Format string // "auto" (text on a terminal, JSON otherwise), "json" or "text"
	// Redactor masks secrets in every string attribute and message. Nil masks
	// only credentials embedded in URLs.
	Redactor *redact.Redactor
}

// New returns a logger writing to w.
func New(w io.Writer, opt Options) *slog.Logger {
	replace := func(_ []string, a slog.Attr) slog.Attr {
		return redactAttr(opt.Redactor, a)
	}
	format := opt.Format
	if format == "auto" || format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "tint"
		}
	}
	var h slog.Handler
	switch format {
	case "tint":
		h = tint.NewHandler(w, &tint.Options{Level: opt.Level, TimeFormat: time.TimeOnly, ReplaceAttr: replace})
	case "text":
		h = slog.NewTextHandler(w, &slog.HandlerOptions{Level: opt.Level, ReplaceAttr: replace})
	default:
		h = slog.NewJSONHandler(w, &slog.HandlerOptions{Level: opt.Level, ReplaceAttr: replace})
	}
	return slog.New(contextHandler{h})
}

// previewToken matches a preview token in a URL's query: logs never hold
// one (responses do: a previewUrl carries its user's token).
var previewToken = regexp.MustCompile(`(preview_token=)[^&\s"']+`)

// mask masks secrets and preview tokens in s.
func mask(r *redact.Redactor, s string) string {
	return previewToken.ReplaceAllString(r.String(s), "${1}"+redact.Mask)
}

// redactAttr masks secrets in string values, error values and the message.
func redactAttr(r *redact.Redactor, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		if s := a.Value.String(); s != "" {
			a.Value = slog.StringValue(mask(r, s))
		}
	case slog.KindAny:
		switch v := a.Value.Any().(type) {
		case error:
			a.Value = slog.StringValue(mask(r, v.Error()))
		case []string:
			out := make([]string, len(v))
			for i, s := range v {
				out[i] = mask(r, s)
			}
			a.Value = slog.AnyValue(out)
		}
	}
	return a
}

// timeZero is the zero time, for records that only carry attributes.
var timeZero time.Time

// Discard returns a logger that drops everything, for tests and tools.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
