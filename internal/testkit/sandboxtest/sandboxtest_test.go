package sandboxtest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/webordinary/claude-code-astro/internal/ident"
)

func TestClaimUIDsGivesDisjointSlices(t *testing.T) {
	var claimed []ident.UIDRange
	t.Run("claims", func(t *testing.T) {
		for range 3 {
			r := ClaimUIDs(t)
			if r.Min < UIDs.Min || r.Max > UIDs.Max || r.Max-r.Min+1 != slotSize {
				t.Fatalf("claimed %d-%d: want %d uids inside %d-%d", r.Min, r.Max, slotSize, UIDs.Min, UIDs.Max)
			}
			for _, c := range claimed {
				if r.Min <= c.Max && c.Min <= r.Max {
					t.Fatalf("claimed %d-%d while %d-%d is claimed", r.Min, r.Max, c.Min, c.Max)
				}
			}
			claimed = append(claimed, r)
		}
	})
	// The subtest's claims ended with it: the first slice is free again
	// (unless another test binary took it meanwhile, in which case another
	// free one comes back).
	again := ClaimUIDs(t)
	if again.Min > claimed[2].Min {
		t.Errorf("after the claims were released, the next claim is %d-%d, past all three earlier ones", again.Min, again.Max)
	}
}

// TestRequireRootFailsWhenNotRoot runs this test binary again as a plain
// uid, where RequireRoot must fail the test rather than skip it: a skipped
// test would count as passed.
func TestRequireRootFailsWhenNotRoot(t *testing.T) {
	if os.Getenv("SANDBOXTEST_PROBE") == "1" {
		RequireRoot(t)
		t.Log("RequireRoot let a plain user through")
		return
	}
	RequireRoot(t) // starting the probe as another uid needs root itself
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := Root(t) // a directory the plain uid can reach, for the binary's copy
	probe := filepath.Join(dir, "probe.test")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(probe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(probe, "-test.run=^TestRequireRootFailsWhenNotRoot$", "-test.v", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = []string{"SANDBOXTEST_PROBE=1", "HOME=" + dir, "PATH=/usr/bin:/bin", "TMPDIR=" + dir}
	uid := UIDs.Max - 1
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("the probe as uid %d: %v, want it to fail; output:\n%s", uid, err, out)
	}
	if !strings.Contains(string(out), "--- FAIL: TestRequireRootFailsWhenNotRoot") || strings.Contains(string(out), "SKIP") {
		t.Errorf("the probe as uid %d did not fail the test (or skipped it):\n%s", uid, out)
	}
	if !strings.Contains(string(out), "needs root") {
		t.Errorf("the failure does not say that the test needs root:\n%s", out)
	}
}
