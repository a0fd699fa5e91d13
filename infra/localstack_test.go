package infra

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// initHook is the LocalStack ready hook, relative to the repository root.
const initHook = "infra/localstack/init/ready.d/10-worker-queues.sh"

// shellLines returns a shell script's lines with backslash continuations
// joined and comments dropped.
func shellLines(script string) []string {
	joined := strings.ReplaceAll(script, "\\\n", " ")
	var out []string
	for line := range strings.SplitSeq(joined, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	return out
}

// composeQueueNames returns the queue names at the end of the worker's queue URLs.
func composeQueueNames(tb testing.TB) (job, response string) {
	tb.Helper()
	w := service(tb, loadCompose(tb, map[string]string{}), composeWorker)
	name := func(key string) string {
		u, err := url.Parse(envValue(w, key))
		if err != nil {
			tb.Fatalf("worker %s: %v", key, err)
		}
		return path.Base(u.Path)
	}
	return name("JOB_QUEUE_URL"), name("RESPONSE_QUEUE_URL")
}

// composeSecretIDs returns the Secrets Manager ids the compose file gives the worker.
func composeSecretIDs(tb testing.TB) []string {
	tb.Helper()
	w := service(tb, loadCompose(tb, map[string]string{}), composeWorker)
	var ids []string
	for key := range w.Environment {
		if strings.HasSuffix(key, "_SECRET_ID") {
			id, _, _ := strings.Cut(envValue(w, key), "#") // id#jsonKey names the secret id
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// TestInitHookMatchesCompose reads the hook's text: the queues it creates with
// `create-queue --queue-name X` are the worker's queues (plus their
// dead-letter queues), and the secrets it creates are the worker's secret ids.
func TestInitHookMatchesCompose(t *testing.T) {
	lines := shellLines(string(readRepoFile(t, initHook)))
	queueRE := regexp.MustCompile(`\bcreate-queue\s+--queue-name\s+(\S+)`)
	secretRE := regexp.MustCompile(`^put_secret\s+(\S+)\s`)
	dlqRE := regexp.MustCompile(`arn:aws:sqs:[^:"]+:[^:"]+:([A-Za-z0-9_.-]+)`) // the dead-letter queue's ARN
	var queues, secrets, dlqs []string
	for _, line := range lines {
		if m := queueRE.FindStringSubmatch(line); m != nil {
			queues = append(queues, m[1])
		}
		if m := secretRE.FindStringSubmatch(line); m != nil {
			secrets = append(secrets, m[1])
		}
		if m := dlqRE.FindStringSubmatch(line); m != nil {
			dlqs = append(dlqs, m[1])
		}
	}

	job, response := composeQueueNames(t)
	want := append([]string{job, response}, dlqs...)
	slices.Sort(want)
	slices.Sort(queues)
	if !slices.Equal(queues, want) {
		t.Errorf("init hook creates queues %q, want the worker's %s and %s plus dead-letter queues %q", queues, job, response, dlqs)
	}
	if len(dlqs) == 0 {
		t.Error("init hook sets no dead-letter queue (deadLetterTargetArn)")
	}
	slices.Sort(secrets)
	if ids := composeSecretIDs(t); !slices.Equal(secrets, ids) {
		t.Errorf("init hook creates secrets %q, worker is given %q", secrets, ids)
	}
}

// awsCall is one recorded invocation of awslocal by the init hook.
type awsCall []string

// flag returns the value after a --flag in the call, "" when absent.
func (c awsCall) flag(name string) string {
	if i := slices.Index(c, name); i >= 0 && i+1 < len(c) {
		return c[i+1]
	}
	return ""
}

// recorder is an awslocal stand-in that records its arguments, one per line,
// each call ended by a line "--end--". describe-secret fails (the secret does
// not exist) unless SECRETS_EXIST=1, describe-table unless TABLE_EXISTS=1. LocalStack's own awslocal is in its image,
// not here: this checks what the hook asks for, with real shell quoting.
const recorder = `#!/bin/sh
for a in "$@"; do printf 'arg:%s\n' "$a"; done >>"$AWSLOCAL_LOG"
echo -- --end-- >>"$AWSLOCAL_LOG"
case "$2" in describe-secret) [ "${SECRETS_EXIST:-0}" = 1 ] || exit 254 ;; describe-table) [ "${TABLE_EXISTS:-0}" = 1 ] || exit 254 ;; esac
exit 0
`

// runInitHook runs the hook with /bin/sh and the recorder as awslocal, and
// returns the calls it made and whether it wrote its ready marker.
func runInitHook(t *testing.T, extraEnv ...string) (calls []awsCall, ready bool) {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("no sh on PATH (install dash or bash): %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "awslocal"), []byte(recorder), 0o755); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "calls.log")
	marker := filepath.Join(dir, "ready")
	cmd := exec.Command(sh, filepath.Join(repoRoot(t), initHook))
	cmd.Env = append([]string{
		"PATH=" + bin + ":/usr/local/bin:/usr/bin:/bin",
		"HOME=" + dir,
		"AWSLOCAL_LOG=" + logFile,
		"WORKER_INIT_MARKER=" + marker,
		"AWS_DEFAULT_REGION=us-east-1",
	}, extraEnv...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("run %s: %v\n%s", initHook, err, out)
	}
	data, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatalf("read awslocal calls: %v", err)
	}
	var cur awsCall
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "-- --end--" {
			calls = append(calls, cur)
			cur = nil
			continue
		}
		cur = append(cur, strings.TrimPrefix(line, "arg:"))
	}
	_, err = os.Stat(marker)
	return calls, err == nil
}

// TestInitHookRun runs the hook and checks the queues' attributes (valid JSON,
// FIFO, deduplication, a redrive policy to a queue it creates) and the secrets.
func TestInitHookRun(t *testing.T) {
	calls, ready := runInitHook(t, "ANTHROPIC_API_KEY=sk-ant-test-value")
	if !ready {
		t.Error("init hook did not write its ready marker: compose's healthcheck would never pass")
	}
	job, response := composeQueueNames(t)

	attrs := map[string]map[string]string{}
	secrets := map[string]string{}
	for _, c := range calls {
		if len(c) < 2 {
			t.Fatalf("awslocal call %q", c)
		}
		switch c[0] + " " + c[1] {
		case "sqs create-queue":
			a := map[string]string{}
			if s := c.flag("--attributes"); s != "" {
				if err := json.Unmarshal([]byte(s), &a); err != nil {
					t.Fatalf("create-queue %s: --attributes is not a JSON object of strings: %v\n%s", c.flag("--queue-name"), err, s)
				}
			}
			attrs[c.flag("--queue-name")] = a
		case "secretsmanager create-secret":
			secrets[c.flag("--name")] = c.flag("--secret-string")
		}
	}

	for _, q := range []string{job, response} {
		a, ok := attrs[q]
		if !ok {
			t.Errorf("queue %s not created", q)
			continue
		}
		if a["FifoQueue"] != "true" {
			t.Errorf("queue %s: FifoQueue = %q, want true", q, a["FifoQueue"])
		}
	}
	if a := attrs[job]; a["ContentBasedDeduplication"] != "true" {
		t.Errorf("job queue: ContentBasedDeduplication = %q, want true", a["ContentBasedDeduplication"])
	}
	var redrive struct {
		DeadLetterTargetArn string `json:"deadLetterTargetArn"`
		MaxReceiveCount     string `json:"maxReceiveCount"`
	}
	if err := json.Unmarshal([]byte(attrs[job]["RedrivePolicy"]), &redrive); err != nil {
		t.Fatalf("job queue: RedrivePolicy %q: %v", attrs[job]["RedrivePolicy"], err)
	}
	if n, err := strconv.Atoi(redrive.MaxReceiveCount); err != nil || n < 1 {
		t.Errorf("job queue: maxReceiveCount = %q, want a positive number", redrive.MaxReceiveCount)
	}
	dlq := redrive.DeadLetterTargetArn[strings.LastIndex(redrive.DeadLetterTargetArn, ":")+1:]
	if a, ok := attrs[dlq]; !ok || a["FifoQueue"] != "true" {
		t.Errorf("job queue's dead-letter queue %q (%s) is not a FIFO queue the hook creates", dlq, redrive.DeadLetterTargetArn)
	}
	if want := "arn:aws:sqs:us-east-1:000000000000:" + dlq; redrive.DeadLetterTargetArn != want {
		t.Errorf("deadLetterTargetArn = %q, want %q", redrive.DeadLetterTargetArn, want)
	}

	ids := composeSecretIDs(t)
	for _, id := range ids {
		if _, ok := secrets[id]; !ok {
			t.Errorf("secret %s (given to the worker) not created", id)
		}
	}
	if got := secrets["worker/anthropic-api-key"]; got != "sk-ant-test-value" {
		t.Errorf("secret worker/anthropic-api-key = %q, want the ANTHROPIC_API_KEY given to LocalStack", got)
	}
}

// TestInitHookRerun checks the hook on a second start: existing secrets get a
// new value instead of a failing create-secret.
func TestInitHookRerun(t *testing.T) {
	calls, ready := runInitHook(t, "SECRETS_EXIST=1")
	if !ready {
		t.Error("init hook did not write its ready marker")
	}
	var put []string
	for _, c := range calls {
		switch c[0] + " " + c[1] {
		case "secretsmanager create-secret":
			t.Errorf("create-secret %s on a secret that exists", c.flag("--name"))
		case "secretsmanager put-secret-value":
			put = append(put, c.flag("--secret-id"))
		}
	}
	slices.Sort(put)
	if ids := composeSecretIDs(t); !slices.Equal(put, ids) {
		t.Errorf("put-secret-value on %q, want %q", put, ids)
	}
}

// TestComposeLocalStackMatchesHook checks the compose side of the hook: the
// healthcheck waits for the hook's marker, and LocalStack's region (which the
// hook puts into the dead-letter ARN) is the worker's.
func TestComposeLocalStackMatchesHook(t *testing.T) {
	p := loadCompose(t, map[string]string{})
	ls := service(t, p, composeLocalStack)
	w := service(t, p, composeWorker)
	m := regexp.MustCompile(`WORKER_INIT_MARKER:-([^}]+)\}`).FindStringSubmatch(string(readRepoFile(t, initHook)))
	if m == nil {
		t.Fatal("init hook has no default WORKER_INIT_MARKER")
	}
	if ls.HealthCheck == nil || !strings.Contains(strings.Join(ls.HealthCheck.Test, " "), m[1]) {
		t.Errorf("localstack healthcheck does not wait for the hook's marker %s", m[1])
	}
	if a, b := envValue(ls, "AWS_DEFAULT_REGION"), envValue(w, "AWS_REGION"); a != b {
		t.Errorf("localstack AWS_DEFAULT_REGION = %q, worker AWS_REGION = %q", a, b)
	}
}

// TestInitHookLeaseTable checks the lease table the hook creates is the one
// the worker and the router are given, keyed and expiring as the stack's.
func TestInitHookLeaseTable(t *testing.T) {
	p := loadCompose(t, map[string]string{})
	want := envValue(service(t, p, composeWorker), "LEASE_TABLE")
	if r := envValue(service(t, p, "router"), "LEASE_TABLE"); r != want || want == "" {
		t.Fatalf("LEASE_TABLE: worker %q, router %q: want one table", want, r)
	}
	calls, _ := runInitHook(t)
	var created, ttl awsCall
	for _, c := range calls {
		switch c[0] + " " + c[1] {
		case "dynamodb create-table":
			created = c
		case "dynamodb update-time-to-live":
			ttl = c
		}
	}
	if created.flag("--table-name") != want || created.flag("--key-schema") != "AttributeName=preview,KeyType=HASH" {
		t.Errorf("create-table %q, want %s keyed on preview", created, want)
	}
	if ttl.flag("--table-name") != want || !strings.Contains(ttl.flag("--time-to-live-specification"), "AttributeName=expiresAt") {
		t.Errorf("update-time-to-live %q, want TTL on expiresAt", ttl)
	}
	calls, _ = runInitHook(t, "TABLE_EXISTS=1")
	for _, c := range calls {
		if c[0]+" "+c[1] == "dynamodb create-table" {
			t.Error("create-table on a table that exists")
		}
	}
}
