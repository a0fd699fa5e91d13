package infra

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/webordinary/claude-code-astro/internal/testkit/sqstest"
)

// awslocalWrapper stands in for LocalStack's awslocal: the real AWS CLI with
// the endpoint of the in-process emulator.
const awslocalWrapper = `#!/bin/sh
exec "$AWS_CLI" --endpoint-url "$AWS_EMULATOR_URL" --region us-east-1 --output json "$@"
`

// TestInitHookAgainstEmulator runs the LocalStack hook with the real AWS CLI
// against the in-process AWS emulator (kumo), twice as on a restart, and then
// checks with the Go SDK, as the worker would, that the queues, the redrive
// to the dead-letter queue and the secrets exist.
func TestInitHookAgainstEmulator(t *testing.T) {
	awsCLI, err := exec.LookPath("aws")
	if err != nil {
		t.Fatalf("no aws on PATH: install the AWS CLI (pip install awscli, or apt-get install awscli): %v", err)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatalf("no sh on PATH (install dash or bash): %v", err)
	}
	emu := sqstest.Start(t)

	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "awslocal"), []byte(awslocalWrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(dir, "ready")
	run := func() {
		t.Helper()
		cmd := exec.Command(sh, filepath.Join(repoRoot(t), initHook))
		cmd.Env = []string{
			"PATH=" + bin + ":" + filepath.Dir(awsCLI) + ":/usr/local/bin:/usr/bin:/bin",
			"HOME=" + dir,
			"AWS_CLI=" + awsCLI,
			"AWS_EMULATOR_URL=" + emu.URL,
			"AWS_ACCESS_KEY_ID=test",
			"AWS_SECRET_ACCESS_KEY=test",
			"AWS_CONFIG_FILE=" + filepath.Join(dir, "no-aws-config"),
			"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "no-aws-credentials"),
			"AWS_DEFAULT_REGION=us-east-1",
			"WORKER_INIT_MARKER=" + marker,
			"ANTHROPIC_API_KEY=sk-ant-emulated",
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("run %s against the emulator: %v\n%s", initHook, err, out)
		}
		if _, err := os.Stat(marker); err != nil {
			t.Fatalf("hook wrote no ready marker: %v", err)
		}
	}
	run()
	run() // a restart of LocalStack's container runs the hook again

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	q := emu.SQS()
	job, response := composeQueueNames(t)
	urls := map[string]string{}
	for _, name := range []string{job, response} {
		out, err := q.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
		if err != nil {
			t.Fatalf("queue %s: %v", name, err)
		}
		urls[name] = aws.ToString(out.QueueUrl)
	}
	attrs, err := q.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(urls[job]),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll},
	})
	if err != nil {
		t.Fatalf("job queue attributes: %v", err)
	}
	if a := attrs.Attributes; a["FifoQueue"] != "true" || a["ContentBasedDeduplication"] != "true" {
		t.Errorf("job queue: FifoQueue %q, ContentBasedDeduplication %q", a["FifoQueue"], a["ContentBasedDeduplication"])
	}
	var redrive struct {
		DeadLetterTargetArn string `json:"deadLetterTargetArn"`
		MaxReceiveCount     any    `json:"maxReceiveCount"`
	}
	if err := json.Unmarshal([]byte(attrs.Attributes["RedrivePolicy"]), &redrive); err != nil {
		t.Fatalf("job queue RedrivePolicy %q: %v", attrs.Attributes["RedrivePolicy"], err)
	}
	maxReceives, err := strconv.Atoi(fmtAny(redrive.MaxReceiveCount))
	if err != nil || maxReceives < 1 {
		t.Fatalf("job queue maxReceiveCount %v", redrive.MaxReceiveCount)
	}
	dlqName := redrive.DeadLetterTargetArn[strings.LastIndex(redrive.DeadLetterTargetArn, ":")+1:]
	dlq, err := q.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(dlqName)})
	if err != nil {
		t.Fatalf("dead-letter queue %s (%s): %v", dlqName, redrive.DeadLetterTargetArn, err)
	}

	// A job that is received and given back maxReceiveCount times goes to the dead-letter queue.
	body := `{"type":"init","clientId":"acme","userId":"alice","threadId":"t1"}`
	if _, err := q.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl: aws.String(urls[job]), MessageBody: aws.String(body), MessageGroupId: aws.String("acme/alice"),
	}); err != nil {
		t.Fatalf("send to the job queue (content-based deduplication, no dedup id): %v", err)
	}
	for i := 0; i < maxReceives; i++ {
		out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(urls[job]), WaitTimeSeconds: 5})
		if err != nil || len(out.Messages) != 1 {
			t.Fatalf("receive %d from the job queue: %v, %d messages", i+1, err, len(out.Messages))
		}
		if _, err := q.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
			QueueUrl: aws.String(urls[job]), ReceiptHandle: out.Messages[0].ReceiptHandle, VisibilityTimeout: 0,
		}); err != nil {
			t.Fatalf("give back message %d: %v", i+1, err)
		}
	}
	var moved bool
	for deadline := time.Now().Add(30 * time.Second); !moved && time.Now().Before(deadline); {
		// The receive past maxReceiveCount is what moves it.
		if _, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(urls[job]), WaitTimeSeconds: 1}); err != nil {
			t.Fatalf("receive from the job queue: %v", err)
		}
		out, err := q.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: dlq.QueueUrl, WaitTimeSeconds: 1})
		if err != nil {
			t.Fatalf("receive from the dead-letter queue: %v", err)
		}
		moved = len(out.Messages) == 1 && aws.ToString(out.Messages[0].Body) == body
	}
	if !moved {
		t.Errorf("the job was not moved to %s after %d receives", dlqName, maxReceives)
	}

	sm := secretsmanager.NewFromConfig(sqstest.AWSConfig(), func(o *secretsmanager.Options) { o.BaseEndpoint = aws.String(emu.URL) })
	for _, id := range composeSecretIDs(t) {
		out, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
		if err != nil {
			t.Errorf("secret %s: %v", id, err)
			continue
		}
		if id == "worker/anthropic-api-key" && aws.ToString(out.SecretString) != "sk-ant-emulated" {
			t.Errorf("secret %s does not hold the ANTHROPIC_API_KEY given to the hook", id)
		}
	}
}

// fmtAny formats a JSON number or string as a string.
func fmtAny(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return ""
}
