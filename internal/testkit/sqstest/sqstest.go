// Package sqstest runs the in-process AWS emulator (kumo) for tests and gives
// them SQS queues, Secrets Manager secrets, ECS tasks and clients. It is test code: nothing in the product path
// imports it.
package sqstest

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	ecstypes "github.com/aws/aws-sdk-go-v2/service/ecs/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/webordinary/claude-code-astro/internal/localsqs"
	"github.com/webordinary/claude-code-astro/jobs"
)

// Emulator is a running kumo server, behind localsqs's front (which wakes
// waiting long polls the way SQS does).
type Emulator struct {
	URL string
	srv *localsqs.Server
}

// starting serialises the emulators' start: kumo wires its services into
// the one store of the process as each server starts, without a lock, so
// tests running in parallel start theirs one at a time.
var starting sync.Mutex

// Start runs an emulator for the test's lifetime. kumo keeps its state in one
// store per process, shared by every server: give each test its own queue
// names.
func Start(tb testing.TB) *Emulator {
	tb.Helper()
	starting.Lock()
	srv, err := localsqs.Start("127.0.0.1:0")
	starting.Unlock()
	if err != nil {
		tb.Fatalf("start the AWS emulator: %v", err)
	}
	tb.Cleanup(srv.Close)
	return &Emulator{URL: srv.URL, srv: srv}
}

// AWSConfig returns an SDK config with static test credentials, pointed at
// nothing in particular: clients set BaseEndpoint.
func AWSConfig() aws.Config {
	return aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
	}
}

// SQS returns a client for the emulator.
func (e *Emulator) SQS() *sqs.Client {
	return sqs.NewFromConfig(AWSConfig(), func(o *sqs.Options) { o.BaseEndpoint = aws.String(e.URL) })
}

// Queue is a queue created for a test.
type Queue struct {
	URL    string
	Client *sqs.Client
}

// QueueOptions set a new queue's attributes.
type QueueOptions struct {
	FIFO              bool
	VisibilityTimeout time.Duration // default 30s
	// Attributes are further queue attributes, such as RedrivePolicy.
	Attributes map[string]string
}

// CreateQueue creates a queue named name (".fifo" is added for FIFO).
func (e *Emulator) CreateQueue(tb testing.TB, name string, opt QueueOptions) Queue {
	tb.Helper()
	c := e.SQS()
	attrs := map[string]string{}
	if opt.FIFO {
		name += ".fifo"
		attrs["FifoQueue"] = "true"
	}
	if opt.VisibilityTimeout > 0 {
		attrs["VisibilityTimeout"] = strconv.Itoa(int(opt.VisibilityTimeout / time.Second))
	}
	for k, v := range opt.Attributes {
		attrs[k] = v
	}
	out, err := c.CreateQueue(context.Background(), &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		tb.Fatalf("create queue %s: %v", name, err)
	}
	// kumo's queue URLs say localhost:4566 whatever its port; the SDK sends
	// requests to BaseEndpoint, so the URL only names the queue.
	return Queue{URL: aws.ToString(out.QueueUrl), Client: c}
}

// ARN returns the queue's ARN.
func (q Queue) ARN(tb testing.TB) string {
	tb.Helper()
	out, err := q.Client.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(q.URL), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		tb.Fatalf("queue ARN: %v", err)
	}
	return out.Attributes[string(types.QueueAttributeNameQueueArn)]
}

// SendJob puts a job on the queue, as upstream does: on a FIFO queue the
// group is clientId/userId (clientId/userId/control for a cancel) and the
// dedup id the job id.
func (q Queue) SendJob(tb testing.TB, job jobs.Job) string {
	tb.Helper()
	body, err := json.Marshal(job)
	if err != nil {
		tb.Fatal(err)
	}
	group := job.ClientID + "/" + job.UserID
	if job.Type == jobs.TypeCancel {
		group += jobs.ControlGroupSuffix // as upstream sends it: never behind the job it stops
	}
	return q.SendRaw(tb, string(body), group, job.JobID)
}

// SendRaw puts a raw body on the queue; group and dedup are used on FIFO queues.
func (q Queue) SendRaw(tb testing.TB, body, group, dedup string) string {
	tb.Helper()
	in := &sqs.SendMessageInput{QueueUrl: aws.String(q.URL), MessageBody: aws.String(body)}
	if len(q.URL) > 5 && q.URL[len(q.URL)-5:] == ".fifo" {
		in.MessageGroupId = aws.String(group)
		if dedup == "" {
			dedup = strconv.FormatInt(time.Now().UnixNano(), 36)
		}
		in.MessageDeduplicationId = aws.String(dedup)
	}
	out, err := q.Client.SendMessage(context.Background(), in)
	if err != nil {
		tb.Fatalf("send message: %v", err)
	}
	return aws.ToString(out.MessageId)
}

// Responses collects response messages from a queue, deleting them.
type Responses struct {
	q   Queue
	All []jobs.Response
	// Groups holds the FIFO group of each response in All ("" on a
	// standard queue).
	Groups []string
}

// NewResponses reads responses from q.
func NewResponses(q Queue) *Responses { return &Responses{q: q} }

// Final returns the final (not progress) responses collected so far.
func (r *Responses) Final() []jobs.Response {
	var out []jobs.Response
	for _, resp := range r.All {
		if resp.Status != jobs.StatusProgress {
			out = append(out, resp)
		}
	}
	return out
}

// Poll receives once (waiting up to wait) and appends what came.
func (r *Responses) Poll(tb testing.TB, wait time.Duration) int {
	tb.Helper()
	out, err := r.q.Client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(r.q.URL), MaxNumberOfMessages: 10, WaitTimeSeconds: int32(wait / time.Second),
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
	})
	if err != nil {
		tb.Fatalf("receive responses: %v", err)
	}
	for _, m := range out.Messages {
		var resp jobs.Response
		if err := json.Unmarshal([]byte(aws.ToString(m.Body)), &resp); err != nil {
			tb.Fatalf("response is not JSON: %v: %s", err, aws.ToString(m.Body))
		}
		r.All = append(r.All, resp)
		r.Groups = append(r.Groups, m.Attributes[string(types.MessageSystemAttributeNameMessageGroupId)])
		if _, err := r.q.Client.DeleteMessage(context.Background(), &sqs.DeleteMessageInput{
			QueueUrl: aws.String(r.q.URL), ReceiptHandle: m.ReceiptHandle,
		}); err != nil {
			tb.Fatalf("delete response: %v", err)
		}
	}
	return len(out.Messages)
}

// WaitFinal polls until n final responses arrived or the deadline passes.
func (r *Responses) WaitFinal(tb testing.TB, n int, deadline time.Duration) []jobs.Response {
	tb.Helper()
	end := time.Now().Add(deadline)
	for len(r.Final()) < n && time.Now().Before(end) {
		r.Poll(tb, time.Second)
	}
	final := r.Final()
	if len(final) < n {
		tb.Fatalf("got %d final responses within %s, want %d: %+v", len(final), deadline, n, final)
	}
	return final
}

// Count returns how many messages the queue holds, visible and in flight.
func (q Queue) Count(tb testing.TB) (visible, inFlight int) {
	tb.Helper()
	out, err := q.Client.GetQueueAttributes(context.Background(), &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(q.URL),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible},
	})
	if err != nil {
		tb.Fatalf("queue attributes: %v", err)
	}
	visible, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)])
	inFlight, _ = strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
	return visible, inFlight
}

// SecretsManager returns a Secrets Manager client for the emulator.
func (e *Emulator) SecretsManager() *secretsmanager.Client {
	return secretsmanager.NewFromConfig(AWSConfig(), func(o *secretsmanager.Options) { o.BaseEndpoint = aws.String(e.URL) })
}

// CreateSecret stores a secret string under name.
func (e *Emulator) CreateSecret(tb testing.TB, name, value string) {
	tb.Helper()
	if _, err := e.SecretsManager().CreateSecret(context.Background(), &secretsmanager.CreateSecretInput{
		Name: aws.String(name), SecretString: aws.String(value),
	}); err != nil {
		tb.Fatalf("create secret %s: %v", name, err)
	}
}

// ECS returns an ECS client for the emulator.
func (e *Emulator) ECS() *ecs.Client {
	return ecs.NewFromConfig(AWSConfig(), func(o *ecs.Options) { o.BaseEndpoint = aws.String(e.URL) })
}

// RunTask starts a task in the emulator, as upstream's RunTask would, and
// returns its cluster and task ARNs. The cluster is named after the test.
func (e *Emulator) RunTask(tb testing.TB, cluster string) (clusterARN, taskARN string) {
	tb.Helper()
	ctx := context.Background()
	api := e.ECS()
	cl, err := api.CreateCluster(ctx, &ecs.CreateClusterInput{ClusterName: aws.String(cluster)})
	if err != nil {
		tb.Fatalf("create cluster: %v", err)
	}
	td, err := api.RegisterTaskDefinition(ctx, &ecs.RegisterTaskDefinitionInput{
		Family:               aws.String(cluster + "-worker"),
		ContainerDefinitions: []ecstypes.ContainerDefinition{{Name: aws.String("worker"), Image: aws.String("worker:test")}},
	})
	if err != nil {
		tb.Fatalf("register task definition: %v", err)
	}
	run, err := api.RunTask(ctx, &ecs.RunTaskInput{Cluster: cl.Cluster.ClusterArn, TaskDefinition: td.TaskDefinition.TaskDefinitionArn})
	if err != nil || len(run.Tasks) != 1 {
		tb.Fatalf("run task: %v", err)
	}
	return aws.ToString(cl.Cluster.ClusterArn), aws.ToString(run.Tasks[0].TaskArn)
}

// DescribeTask returns the task's last status and stopped reason.
func (e *Emulator) DescribeTask(tb testing.TB, clusterARN, taskARN string) (status, reason string) {
	tb.Helper()
	out, err := e.ECS().DescribeTasks(context.Background(), &ecs.DescribeTasksInput{Cluster: aws.String(clusterARN), Tasks: []string{taskARN}})
	if err != nil || len(out.Tasks) != 1 {
		tb.Fatalf("describe task: %v", err)
	}
	t := out.Tasks[0]
	status = aws.ToString(t.LastStatus)
	if aws.ToString(t.DesiredStatus) == "STOPPED" {
		status = "STOPPED"
	}
	return status, aws.ToString(t.StoppedReason)
}
