package procfs

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
)

func TestReadSelf(t *testing.T) {
	p, ok := Read(os.Getpid())
	if !ok || p.PID != os.Getpid() || p.PPID != os.Getppid() || p.Start == 0 || p.Zombie {
		t.Errorf("Read(self) = %+v, %v", p, ok)
	}
	if _, ok := Read(1 << 30); ok {
		t.Error("Read of a pid that cannot exist succeeded")
	}
}

func TestDescendantsAndGroups(t *testing.T) {
	// sh starts sleep as its child; both in a new process group.
	cmd := exec.Command("sh", "-c", "sleep 30 & wait")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	wait.For(t, 5*time.Second, "the sleep child to show up", func() bool { return len(Descendants(pgid)) > 0 })
	kids := Descendants(pgid)
	if kids[0].PPID != pgid || kids[0].PGID != pgid {
		t.Errorf("child %+v, want parent and group %d", kids[0], pgid)
	}
	found := false
	for _, p := range Descendants(os.Getpid()) {
		found = found || p.PID == kids[0].PID
	}
	if !found {
		t.Error("the grandchild is not among this process's descendants")
	}
	if !GroupAlive(pgid) {
		t.Error("GroupAlive false while the group runs")
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	wait.For(t, 5*time.Second, "GroupAlive to turn false after the group was killed", func() bool { return !GroupAlive(pgid) })
}
