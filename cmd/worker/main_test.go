package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/webordinary/claude-code-astro/internal/testkit/gotool"
	"github.com/webordinary/claude-code-astro/internal/testkit/logbuf"
)

// TestHelp: every way of asking for help prints it and exits 0; the
// command list names every job type send puts on the queue; send's flags
// read as "-client id", not a garbled placeholder.
func TestHelp(t *testing.T) {
	tests := []struct {
		args []string
		want []string // in stdout or stderr
	}{
		{[]string{"--help"}, []string{"Commands:", "local ", "send         put a job (init, execute, cancel, revert, preview)", "healthcheck"}},
		{[]string{"-h"}, []string{"Commands:", "send "}},
		{[]string{"-help"}, []string{"Commands:"}},
		{[]string{"help"}, []string{"Commands:"}},
		{[]string{"send", "-h"}, []string{"-client id", "-endpoint URL", "-local-state file", "-to-commit commit"}},
		{[]string{"run", "-h"}, []string{"Usage: worker run"}},
		{[]string{"local", "-h"}, []string{"-demo-agent"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			m := &Main{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
			if code := m.Run(context.Background(), tt.args); code != 0 {
				t.Errorf("exit code %d, want 0\n%s%s", code, stdout.String(), stderr.String())
			}
			out := stdout.String() + stderr.String()
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("the help lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "worker local`") || strings.Contains(out, "-endpoint worker") {
				t.Errorf("a garbled placeholder:\n%s", out)
			}
		})
	}
	var stdout, stderr bytes.Buffer
	m := &Main{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
	if code := m.Run(context.Background(), []string{"frobnicate"}); code != 2 || !strings.Contains(stderr.String(), "Commands:") {
		t.Errorf("an unknown command: exit %d, stderr %q; want 2 and the usage", code, stderr.String())
	}
}

// TestProductionHelpListsNoLocal: the image's binary (-tags nolocal) does
// not offer `worker local`, which it does not contain.
func TestProductionHelpListsNoLocal(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "worker")
	if out, err := gotool.Command(t, ".", []string{"build", "-tags", "nolocal", "-o", bin, "."}).CombinedOutput(); err != nil {
		t.Fatalf("go build -tags nolocal: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--help")
	cmd.Env = []string{"HOME=" + t.TempDir()}
	help, err := cmd.Output()
	if err != nil {
		t.Fatalf("worker --help: %v", err)
	}
	if !strings.Contains(string(help), "Commands:") || strings.Contains(string(help), "local ") {
		t.Errorf("the production binary's help:\n%s", help)
	}
}

// TestSignals: the first signal ends the run's context; the second closes
// Hurry (the running jobs are stopped now, not left as orphans); the third
// exits at once.
func TestSignals(t *testing.T) {
	sigs := make(chan os.Signal)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hurry := make(chan struct{})
	exited := make(chan int, 1)
	var stderr logbuf.Buffer
	go onSignals(sigs, cancel, hurry, &stderr, func(code int) { exited <- code })

	sigs <- os.Interrupt
	<-ctx.Done()
	select {
	case <-hurry:
		t.Fatal("one signal cut the drain short")
	default:
	}
	sigs <- os.Interrupt
	<-hurry
	select {
	case code := <-exited:
		t.Fatalf("two signals exited (%d)", code)
	default:
	}
	sigs <- os.Interrupt
	if code := <-exited; code != 130 {
		t.Errorf("exit code %d, want 130", code)
	}
	if !strings.Contains(stderr.String(), "stopping the running jobs now") {
		t.Errorf("the second signal said %q", stderr.String())
	}
}
