package systemtest

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/webordinary/claude-code-astro/jobs"
)

// quickAgent is a scripted stand-in for the Claude Code CLI, for the soak:
// it speaks the CLI's stream-json, keeps a session file where the CLI would,
// and appends the instruction to soak.txt in the project. Test code only.
const quickAgent = `#!/bin/bash
sid=""
while [ $# -gt 0 ]; do
  case "$1" in --session-id|--resume) sid="$2"; shift ;; esac
  shift
done
instruction=$(cat)
dir="$CLAUDE_CONFIG_DIR/projects/$(pwd | sed 's/[^A-Za-z0-9]/-/g')"
mkdir -p "$dir" && echo '{"type":"summary"}' >> "$dir/$sid.jsonl"
printf '%s\n' "$instruction" >> soak.txt
printf '{"type":"system","subtype":"init","session_id":"%s","tools":["Edit"],"model":"scripted"}\n' "$sid"
printf '{"type":"assistant","message":{"content":[{"type":"tool_use","id":"t1","name":"Edit","input":{"file_path":"%s/soak.txt"}}]},"session_id":"%s"}\n' "$(pwd)" "$sid"
printf '{"type":"result","subtype":"success","is_error":false,"num_turns":1,"duration_ms":3,"total_cost_usd":0.001,"result":"appended","session_id":"%s"}\n' "$sid"
`

// rss returns a process's resident set in KiB.
func rss(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatalf("read the worker's status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestSoakWithCrashes sends 200 jobs across 10 users to a worker running a
// quick scripted agent, kills the worker with SIGKILL twice along the way and
// starts it again. In the end every job has exactly one final response, each
// user's responses follow the send order, no job committed twice, no process
// is left, and the last worker's memory did not grow.
func TestSoakWithCrashes(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOptions{visibility: 5 * time.Second})
	agentBin := filepath.Join(t.TempDir(), "quick-claude")
	if err := os.WriteFile(agentBin, []byte(quickAgent), 0o755); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CLAUDE_BIN": agentBin, "MAX_CONCURRENT_USERS": "4", "LOG_LEVEL": "info", "JOB_TIMEOUT": "60s"}
	p := h.start(env)

	// Each user sends its next job when the previous one is answered, as a
	// chat front end does. (With several jobs of one user queued, a crash
	// makes kumo hand the survivors back in random order, which SQS FIFO
	// never does; the worker's own ordering is tested with queued jobs in
	// worker.TestPerUserOrderAndParallelUsers and the end-to-end test.)
	const users, perUser = 10, 20
	sent := map[string][]string{}
	next := map[string]int{}
	sendNext := func(user string) {
		round := next[user]
		if round >= perUser {
			return
		}
		next[user]++
		thread := []string{"x", "y"}[round%2]
		id := fmt.Sprintf("%s-%02d", user, round)
		if round < 2 {
			h.send(initJob(id, user, thread))
		} else {
			h.send(execJob(id, user, thread, "soak job "+id))
		}
		sent[user] = append(sent[user], id)
	}
	for u := range users {
		sendNext(fmt.Sprintf("soak%02d", u))
	}

	// Collect responses. A worker killed between sending a final response
	// and recording that it did sends it again after the restart, with the
	// same MessageDeduplicationId (jobId:status): SQS FIFO drops such a copy,
	// kumo only while the first is still queued. The test drops them as SQS
	// would, checks each is identical to the first, and counts them.
	finals := map[string][]jobs.Response{}
	order := map[string][]string{}
	duplicates := 0
	var durations []int64
	count := func() int { return len(finals) }
	poll := func() {
		out, err := h.respQ.Client.ReceiveMessage(t.Context(), &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(h.respQ.URL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
		})
		if err != nil {
			t.Fatalf("receive responses: %v", err)
		}
		for _, m := range out.Messages {
			h.respQ.Client.DeleteMessage(t.Context(), &sqs.DeleteMessageInput{QueueUrl: aws.String(h.respQ.URL), ReceiptHandle: m.ReceiptHandle})
			var r jobs.Response
			if err := jsonUnmarshal(aws.ToString(m.Body), &r); err != nil {
				t.Fatalf("response: %v", err)
			}
			if r.Status == jobs.StatusProgress {
				continue
			}
			if prev := finals[r.JobID]; len(prev) > 0 {
				duplicates++
				if prev[0].Status != r.Status || prev[0].Commit != r.Commit || prev[0].FinishedAt != r.FinishedAt {
					t.Errorf("job %s answered twice, differently: %+v then %+v", r.JobID, prev[0], r)
				}
				continue
			}
			finals[r.JobID] = append(finals[r.JobID], r)
			order[r.UserID] = append(order[r.UserID], r.JobID)
			durations = append(durations, r.DurationMs)
			sendNext(r.UserID)
		}
	}
	waitCount := func(n int, limit time.Duration) {
		deadline := time.Now().Add(limit)
		for count() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d final responses after %s, want %d", count(), limit, n)
			}
			poll()
		}
	}

	for _, at := range []int{60, 130} {
		waitCount(at, 5*time.Minute)
		if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-p.done
		t.Logf("killed the worker with SIGKILL after %d final responses", count())
		p = h.start(env)
	}
	warmAt := min(count()+20, users*perUser-10)
	waitCount(warmAt, 5*time.Minute)
	warm := rss(t, p.cmd.Process.Pid)
	waitCount(users*perUser, 5*time.Minute)
	end := rss(t, p.cmd.Process.Pid)
	t.Logf("worker RSS after warm-up (%d responses): %d KiB; at the end: %d KiB", warmAt, warm, end)
	sort.Slice(durations, func(i, j int) bool { return durations[i] < durations[j] })
	t.Logf("job durations: median %d ms, p95 %d ms", durations[len(durations)/2], durations[len(durations)*95/100])
	t.Logf("repeated final responses (same deduplication id, dropped by SQS FIFO): %d", duplicates)
	if duplicates > 2*4 {
		t.Errorf("%d repeated final responses: more than the jobs in flight at the two kills", duplicates)
	}
	if end > warm*12/10 {
		t.Errorf("RSS grew more than 20%%: %d KiB -> %d KiB", warm, end)
	}

	// Exactly one final response per job, all succeeded, in send order.
	for user, ids := range sent {
		if strings.Join(order[user], ",") != strings.Join(ids, ",") {
			t.Errorf("%s: responses %v, sent %v", user, order[user], ids)
		}
		for _, id := range ids {
			if n := len(finals[id]); n != 1 {
				t.Errorf("job %s: %d final responses", id, n)
			} else if finals[id][0].Status != jobs.StatusSucceeded {
				t.Errorf("job %s: %+v", id, finals[id][0].Error)
			}
		}
	}
	// No job committed twice: each execute's Job-Id trailer appears once on
	// its thread branch in the remote.
	commits := map[string]int{}
	branches := h.git.Run(h.remote.Dir, "for-each-ref", "--format=%(refname:short)", "refs/heads/")
	for _, br := range strings.Fields(branches) {
		if !strings.HasPrefix(br, "thread-") {
			continue
		}
		log := h.git.Run(h.remote.Dir, "log", "--format=%(trailers:key=Job-Id,valueonly)", "main.."+br)
		for _, id := range strings.Fields(log) {
			commits[br+" "+id]++
		}
	}
	var twice []string
	for k, n := range commits {
		if n > 1 {
			twice = append(twice, k)
		}
	}
	sort.Strings(twice)
	if len(twice) > 0 {
		t.Errorf("jobs committed more than once: %v", twice)
	}
	if code, _ := p.stop(syscall.SIGTERM, 25*time.Second); code != 0 {
		t.Errorf("exit code %d", code)
	}
	waitNoProcesses(t, h.root)
}
