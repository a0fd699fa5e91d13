package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/webordinary/claude-code-astro/internal/config"
)

// HealthcheckCommand is `worker healthcheck`: the image's HEALTHCHECK, so the
// image needs no curl.
type HealthcheckCommand struct {
	*Main
}

// Run exits 0 when GET /health on HTTP_ADDR answers 200.
func (c *HealthcheckCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("worker healthcheck", flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	addr := fs.String("addr", "", "the worker's HTTP address (default: HTTP_ADDR, or :8080)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *addr == "" {
		*addr = c.Getenv("HTTP_ADDR")
	}
	if *addr == "" {
		*addr = config.Default().HTTPAddr
	}
	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("HTTP_ADDR %q: %w", *addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("GET /health: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /health: %s", resp.Status)
	}
	fmt.Fprintln(c.Stdout, "healthy")
	return nil
}
