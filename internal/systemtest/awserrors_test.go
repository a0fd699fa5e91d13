package systemtest

import (
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/webordinary/claude-code-astro/internal/testkit/wait"
)

// TestHealthSaysWhyTheWorkerRetries: with SQS unreachable (an error that can
// heal: nothing listens at the endpoint yet) the worker serves /health and
// says there why it is retrying; a queue that does not exist (an error that
// cannot heal) stops it at start with one line naming the variable.
func TestHealthSaysWhyTheWorkerRetries(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there: connection refused
	p := h.start(map[string]string{"AWS_ENDPOINT_URL": closed})
	var body map[string]any
	wait.For(t, 30*time.Second, "/health to say why the worker retries", func() bool {
		_, body = p.health()
		why, _ := body["retrying"].(string)
		return strings.Contains(why, "JOB_QUEUE_URL") && strings.Contains(why, "refused")
	})
	if code, _ := p.stop(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("worker exited %d after SIGTERM", code)
	}

	jobQ := h.env["JOB_QUEUE_URL"]
	missing := h.launch(map[string]string{"JOB_QUEUE_URL": jobQ[:strings.LastIndex(jobQ, "/")+1] + "no-such-queue.fifo"})
	code := missing.wait(30 * time.Second)
	text := strings.TrimSpace(missing.logs.String())
	last := text[strings.LastIndex(text, "\n")+1:]
	if code != 1 || !strings.Contains(last, "JOB_QUEUE_URL") || !strings.Contains(last, "does not exist") {
		t.Errorf("a missing queue: exit %d, last line %q; want 1 and one line naming JOB_QUEUE_URL", code, last)
	}
}
