// Command worker is the site-editing worker: it takes edit jobs from SQS, runs
// Claude Code on the site's git repository, commits and pushes the result,
// answers on a response queue and serves a live preview of the Astro site.
//
// Usage:
//
//	worker [run]        the container's process (the default)
//	worker local        everything on this machine: an embedded SQS emulator, no AWS account
//	worker router       route previews to the workers serving them (a fleet)
//	worker send         put a job (init, execute, cancel, revert, preview) on the queue, optionally wait for its answer
//	worker healthcheck  exit 0 when GET /health answers 200 (the image's HEALTHCHECK)
//	worker status       the running worker's tenants and dev servers (as root: from its status socket)
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
	sigs := make(chan os.Signal, 3)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	ctx, cancel := context.WithCancel(context.Background())
	m := NewMain()
	hurry := make(chan struct{})
	m.Hurry = hurry
	go onSignals(sigs, cancel, hurry, m.Stderr, os.Exit)
	os.Exit(m.Run(ctx, os.Args[1:]))
}

// onSignals turns signals into the stops: the first ends ctx (a soft
// stop: running jobs may finish for a while); the second closes hurry
// (running jobs are stopped now, their process trees killed and their
// messages released, as at the end of the drain); the third exits at once,
// leaving whatever runs.
func onSignals(sigs <-chan os.Signal, cancel context.CancelFunc, hurry chan<- struct{}, stderr io.Writer, exit func(int)) {
	<-sigs
	cancel()
	<-sigs
	fmt.Fprintln(stderr, "worker: stopping the running jobs now (their processes are killed, their messages released); a third signal exits at once and leaves them")
	close(hurry)
	<-sigs
	fmt.Fprintln(stderr, "worker: exiting at once")
	exit(130)
}

// Main runs the program with its inputs and outputs as fields, so tests can
// run it in process.
type Main struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// Hurry, when closed after the run's context ended, cuts the drain
	// short: running jobs are stopped now. Nil: never.
	Hurry <-chan struct{}
}

// NewMain returns a Main on the process's own streams and environment.
func NewMain() *Main {
	return &Main{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
}

// errUsage reports bad arguments; the usage was already printed.
var errUsage = errors.New("usage")

// parseNoArgs parses the arguments of command, which takes none: -h prints
// usage, and any argument prints it and is errUsage.
func parseNoArgs(stderr io.Writer, command, usage string, args []string) error {
	fs := flag.NewFlagSet(command, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, usage) }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	return nil
}

// Run runs the subcommand args name and returns the exit code.
func (m *Main) Run(ctx context.Context, args []string) int {
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	} else if len(args) > 0 && isHelp(args[0]) {
		cmd = "help"
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
	case "status":
		err = (&StatusCommand{Main: m}).Run(ctx, args)
	case "version":
		fmt.Fprintln(m.Stdout, version())
	case "help":
		m.usage(m.Stdout)
	default:
		fmt.Fprintf(m.Stderr, "worker: unknown command %q\n", cmd)
		m.usage(m.Stderr)
		return 2
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0 // asked for help, got it
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintf(m.Stderr, "worker %s: %v\n", cmd, err)
		return 1
	}
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help":
		return true
	}
	return false
}

func (m *Main) usage(w io.Writer) {
	fmt.Fprint(w, `Usage: worker <command> [flags]

Commands:
  run          the container's process (default): jobs from JOB_QUEUE_URL, answers on RESPONSE_QUEUE_URL
`+localUsage+`  router       route each preview host to the worker serving it (a fleet: LEASE_TABLE)
  send         put a job (init, execute, cancel, revert, preview) on the job queue; -wait for its answer
  healthcheck  exit 0 when the worker's GET /health answers 200
  status       the running worker's tenants, workspaces and dev servers (from its root-only status socket)
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
