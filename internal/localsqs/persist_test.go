package localsqs

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// TestPersistKeepsUndeletedMessagesAcrossARestart: messages sent and not
// deleted (a job waiting, an answer not yet read) are on the queue again,
// in order and with their FIFO group, after the emulator starts afresh;
// a deleted one is not.
func TestPersistKeepsUndeletedMessagesAcrossARestart(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "queues.json")
	attrs := map[string]string{"FifoQueue": "true"}

	first := startTB(t)
	c := client(first.URL)
	q, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("localsqs-persist.fifo"), Attributes: attrs})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := first.Persist(ctx, path); err != nil || n != 0 {
		t.Fatalf("Persist on a new file: %d, %v", n, err)
	}
	for _, body := range []string{"answered", "waiting"} {
		if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String(body),
			MessageGroupId: aws.String("acme/alice"), MessageDeduplicationId: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: q.QueueUrl, Entries: []types.SendMessageBatchRequestEntry{
		{Id: aws.String("b1"), MessageBody: aws.String("batched"), MessageGroupId: aws.String("acme/bob"), MessageDeduplicationId: aws.String("b1")},
	}}); err != nil {
		t.Fatal(err)
	}
	got, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, MaxNumberOfMessages: 1})
	if err != nil || len(got.Messages) != 1 || aws.ToString(got.Messages[0].Body) != "answered" {
		t.Fatalf("receive: %v %+v", err, got)
	}
	if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: q.QueueUrl, ReceiptHandle: got.Messages[0].ReceiptHandle}); err != nil {
		t.Fatal(err)
	}
	first.Close()

	// A new process starts with an empty emulator: kumo's store is one per
	// process, so the test empties the queue as a new process would find it.
	second := startTB(t)
	c = client(second.URL)
	if _, err := c.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: q.QueueUrl}); err != nil {
		t.Fatal(err)
	}
	if q, err = c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("localsqs-persist.fifo"), Attributes: attrs}); err != nil {
		t.Fatal(err)
	}
	n, err := second.Persist(ctx, path)
	if err != nil || n != 2 {
		t.Fatalf("Persist after the restart restored %d messages (%v), want 2", n, err)
	}
	var bodies []string
	groups := map[string]string{}
	for len(bodies) < 2 {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 5,
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll}})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			t.Fatalf("after the restart the queue holds only %v", bodies)
		}
		for _, m := range out.Messages {
			bodies = append(bodies, aws.ToString(m.Body))
			groups[aws.ToString(m.Body)] = m.Attributes["MessageGroupId"]
			if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: q.QueueUrl, ReceiptHandle: m.ReceiptHandle}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(bodies) != 2 || groups["waiting"] != "acme/alice" || groups["batched"] != "acme/bob" {
		t.Errorf("after the restart: %v with groups %v; want waiting and batched, in their groups", bodies, groups)
	}
	// Deleted now: a third start finds nothing to restore.
	second.Close()
	third := startTB(t)
	if n, err := third.Persist(ctx, path); err != nil || n != 0 {
		t.Errorf("a third start restored %d messages (%v), want 0", n, err)
	}
}
