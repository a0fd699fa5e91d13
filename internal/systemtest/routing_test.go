package systemtest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/webordinary/claude-code-astro/internal/lease"
	"github.com/webordinary/claude-code-astro/internal/testkit/browser"
	"github.com/webordinary/claude-code-astro/internal/testkit/sandboxtest"
	"github.com/webordinary/claude-code-astro/internal/testkit/sqstest"
	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
	"github.com/webordinary/claude-code-astro/jobs"
	"github.com/webordinary/claude-code-astro/preview"
	"github.com/webordinary/claude-code-astro/preview/previewtest"
	"github.com/webordinary/claude-code-astro/workspace/workspacetest"
)

// fleet is three workers and a router on one workspace root and one lease
// table. Each worker polls a job queue of its own, so that the test decides
// which worker runs a job (in production any worker takes any job: the
// lease follows whichever ran the user's latest); the router wakes previews
// through the first worker's queue.
type fleet struct {
	h          *harness
	table      *lease.Table
	queues     []sqstest.Queue
	workers    []*proc
	router     *proc
	routerPort int
}

const fleetLeaseTTL = 6 * time.Second

var routingRE = regexp.MustCompile(`"msg":"routing previews"`)

func newFleet(t *testing.T, n int) *fleet {
	t.Helper()
	h := newHarness(t, harnessOptions{})
	h.useExampleSite(t)
	f := &fleet{h: h, routerPort: previewtest.FreePort(t)}
	f.table = lease.NewTable(h.emu.DynamoDB(), h.emu.CreateLeaseTable(t, queueName(t)))
	base := fmt.Sprintf("http://{preview}.%s:%d/", previewDomain, f.routerPort)
	h.env["PREVIEW_SECRET"] = testPreviewSecret
	h.env["PREVIEW_BASE_URL"] = base // previewUrls name the router
	h.env["LEASE_TABLE"] = f.table.Name()
	h.env["LEASE_TTL"] = fleetLeaseTTL.String()
	h.env["PREVIEW_IDLE_MINUTES"] = "30"
	for i := range n {
		q := h.jobsQ
		if i > 0 {
			q = h.emu.CreateQueue(t, queueName(t)+"-jobs-"+strconv.Itoa(i), sqstest.QueueOptions{FIFO: true, VisibilityTimeout: 30 * time.Second})
		}
		f.queues = append(f.queues, q)
		addr := "127.0.0.1:" + strconv.Itoa(previewtest.FreePort(t))
		f.workers = append(f.workers, h.start(map[string]string{
			"JOB_QUEUE_URL": q.URL, "HTTP_ADDR": addr, "PREVIEW_ADVERTISE_ADDR": addr,
			"ASTRO_PORT": strconv.Itoa(previewtest.FreePort(t) + 100*i),
		}))
	}
	f.router = h.launchArgs([]string{"router"}, map[string]string{"HTTP_ADDR": "127.0.0.1:" + strconv.Itoa(f.routerPort)})
	wait.For(t, 30*time.Second, "the router to listen", func() bool { return routingRE.MatchString(f.router.logs.String()) })
	return f
}

// run sends job to worker i's queue and waits for its success.
func (f *fleet) run(t *testing.T, i int, job jobs.Job) jobs.Response {
	t.Helper()
	f.queues[i].SendJob(t, job)
	r := f.h.final(job.JobID, 3*time.Minute)
	if r.Status != jobs.StatusSucceeded {
		t.Fatalf("%s %s on worker %d: %+v %+v", job.Type, job.JobID, i, r, r.Error)
	}
	return r
}

// lease returns user's lease item.
func (f *fleet) lease(t *testing.T, user string) lease.Lease {
	t.Helper()
	l, _, err := f.table.Get(context.Background(), preview.ID("acme", user))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// owner returns the index of the worker that holds user's live lease, -1
// for none.
func (f *fleet) owner(t *testing.T, user string) int {
	t.Helper()
	l := f.lease(t, user)
	if !l.Live(time.Now()) {
		return -1
	}
	for i, w := range f.workers {
		if w.addr == l.Addr {
			return i
		}
	}
	t.Fatalf("%s's lease names %s, no worker of the fleet", user, l.Addr)
	return -1
}

// routerHost is user's preview host on the router's port.
func (f *fleet) routerHost(user string) string {
	return preview.ID("acme", user) + "." + previewDomain + ":" + strconv.Itoa(f.routerPort)
}

// TestFleetRoutesEachPreviewToItsWorker runs three workers and a router as
// the issue asks: each user's preview, opened through the router in
// Chromium, shows their site; a job for alice on another worker moves her
// lease there (its epoch grows), the old worker stops her dev server, and
// the open page reconnects and shows the edit by itself; SIGKILL of the
// worker serving bob leaves his lease to expire (and its item deleted, as
// the table's TTL does), after which a page load wakes his preview on
// another worker, by the user its signed cookie names; SIGTERM ends a
// worker's leases at once.
func TestFleetRoutesEachPreviewToItsWorker(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 3)
	h := f.h
	h.api.SetDecider(headingDecider)

	links := map[string]string{}
	for i, u := range []string{"alice", "bob"} {
		r := f.run(t, i, initJob("init-"+u, u, "t-"+u))
		if !strings.Contains(r.PreviewURL, f.routerHost(u)) {
			t.Fatalf("previewUrl %q: want the router's host %s", r.PreviewURL, f.routerHost(u))
		}
		links[u] = r.PreviewURL
		if o := f.owner(t, u); o != i {
			t.Fatalf("%s's lease is worker %d's, want worker %d's (it ran the init)", u, o, i)
		}
	}

	pages := map[string]*browser.Browser{}
	for _, u := range []string{"alice", "bob"} {
		pages[u] = browser.Start(t, browser.MapHost("*."+previewDomain))
		openPreview(t, pages[u], links[u])
		pages[u].WaitText("#title", "Welcome to Example Site", 60*time.Second)
		pages[u].WaitConsole(viteConnected, 1, 30*time.Second)
	}

	t.Run("a job on another worker moves the lease and the open page follows", func(t *testing.T) {
		before := f.lease(t, "alice")
		connectedBefore := pages["alice"].CountConsole(viteConnected)
		page := h.projectDir("alice") + "/src/pages/index.astro"
		start := time.Now()
		f.run(t, 2, headingJob("edit-alice", "alice", "t-alice", page, "Welcome to Example Site", "Alice on worker three"))
		after := f.lease(t, "alice")
		if after.Epoch <= before.Epoch || f.owner(t, "alice") != 2 {
			t.Fatalf("alice's lease after a job on worker 2: %+v (was %+v): want worker 2's, with a greater epoch", after, before)
		}
		aliceID := preview.ID("acme", "alice")
		wait.For(t, fleetLeaseTTL, "worker 0 to stop alice's dev server", func() bool {
			return strings.Contains(f.workers[0].logs.String(), `"msg":"stopping a dev server","component":"preview","preview":"`+aliceID)
		})
		took := pages["alice"].WaitText("#title", "Alice on worker three", 60*time.Second)
		t.Logf("alice's open page showed the edit from worker 2 %s after the job was sent (%s after its answer)",
			time.Since(start).Round(time.Millisecond), took.Round(time.Millisecond))
		// On one machine the workers share the project directory's inotify:
		// worker 0's dev server may show the edit before it is stopped, and
		// its socket may be gone before the takeover is noticed (seen in CI:
		// no socket to close). The 1012 close and the reconnection are
		// reported here, and asserted by preview's Sockets tests; on ECS
		// each task sees only its own writes.
		closed := strings.Contains(f.workers[0].logs.String(), `"msg":"closed the preview's sockets`)
		moved := strings.Contains(f.router.logs.String(), `"msg":"the preview's lease moved`)
		t.Logf("worker 0 closed alice's open socket with 1012: %v; the router closed it when the lease moved: %v; alice's page connected its HMR socket %d times",
			closed, moved, pages["alice"].CountConsole(viteConnected))
		// The page follows the new owner by itself: its HMR socket comes
		// back (through the router, to worker 2), and an edit written now,
		// which only worker 2's dev server watches (worker 0's stopped),
		// shows without a reload.
		wait.For(t, 30*time.Second, "alice's page to reconnect its HMR socket", func() bool {
			return pages["alice"].CountConsole(viteConnected) >= connectedBefore+1
		})
		current, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		workspacetest.WriteOwned(t, page, strings.Replace(string(current), "Alice on worker three", "Alice, written after the takeover", 1))
		pages["alice"].WaitText("#title", "Alice, written after the takeover", 30*time.Second)
		if f.owner(t, "bob") != 1 {
			t.Errorf("bob's lease moved with alice's")
		}
	})

	t.Run("SIGKILL: the lease expires and a page load wakes the preview elsewhere", func(t *testing.T) {
		w := f.workers[1]
		pids := append(descendants(w.cmd.Process.Pid), w.cmd.Process.Pid)
		for _, pid := range pids { // the whole task dies, dev servers included
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		w.wait(10 * time.Second)
		wait.For(t, 2*fleetLeaseTTL, "bob's lease to expire", func() bool { return f.owner(t, "bob") == -1 })
		// The table's TTL deletes expired items (within days on AWS): with
		// the item gone, the page's signed cookie names bob.
		if _, err := h.emu.DynamoDB().DeleteItem(context.Background(), &dynamodb.DeleteItemInput{TableName: aws.String(f.table.Name()),
			Key: map[string]ddbtypes.AttributeValue{"preview": &ddbtypes.AttributeValueMemberS{Value: preview.ID("acme", "bob")}}}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		pages["bob"].Open("http://" + f.routerHost("bob") + "/")
		pages["bob"].WaitText("#title", "Welcome to Example Site", 90*time.Second)
		t.Logf("bob's preview woke on another worker %s after the page load", time.Since(start).Round(time.Millisecond))
		if o := f.owner(t, "bob"); o != 0 {
			t.Errorf("bob's lease is worker %d's, want worker 0's (the router wakes through its queue)", o)
		}
	})

	t.Run("SIGTERM ends the worker's leases at once", func(t *testing.T) {
		w := f.workers[0]
		if f.owner(t, "bob") != 0 {
			t.Fatal("bob is not on worker 0")
		}
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
		took := wait.For(t, 5*time.Second, "bob's lease to end", func() bool { return f.owner(t, "bob") == -1 })
		t.Logf("bob's lease ended %s after SIGTERM", took.Round(time.Millisecond))
		if l := f.lease(t, "bob"); l.ClientID != "acme" || l.UserID != "bob" {
			t.Errorf("the ended item %+v lost the ids a router wakes by", l)
		}
		w.wait(30 * time.Second)
	})
}

// TestLocalFleet runs `worker local -workers 2`: two workers, a router on
// the -http port and the lease table in the embedded emulator; an init's
// previewUrl names the router, which serves alice's site from the worker
// that ran her job.
func TestLocalFleet(t *testing.T) {
	t.Parallel()
	dir := workspacetest.Reachable(t)
	httpAddr := "127.0.0.1:" + strconv.Itoa(previewtest.FreePort(t))
	local := exec.Command(workerBin, "local", "-workers", "2", "-dir", dir, "-http", httpAddr, "-aws-addr", "127.0.0.1:0")
	local.Dir = repoRoot
	local.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "NPM_CACHE_DIR=" + seededNpmCache(t),
		"ASTRO_PORT=" + strconv.Itoa(previewtest.FreePort(t)), "LOG_FORMAT=json",
		"TENANT_UIDS=" + uidRange(sandboxtest.ClaimUIDs(t)),
	}
	out, logs, _ := startLocal(t, local, 40*time.Second)
	wait.For(t, 90*time.Second, "the local fleet to say it runs", func() bool {
		return strings.Contains(out.String(), "A fleet: 2 workers")
	})
	send := exec.Command(workerBin, "send", "-local-state", filepath.Join(dir, "local.json"),
		"-type", "init", "-client", "acme", "-user", "alice", "-thread", "t1", "-job-id", "fleet-1", "-wait", "3m")
	send.Dir = repoRoot
	send.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	stdout, err := send.Output()
	if err != nil {
		t.Fatalf("worker send: %v\n%s", err, stdout)
	}
	var r jobs.Response
	if err := json.Unmarshal(stdout, &r); err != nil || r.Status != jobs.StatusSucceeded {
		t.Fatalf("init: %s", stdout)
	}
	_, port, _ := strings.Cut(httpAddr, ":")
	if want := "http://" + preview.ID("acme", "alice") + ".localhost:" + port + "/?"; !strings.HasPrefix(r.PreviewURL, want) {
		t.Fatalf("previewUrl %q, want the router's %s...", r.PreviewURL, want)
	}
	if page := openLocalPreview(t, httpAddr, r.PreviewURL); !strings.Contains(page, "Welcome to Example Site") {
		t.Errorf("alice's preview through the router shows:\n%.500s", page)
	}
	if !strings.Contains(logs.String(), `"msg":"preview lease taken"`) {
		t.Error("no worker took alice's lease")
	}
}
