package previewtest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/webordinary/claude-code-astro/internal/sandbox"
	"github.com/webordinary/claude-code-astro/preview"
)

// Get fetches u, with the Host header host when not empty, and returns the
// status, headers and body; it fails the test when the request does.
func Get(tb testing.TB, u, host string) (int, http.Header, string) {
	tb.Helper()
	return GetWith(tb, u, Header(host, ""))
}

// Header returns the request headers of a browser that asks for host (the
// Host header, when not empty) holding the preview cookie (when not empty).
func Header(host, cookie string) http.Header {
	h := http.Header{}
	if host != "" {
		h.Set("Host", host)
	}
	if cookie != "" {
		h.Set("Cookie", (&http.Cookie{Name: preview.CookieName, Value: cookie}).String())
	}
	return h
}

// GetWith is Get with the request headers h (its Host becomes the
// request's host).
func GetWith(tb testing.TB, u string, h http.Header) (int, http.Header, string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if host := h.Get("Host"); host != "" {
		req.Host = host
		req.Header.Del("Host")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("read %s: %v", u, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// NodePATH returns a PATH where node is found (for a dev server's
// environment), failing the test when node is not installed.
func NodePATH(tb testing.TB) string {
	tb.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		tb.Fatalf("node is missing (%v): install Node.js 20", err)
	}
	return filepath.Dir(node) + ":" + sandbox.DefaultPATH
}

// WSToken reads the HMR token that Vite puts in /@vite/client, as a
// browser's page does.
func WSToken(tb testing.TB, base *url.URL) string {
	tb.Helper()
	return WSTokenWith(tb, base, nil)
}

// WSTokenWith is WSToken with the request headers h.
func WSTokenWith(tb testing.TB, base *url.URL, h http.Header) string {
	tb.Helper()
	status, _, body := GetWith(tb, base.JoinPath("/@vite/client").String(), h)
	if status != http.StatusOK {
		tb.Fatalf("GET /@vite/client: status %d", status)
	}
	m := regexp.MustCompile(`const wsToken = "([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		tb.Fatal("no wsToken in /@vite/client")
	}
	return m[1]
}

// HMRMessage is one message of Vite's HMR socket, stamped when it arrived.
type HMRMessage struct {
	Type string
	Raw  string
	At   time.Time
}

// HMRSocket is an open HMR WebSocket whose messages arrive on C.
type HMRSocket struct {
	conn *websocket.Conn
	C    chan HMRMessage
	done chan struct{}
}

// DialWS opens a WebSocket at the root of base with one subprotocol
// (vite-hmr, vite-ping) and, when token is not empty, Vite's token in the
// query string, as a browser's page does. host, if set, is the Host header
// (and Origin) to send. It returns the handshake's response and error as the
// dialer gives them.
func DialWS(base *url.URL, host, protocol, token string) (*websocket.Conn, *http.Response, error) {
	return DialWSWith(base, Header(host, ""), protocol, token)
}

// DialWSWith is DialWS with the request headers h (Host, Cookie); the
// Origin is the Host's, or base's.
func DialWSWith(base *url.URL, h http.Header, protocol, token string) (*websocket.Conn, *http.Response, error) {
	wsURL := *base
	wsURL.Scheme = "ws"
	wsURL.Path = "/"
	wsURL.RawQuery = ""
	if token != "" {
		wsURL.RawQuery = url.Values{"token": {token}}.Encode()
	}
	dialer := websocket.Dialer{HandshakeTimeout: 10 * time.Second, Subprotocols: []string{protocol}}
	header := h.Clone()
	if header == nil {
		header = http.Header{}
	}
	origin := "http://" + base.Host
	if host := header.Get("Host"); host != "" {
		origin = "http://" + host
	}
	header.Set("Origin", origin)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return dialer.DialContext(ctx, wsURL.String(), header)
}

// DialHMR opens Vite's HMR socket at base the way a browser does: subprotocol
// vite-hmr, an Origin and the token in the query string. host, if set, is the
// Host header to send. The socket is closed when the test ends.
func DialHMR(tb testing.TB, base *url.URL, host string) *HMRSocket {
	tb.Helper()
	return DialHMRWith(tb, base, Header(host, ""))
}

// DialHMRWith is DialHMR with the request headers h (Host, Cookie), for
// the page and the socket alike.
func DialHMRWith(tb testing.TB, base *url.URL, h http.Header) *HMRSocket {
	tb.Helper()
	conn, resp, err := DialWSWith(base, h, "vite-hmr", WSTokenWith(tb, base, h))
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		tb.Fatalf("dial HMR socket at %s: %v (status %d)", base, err, status)
	}
	if got := conn.Subprotocol(); got != "vite-hmr" {
		tb.Fatalf("HMR subprotocol = %q, want vite-hmr", got)
	}
	s := &HMRSocket{conn: conn, C: make(chan HMRMessage, 256), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer close(s.C)
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				return
			}
			at := time.Now()
			var typ struct {
				Type string `json:"type"`
			}
			_ = json.Unmarshal(data, &typ) // a message without a type is kept with Type ""
			s.C <- HMRMessage{Type: typ.Type, Raw: string(data), At: at}
		}
	}()
	tb.Cleanup(s.Close)
	return s
}

// Close closes the socket and waits for its reader.
func (s *HMRSocket) Close() {
	_ = s.conn.Close() // closing twice is harmless
	<-s.done
}

// Next returns the next message whose type is one of types, or fails the
// test after timeout.
func (s *HMRSocket) Next(tb testing.TB, timeout time.Duration, types ...string) HMRMessage {
	tb.Helper()
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case m, ok := <-s.C:
			if !ok {
				tb.Fatalf("HMR socket closed while waiting for %v", types)
			}
			for _, typ := range types {
				if m.Type == typ {
					return m
				}
			}
		case <-t.C:
			tb.Fatalf("no HMR message of type %v within %s", types, timeout)
		}
	}
}

// Drain discards messages until none arrived for quiet.
func (s *HMRSocket) Drain(quiet time.Duration) {
	for {
		select {
		case _, ok := <-s.C:
			if !ok {
				return
			}
		case <-time.After(quiet):
			return
		}
	}
}
