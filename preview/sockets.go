package preview

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Sockets remembers the WebSockets open on each preview (Vite's HMR socket
// of every open page), so that a worker that no longer serves a preview (its
// lease was taken over) can close them with a code the page's client acts
// on: 1012, service restart, after which Vite's client polls and reloads the
// page from the preview's new worker. Put Wrap between a Gate (which names
// the preview) and the Proxy. The zero value is ready; it is safe for
// concurrent use.
type Sockets struct {
	mu   sync.Mutex
	byID map[string]map[*socketConn]struct{}
}

// Wrap returns next, recording the connection of every WebSocket upgrade it
// serves under the request's preview id.
func (s *Sockets) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := PreviewID(r.Context())
		if !ok || r.Header.Get("Upgrade") == "" {
			next.ServeHTTP(w, r)
			return
		}
		rec := &hijackRecorder{ResponseWriter: w, sockets: s, id: id}
		defer rec.forget()
		next.ServeHTTP(rec, r)
	})
}

// Close closes every WebSocket open on preview id with code and reason,
// and returns how many it closed.
func (s *Sockets) Close(id string, code int, reason string) int {
	s.mu.Lock()
	conns := s.byID[id]
	delete(s.byID, id)
	s.mu.Unlock()
	for c := range conns {
		c.closeWith(code, reason)
	}
	return len(conns)
}

func (s *Sockets) add(id string, c *socketConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byID == nil {
		s.byID = map[string]map[*socketConn]struct{}{}
	}
	if s.byID[id] == nil {
		s.byID[id] = map[*socketConn]struct{}{}
	}
	s.byID[id][c] = struct{}{}
}

func (s *Sockets) remove(id string, c *socketConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID[id], c)
	if len(s.byID[id]) == 0 {
		delete(s.byID, id)
	}
}

// hijackRecorder is the ResponseWriter Wrap hands on: its Hijack returns
// the connection wrapped, and recorded.
type hijackRecorder struct {
	http.ResponseWriter
	sockets *Sockets
	id      string
	conn    *socketConn
}

// Unwrap gives http.ResponseController the writer beneath.
func (h *hijackRecorder) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// Hijack takes the connection over, as the server's own Hijack does.
func (h *hijackRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = &socketConn{Conn: conn}
	h.sockets.add(h.id, h.conn)
	return h.conn, brw, nil
}

// forget drops the recorded connection once the handler returned (the
// socket is closed then).
func (h *hijackRecorder) forget() {
	if h.conn != nil {
		h.sockets.remove(h.id, h.conn)
	}
}

// socketConn is a hijacked WebSocket connection whose writes can be
// stopped for a close frame of the server's own.
type socketConn struct {
	net.Conn
	mu     sync.Mutex
	closed bool
}

// errSocketClosed is what a write after closeWith returns.
var errSocketClosed = errors.New("preview socket closed: the preview moved")

// Write passes the proxy's frames through until closeWith.
func (c *socketConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, errSocketClosed
	}
	return c.Conn.Write(p)
}

// closeWith sends a close frame (the server's: unmasked) and closes the
// connection.
func (c *socketConn) closeWith(code int, reason string) {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		frame := closeFrame(code, reason)
		_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Conn.Write(frame) // a browser that went away needs no close
	}
	c.mu.Unlock()
	_ = c.Conn.Close() // the proxy's copy ends on it
}

// closeFrame is a server's WebSocket close frame with code and reason
// (at most 123 bytes).
func closeFrame(code int, reason string) []byte {
	payload := websocket.FormatCloseMessage(code, reason)
	if len(payload) > 125 {
		payload = payload[:125]
	}
	return append([]byte{0x88, byte(len(payload))}, payload...)
}
