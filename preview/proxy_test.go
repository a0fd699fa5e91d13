package preview_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/webordinary/claude-code-astro/preview"
	"github.com/webordinary/claude-code-astro/preview/previewtest"
)

// seen is what the upstream reports about the request it got.
type seen struct {
	Host, Query, ForwardedHost, ForwardedProto, Protocol string
}

// echoUpstream is a stand-in dev server: it reports what it received, over
// plain HTTP or over a WebSocket (subprotocol vite-hmr) that then echoes.
func echoUpstream(t *testing.T) *url.URL {
	t.Helper()
	upgrader := websocket.Upgrader{Subprotocols: []string{"vite-hmr"}, CheckOrigin: func(*http.Request) bool { return true }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := seen{
			Host: r.Host, Query: r.URL.RawQuery,
			ForwardedHost: r.Header.Get("X-Forwarded-Host"), ForwardedProto: r.Header.Get("X-Forwarded-Proto"),
			Protocol: r.Header.Get("Sec-WebSocket-Protocol"),
		}
		if !websocket.IsWebSocketUpgrade(r) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(s) // the test reads it
			return
		}
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return // Upgrade has answered
		}
		defer conn.Close()
		if err := conn.WriteJSON(s); err != nil {
			return
		}
		for {
			typ, data, err := conn.ReadMessage()
			if err != nil {
				return
			}
			if err := conn.WriteMessage(typ, data); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// recorder wraps a ResponseWriter as logging middleware does; Unwrap lets
// http.ResponseController reach the connection to hijack it.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// TestProxyRewrite checks what the dev server receives through the Proxy,
// behind a middleware that wraps the ResponseWriter.
func TestProxyRewrite(t *testing.T) {
	up := echoUpstream(t)
	servers, _ := newServers(t, preview.ServersConfig{})
	id := preview.ID("acme", "alice")
	preview.ServeStandIn(t, servers, id, up)
	proxy := preview.NewProxy(preview.ProxyConfig{Servers: servers, Logger: testLogger(t)})
	tokens := preview.NewTokens([]byte("proxy test key"), time.Hour)
	base := serveProxy(t, preview.NewGate(preview.GateConfig{Tokens: tokens, Next: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		proxy.ServeHTTP(&recorder{ResponseWriter: w}, r)
	})}))
	cookie := tokens.Issue(id)
	const public = "preview.example.com"
	const query = "token=abc-123&x=1"

	tests := []struct {
		name string
		run  func(t *testing.T) seen
	}{
		{"plain request", func(t *testing.T) seen {
			status, _, body := previewtest.GetWith(t, base.String()+"/src/pages/index.astro?"+query, previewtest.Header(public, cookie))
			if status != http.StatusOK {
				t.Fatalf("status %d", status)
			}
			var s seen
			if err := json.Unmarshal([]byte(body), &s); err != nil {
				t.Fatalf("decode %q: %v", body, err)
			}
			return s
		}},
		{"websocket upgrade", func(t *testing.T) seen {
			wsURL := "ws://" + base.Host + "/?" + query
			dialer := websocket.Dialer{HandshakeTimeout: 5 * time.Second, Subprotocols: []string{"vite-hmr"}}
			h := previewtest.Header(public, cookie)
			h.Set("Origin", "http://"+public)
			conn, _, err := dialer.Dial(wsURL, h)
			if err != nil {
				t.Fatalf("dial through the proxy: %v", err)
			}
			defer conn.Close()
			if got := conn.Subprotocol(); got != "vite-hmr" {
				t.Errorf("subprotocol = %q, want vite-hmr", got)
			}
			if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
				t.Fatal(err)
			}
			var s seen
			if err := conn.ReadJSON(&s); err != nil {
				t.Fatalf("read: %v", err)
			}
			if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"ping"}`)); err != nil {
				t.Fatal(err)
			}
			if _, echo, err := conn.ReadMessage(); err != nil || string(echo) != `{"type":"ping"}` {
				t.Errorf("echo = %q, %v", echo, err)
			}
			if s.Protocol != "vite-hmr" {
				t.Errorf("upstream saw Sec-WebSocket-Protocol %q, want vite-hmr", s.Protocol)
			}
			return s
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.run(t)
			if s.Host != up.Host {
				t.Errorf("upstream saw Host %q, want %q (Vite refuses other hosts)", s.Host, up.Host)
			}
			if s.Query != query {
				t.Errorf("upstream saw query %q, want %q", s.Query, query)
			}
			if s.ForwardedHost != public || s.ForwardedProto != "http" {
				t.Errorf("X-Forwarded-Host/Proto = %q/%q, want %q/http", s.ForwardedHost, s.ForwardedProto, public)
			}
		})
	}
}
