package logging

import (
	"context"
	"log/slog"
	"slices"
)

// attrsKey is the context key of the attributes With adds.
type attrsKey struct{}

// With returns a context whose log records carry args (key-value pairs or
// slog.Attrs) in addition to their own: the worker puts a job's ids in the
// job's context, so every line logged with it (slog's *Context methods), in
// any package, names the job.
func With(ctx context.Context, args ...any) context.Context {
	prev, _ := ctx.Value(attrsKey{}).([]slog.Attr)
	r := slog.NewRecord(timeZero, 0, "", 0)
	r.Add(args...)
	attrs := slices.Clip(prev)
	r.Attrs(func(a slog.Attr) bool {
		attrs = append(attrs, a)
		return true
	})
	return context.WithValue(ctx, attrsKey{}, attrs)
}

// contextHandler adds the context's attributes to every record.
type contextHandler struct {
	slog.Handler
}

// Handle adds the attributes With put in ctx, then hands the record on.
func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if attrs, ok := ctx.Value(attrsKey{}).([]slog.Attr); ok && len(attrs) > 0 {
		r = r.Clone()
		r.AddAttrs(attrs...)
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs keeps the wrapper around the new handler.
func (h contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(attrs)}
}

// WithGroup keeps the wrapper around the new handler.
func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}
