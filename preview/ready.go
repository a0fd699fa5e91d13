package preview

import (
	"context"
	"io"
	"net/http"
	"time"
)

// probeInterval is the pause between two readiness probes.
const probeInterval = 50 * time.Millisecond

// answers reports whether the dev server answers GET / with any response,
// through a connection that g's uid answers (else ErrForeignListener) and
// with g's secret.
func (d *devServer) answers(ctx context.Context, port int, g *guard) (bool, error) {
	req, err := http.NewRequestWithContext(withGuard(ctx, g), http.MethodGet, loopbackURL(port).String()+"/", nil)
	if err != nil {
		return false, err
	}
	req.Header.Set(SecretHeader, g.secret)
	resp, err := d.probe.Do(req)
	if err != nil {
		return false, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // best effort: the status is what counts
	if err := resp.Body.Close(); err != nil {
		d.log.DebugContext(ctx, "close probe response", "error", err)
	}
	return true, nil
}

// setGuard makes g the guard of run r's dev server, if r is current.
func (d *devServer) setGuard(r *run, g *guard) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gen == r.gen {
		d.guard = g
	}
}
