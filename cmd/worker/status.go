package main

// Tenant details (who has a preview, ports, paths, branches) are served on
// no TCP port at all, loopback included: every tenant's processes share
// loopback. They are served on a unix socket that only the worker's own
// uid (root in production) can open: the socket is mode 0600 in a
// directory of mode 0700, and each connection's peer credentials
// (SO_PEERCRED) are checked as well. `worker status` reads it.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// DefaultStatusSocket returns the status socket's path when STATUS_SOCKET
// is not set: under /run for root, else in the temporary directory, per uid.
func DefaultStatusSocket() string {
	if os.Geteuid() == 0 {
		return "/run/claude-code-astro/status.sock"
	}
	return filepath.Join(os.TempDir(), "claude-code-astro-"+strconv.Itoa(os.Geteuid()), "status.sock")
}

// statusPath is the path the worker serves its status on.
const statusPath = "/status"

type peerUIDKey struct{}

// listenStatus serves report, detailed, on a unix socket at path that only
// this process's uid (and root) may connect to, until ctx ends; done closes
// once it has stopped.
func listenStatus(ctx context.Context, path string, report func() healthReport, log *slog.Logger) (done <-chan struct{}, err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("STATUS_SOCKET: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("STATUS_SOCKET: %w", err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !fi.IsDir() || !ok || int(st.Uid) != os.Geteuid() || fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("STATUS_SOCKET: %s must be a directory of the worker's own uid that no one else may enter (mode 0700)", dir)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("STATUS_SOCKET: %s: another worker serves it", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("STATUS_SOCKET: remove a stale socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("STATUS_SOCKET: %w", err)
	}
	// Created as the umask allows, inside a directory no one else may
	// enter; then the socket itself is made 0600 too.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("STATUS_SOCKET: %w", err)
	}
	srv := &http.Server{
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerUIDKey{}, peerUID(c))
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			uid, _ := r.Context().Value(peerUIDKey{}).(int)
			if uid != 0 && uid != os.Geteuid() {
				log.Warn("status refused to another uid", "uid", uid)
				http.Error(w, "forbidden", http.StatusForbidden)
				return
			}
			if r.URL.Path != statusPath || r.Method != http.MethodGet {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(report()) // the client went away: nothing to do
		}),
	}
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("status socket stopped", "error", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close() // a client still reading: cut it
		}
	}()
	return finished, nil
}

// peerUID returns the uid of the process at the other end of a unix
// socket connection, -1 when it cannot be read.
func peerUID(c net.Conn) int {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return -1
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return -1
	}
	uid := -1
	_ = raw.Control(func(fd uintptr) { // an error leaves uid -1: refused
		if cred, err := syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED); err == nil {
			uid = int(cred.Uid)
		}
	})
	return uid
}

// StatusCommand is `worker status`: the running worker's tenant details
// (its latest job, every dev server), read from its status socket.
type StatusCommand struct {
	*Main
}

// Run prints the status as indented JSON.
func (c *StatusCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("worker status", flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	path := fs.String("socket", "", "the worker's status socket (default: STATUS_SOCKET, or "+DefaultStatusSocket()+")")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		*path = c.Getenv("STATUS_SOCKET")
	}
	if *path == "" {
		*path = DefaultStatusSocket()
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", *path)
	}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://worker"+statusPath, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("read the status socket (run as the worker's user, root): %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("read the status: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status socket: %s", resp.Status)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("read the status: %w", err)
	}
	out, _ := json.MarshalIndent(v, "", "  ") // it was just decoded: it encodes
	fmt.Fprintln(c.Stdout, string(out))
	return nil
}
