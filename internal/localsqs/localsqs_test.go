package localsqs

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

func client(url string) *sqs.Client {
	return sqs.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("t", "t", "")},
		func(o *sqs.Options) { o.BaseEndpoint = aws.String(url) })
}

func startTB(t *testing.T) *Server {
	t.Helper()
	s, err := Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestUnlockedGroupWakesWaitingPoll: a long poll waiting on a FIFO queue
// gets the group's next message when the one in flight is deleted, as on
// SQS (bare kumo would return nothing when its poll runs out).
func TestUnlockedGroupWakesWaitingPoll(t *testing.T) {
	s := startTB(t)
	c := client(s.URL)
	ctx := context.Background()
	q, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("localsqs-wake.fifo"), Attributes: map[string]string{"FifoQueue": "true"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"first", "second"} {
		if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String(body),
			MessageGroupId: aws.String("g"), MessageDeduplicationId: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
	}
	first, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, MaxNumberOfMessages: 1})
	if err != nil || len(first.Messages) != 1 || aws.ToString(first.Messages[0].Body) != "first" {
		t.Fatalf("first receive: %v %+v", err, first)
	}
	got := make(chan *sqs.ReceiveMessageOutput, 1)
	go func() {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, MaxNumberOfMessages: 1, WaitTimeSeconds: 20})
		if err != nil {
			t.Error(err)
		}
		got <- out
	}()
	if _, err := c.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: q.QueueUrl, ReceiptHandle: first.Messages[0].ReceiptHandle}); err != nil {
		t.Fatal(err)
	}
	out := <-got
	if out == nil || len(out.Messages) != 1 || aws.ToString(out.Messages[0].Body) != "second" {
		t.Errorf("the waiting poll got %+v, want the group's second message", out)
	}
}

// TestNudgesAreNeverDelivered: a due nudge is taken out of the receive that
// returns it, and deleted.
func TestNudgesAreNeverDelivered(t *testing.T) {
	s := startTB(t)
	c := client(s.URL)
	ctx := context.Background()
	q, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("localsqs-drop")})
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{nudgeBody, "real job", nudgeBody} {
		if _, err := s.direct.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String(body)}); err != nil {
			t.Fatal(err)
		}
	}
	out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, MaxNumberOfMessages: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Messages) != 1 || aws.ToString(out.Messages[0].Body) != "real job" {
		t.Fatalf("receive returned %+v, want only the real job", out.Messages)
	}
	attrs, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: q.QueueUrl, AttributeNames: []types.QueueAttributeName{"All"}})
	if err != nil {
		t.Fatal(err)
	}
	if n := attrs.Attributes["ApproximateNumberOfMessagesNotVisible"]; n != "1" {
		t.Errorf("%s messages in flight, want 1 (the real job; the nudges deleted)", n)
	}
}

// TestFIFOMessagesCarryGroupAndSequence: a received FIFO message has its
// MessageGroupId and SequenceNumber among its attributes, as on SQS, for a
// single send and a batch send alike.
func TestFIFOMessagesCarryGroupAndSequence(t *testing.T) {
	s := startTB(t)
	c := client(s.URL)
	ctx := context.Background()
	q, err := c.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("localsqs-attrs.fifo"), Attributes: map[string]string{"FifoQueue": "true"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: q.QueueUrl, MessageBody: aws.String("one"),
		MessageGroupId: aws.String("acme/alice"), MessageDeduplicationId: aws.String("one")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: q.QueueUrl, Entries: []types.SendMessageBatchRequestEntry{
		{Id: aws.String("b"), MessageBody: aws.String("two"), MessageGroupId: aws.String("acme/bob"), MessageDeduplicationId: aws.String("two")},
	}}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"one": "acme/alice", "two": "acme/bob"}
	got := map[string]string{}
	for len(got) < len(want) {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll}})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) == 0 {
			t.Fatalf("received %v, want %v", got, want)
		}
		for _, m := range out.Messages {
			got[aws.ToString(m.Body)] = m.Attributes["MessageGroupId"]
			if m.Attributes["SequenceNumber"] == "" {
				t.Errorf("message %q has no SequenceNumber attribute: %v", aws.ToString(m.Body), m.Attributes)
			}
		}
	}
	for body, g := range want {
		if got[body] != g {
			t.Errorf("message %q in group %q, want %q", body, got[body], g)
		}
	}
}
