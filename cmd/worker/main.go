// Command worker is the site-editing worker: it takes edit jobs from SQS, runs
// Claude Code on the site's git repository, commits and pushes the result,
// answers on a response queue and serves a live preview of the Astro site.
//
// Usage:
//
//	worker [run]        the container's process (the default)
//	worker local        everything on this machine: an embedded SQS emulator, no AWS account
//	worker router       route previews to the workers serving them (a fleet)
//	worker send         put an init or execute job on the queue, optionally wait for its answer
//	worker healthcheck  exit 0 when GET /health answers 200 (the image's HEALTHCHECK)
//	worker version      print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	go func() {
		// After the first signal, the next one stops the process at once.
		<-ctx.Done()
		stop()
	}()
	m := NewMain()
	os.Exit(m.Run(ctx, os.Args[1:]))
}

// Main runs the program with its inputs and outputs as fields, so tests can
// run it in process.
type Main struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
}

// NewMain returns a Main on the process's own streams and environment.
func NewMain() *Main {
	return &Main{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
}

// errUsage reports bad arguments; the usage was already printed.
var errUsage = errors.New("usage")

// Run runs the subcommand args name and returns the exit code.
func (m *Main) Run(ctx context.Context, args []string) int {
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = (&RunCommand{Main: m}).Run(ctx, args)
	case "local":
		err = (&LocalCommand{Main: m}).Run(ctx, args)
	case "send":
		err = (&SendCommand{Main: m}).Run(ctx, args)
	case "router":
		err = (&RouterCommand{Main: m}).Run(ctx, args)
	case "healthcheck":
		err = (&HealthcheckCommand{Main: m}).Run(ctx, args)
	case "version":
		fmt.Fprintln(m.Stdout, version())
	case "help", "-h", "--help":
		m.usage()
	default:
		fmt.Fprintf(m.Stderr, "worker: unknown command %q\n", cmd)
		m.usage()
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage), errors.Is(err, flag.ErrHelp):
		return 2
	default:
		fmt.Fprintf(m.Stderr, "worker %s: %v\n", cmd, err)
		return 1
	}
}

func (m *Main) usage() {
	fmt.Fprint(m.Stderr, `Usage: worker <command> [flags]

Commands:
  run          the container's process (default): jobs from JOB_QUEUE_URL, answers on RESPONSE_QUEUE_URL
  local        run everything here: an embedded SQS emulator, the worker, the preview
  router       route each preview host to the worker serving it (a fleet: LEASE_TABLE)
  send         put an init or execute job on the job queue; -wait for its answer
  healthcheck  exit 0 when the worker's GET /health answers 200
  version      print the version

Configuration is read from the environment; see README.md.
Run 'worker <command> -h' for a command's flags.
`)
}

// version returns the module version and VCS revision the binary was built from.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := info.Main.Version
	if v == "(devel)" {
		v = ""
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			if v == "" {
				v = "devel"
			}
			v += "+" + s.Value[:12]
		}
	}
	if v == "" {
		v = "devel"
	}
	return v
}
