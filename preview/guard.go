package preview

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/webordinary/claude-code-astro/internal/procfs"
)

// A dev server answers only the worker's proxy. Loopback is no trust
// boundary: every tenant's processes can connect to every dev server's port,
// and bind a port that a dev server is about to take. So:
//
//   - Each dev server process gets a secret of its own (in its environment,
//     which only its own uid and root can read, never on its command line),
//     and the launcher (devserver.mjs, the worker's code, which runs before
//     the site's config is loaded) refuses every request and upgrade that
//     does not carry it in SecretHeader. The Proxy adds it to each request it
//     forwards, replacing any the client sent.
//   - The proxy and the readiness probe forward only over a connection whose
//     server side belongs to the dev server's tenant uid (/proc/net/tcp), so
//     the secret is never sent to a process of another uid that holds the
//     port; a port held by another uid is never used.

// SecretHeader is the request header that carries a dev server's secret
// from the proxy to the dev server.
const SecretHeader = "X-Webordinary-Dev-Secret"

// ErrForeignListener means that the socket answering on a dev server's
// port belongs to another uid than the dev server's.
var ErrForeignListener = errors.New("the dev server's port is answered by another user's process")

// guard is what protects one dev server process: its secret, and the uid
// that must own the socket answering on its port.
type guard struct {
	secret string
	uid    uint32
}

// newGuard returns a guard with a fresh secret for a dev server run as as.
func newGuard(as RunAs) (*guard, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("make a dev server secret: %w", err)
	}
	uid := uint32(os.Getuid())
	if as.Credential != nil {
		uid = as.Credential.Uid
	}
	return &guard{secret: hex.EncodeToString(b[:]), uid: uid}, nil
}

// Upstream is a dev server the Proxy forwards to (see Servers.View): its
// address, the secret the proxy adds to every request and the uid that must
// own the socket answering there.
type Upstream struct {
	URL   *url.URL
	guard *guard
}

// guardKey is the context key of the guard a dial must check.
type guardKey struct{}

// withGuard returns ctx with g for dialChecked.
func withGuard(ctx context.Context, g *guard) context.Context {
	if g == nil {
		return ctx
	}
	return context.WithValue(ctx, guardKey{}, g)
}

// ownerWait bounds how long dialChecked looks for the server side of a new
// connection: on loopback the kernel has it in its tables by the time
// connect returns, or within microseconds.
const ownerWait = 100 * time.Millisecond

// dialChecked dials addr and, when ctx holds a guard, checks that the server
// side of the connection belongs to the guard's uid before anything is sent
// on it; a connection answered by anyone else is closed, with
// ErrForeignListener.
func dialChecked(ctx context.Context, network, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	g, _ := ctx.Value(guardKey{}).(*guard)
	if g == nil {
		return conn, nil
	}
	if err := checkOwner(conn, g.uid); err != nil {
		_ = conn.Close() // refused: nothing was sent
		return nil, err
	}
	return conn, nil
}

// checkOwner checks that conn's server side belongs to uid.
func checkOwner(conn net.Conn, uid uint32) error {
	remote, ok1 := conn.RemoteAddr().(*net.TCPAddr)
	local, ok2 := conn.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return fmt.Errorf("check the owner of %s: not a TCP connection", conn.RemoteAddr())
	}
	deadline := time.Now().Add(ownerWait)
	for {
		owner, found, err := procfs.SocketUID(remote.AddrPort(), local.AddrPort())
		switch {
		case err != nil:
			return fmt.Errorf("check the owner of %s: %w", remote, err)
		case found && owner == uid:
			return nil
		case found:
			return fmt.Errorf("%w: %s belongs to uid %d, not %d", ErrForeignListener, remote, owner, uid)
		case time.Now().After(deadline):
			return fmt.Errorf("check the owner of %s: %w: its server side is not in /proc/net/tcp", remote, ErrForeignListener)
		}
		time.Sleep(time.Millisecond)
	}
}

// Header returns the headers the Proxy adds to every request to u: the dev
// server's secret. For benchmarks and tests that reach a dev server
// without the proxy; nil for the zero Upstream.
func (u Upstream) Header() http.Header {
	if u.guard == nil {
		return nil
	}
	return http.Header{SecretHeader: {u.guard.secret}}
}
