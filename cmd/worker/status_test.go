package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/webordinary/claude-code-astro/internal/logging"
	"github.com/webordinary/claude-code-astro/internal/testkit/sandboxtest"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// TestStatusSocketServesOnlyTheWorkersUID: `worker status` prints the
// tenant details; a process of a tenant uid can neither open the socket
// (its directory is 0700) nor, were the modes opened up by mistake, read
// it (the peer's uid is checked).
func TestStatusSocketServesOnlyTheWorkersUID(t *testing.T) {
	sandboxtest.RequireRoot(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is needed: apt-get install -y curl")
	}
	// Every uid can reach the parent: only the socket's own directory and
	// the socket keep tenants out.
	path := filepath.Join(workspacetest.Reachable(t), "status", "status.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done, err := listenStatus(ctx, path, func() healthReport {
		return healthReport{Status: "ok", ClientID: "acme", UserID: "alice", Workspace: "/workspace/acme/alice",
			Previews: []previewReport{{Preview: "acme-alice-x", ClientID: "acme", UserID: "alice", State: "ready", Port: 4400}}}
	}, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-done })

	if _, err := listenStatus(ctx, path, func() healthReport { return healthReport{} }, logging.Discard()); err == nil {
		t.Error("a second worker took the status socket of a running one")
	}

	var out, errOut bytes.Buffer
	m := &Main{Stdout: &out, Stderr: &errOut, Getenv: func(string) string { return "" }}
	if code := m.Run(context.Background(), []string{"status", "-socket", path}); code != 0 {
		t.Fatalf("worker status: exit %d: %s", code, errOut.String())
	}
	for _, want := range []string{`"clientId": "acme"`, `"userId": "alice"`, `"port": 4400`, `"/workspace/acme/alice"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("worker status lacks %s:\n%s", want, out.String())
		}
	}

	tenant := sandboxtest.ClaimUIDs(t).Min
	asTenant := func() (string, error) {
		cmd := exec.Command("curl", "-sS", "--fail", "--max-time", "5", "--unix-socket", path, "http://worker/status")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: tenant, Gid: tenant, Groups: []uint32{}}}
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent"}
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	if got, err := asTenant(); err == nil || strings.Contains(got, "alice") {
		t.Errorf("a tenant uid read the status socket: %s", got)
	}
	// The modes opened up by mistake: the peer check still refuses.
	if err := os.Chmod(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	got, err := asTenant()
	if err == nil || strings.Contains(got, "alice") || !strings.Contains(got, "403") {
		t.Errorf("a tenant uid on an open socket: %v %s, want 403", err, got)
	}
}
