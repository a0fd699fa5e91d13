package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"
	"github.com/google/uuid"

	"github.com/webordinary/claude-code-astro/jobs"
)

// SendCommand is `worker send`: it puts one job on the job queue, as an
// upstream service would, and with -wait prints its answer.
type SendCommand struct {
	*Main
}

// Run sends the job described by the flags.
func (c *SendCommand) Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("worker send", flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	var job jobs.Job
	typ := fs.String("type", "execute", "job `type`: \"init\", \"execute\", \"cancel\", \"revert\" or \"preview\"")
	fs.StringVar(&job.JobID, "job-id", "", "`job` id (default: a new UUID)")
	fs.StringVar(&job.ClientID, "client", "", "client `id` (required)")
	fs.StringVar(&job.UserID, "user", "", "user `id` (required)")
	fs.StringVar(&job.ThreadID, "thread", "", "thread `id` (required but for cancel; preview: default the current thread)")
	fs.StringVar(&job.RepoURL, "repo", "", "init: repository `URL` (default: the worker's REPO_URL)")
	fs.StringVar(&job.BaseBranch, "base", "", "init: the `branch` a new thread starts from")
	fs.StringVar(&job.FromThreadID, "from-thread", "", "init: fork this `thread` (its branch head and its agent session)")
	fs.StringVar(&job.TargetJobID, "target", "", "cancel: the `job` id to stop")
	fs.StringVar(&job.ToCommit, "to-commit", "", "revert: undo the thread's job commits after this `commit`")
	fs.IntVar(&job.Steps, "steps", 0, "revert: undo the thread's last `N` job commits")
	fs.StringVar(&job.Instruction, "instruction", "", "execute: the instruction `text`: what the agent should do")
	mode := fs.String("mode", "", "execute: `mode`, \"execute\" (default) or \"plan\" (read-only)")
	queue := fs.String("queue", "", "job queue `URL` (default: JOB_QUEUE_URL, or the running worker local's)")
	responses := fs.String("responses", "", "response queue `URL` (default: RESPONSE_QUEUE_URL, or the running worker local's)")
	endpoint := fs.String("endpoint", "", "AWS endpoint `URL` (default: AWS_ENDPOINT_URL, or the running worker local's)")
	state := fs.String("local-state", localStateFile, "the `file` worker local writes its queues to")
	wait := fs.Duration("wait", 0, "wait this `long` for the final response and print it (0: do not wait)")
	fs.Usage = func() {
		fmt.Fprintln(c.Stderr, "Usage: worker send -type init|execute|cancel|revert|preview -client C -user U [-thread T] [-instruction TEXT] [-target JOB] [-steps N] [-wait 5m]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	job.Type, job.Mode = jobs.Type(*typ), jobs.Mode(*mode)
	if job.JobID == "" {
		job.JobID = uuid.NewString()
	}
	body, err := json.Marshal(job)
	if err != nil {
		return err
	}
	// Check it as the worker will, so a typo is caught here.
	if _, err := jobs.Decode(body, job.JobID); err != nil {
		return err
	}

	target := sendTarget{JobQueueURL: c.Getenv("JOB_QUEUE_URL"), ResponseQueueURL: c.Getenv("RESPONSE_QUEUE_URL"), Endpoint: c.Getenv("AWS_ENDPOINT_URL")}
	if target.JobQueueURL == "" {
		if b, err := os.ReadFile(*state); err == nil {
			if err := json.Unmarshal(b, &target); err != nil {
				return fmt.Errorf("read %s: %w", *state, err)
			}
		}
	}
	for _, f := range []struct{ flag, dst *string }{{queue, &target.JobQueueURL}, {responses, &target.ResponseQueueURL}, {endpoint, &target.Endpoint}} {
		if *f.flag != "" {
			*f.dst = *f.flag
		}
	}
	if target.JobQueueURL == "" {
		return errors.New("no job queue: set JOB_QUEUE_URL or -queue, or start `worker local` first")
	}
	client, err := c.sqsClient(ctx, target)
	if err != nil {
		return err
	}

	in := &sqs.SendMessageInput{QueueUrl: aws.String(target.JobQueueURL), MessageBody: aws.String(string(body))}
	if strings.HasSuffix(target.JobQueueURL, ".fifo") {
		group := job.UserKey()
		if job.Type == jobs.TypeCancel {
			group += jobs.ControlGroupSuffix // never behind the job it stops
		}
		in.MessageGroupId = aws.String(group)
		in.MessageDeduplicationId = aws.String(job.JobID)
	}
	if _, err := client.SendMessage(ctx, in); err != nil {
		return fmt.Errorf("send the job: %w", err)
	}
	fmt.Fprintf(c.Stderr, "sent %s job %s\n", job.Type, job.JobID)
	if *wait <= 0 {
		fmt.Fprintln(c.Stdout, job.JobID)
		return nil
	}
	if target.ResponseQueueURL == "" {
		return errors.New("-wait needs the response queue: set RESPONSE_QUEUE_URL or -responses")
	}
	resp, err := c.await(ctx, client, target.ResponseQueueURL, job.JobID, *wait)
	if err != nil {
		return err
	}
	out, _ := json.MarshalIndent(resp, "", "  ")
	fmt.Fprintln(c.Stdout, string(out))
	if resp.Status != jobs.StatusSucceeded {
		if resp.Error == nil {
			return fmt.Errorf("job %s %s", job.JobID, resp.Status)
		}
		return fmt.Errorf("job %s failed: %s: %s", job.JobID, resp.Error.Code, resp.Error.Message)
	}
	return nil
}

// sendTarget is where send puts the job; `worker local` writes one to disk.
type sendTarget struct {
	Endpoint         string `json:"endpoint"`
	Region           string `json:"region"`
	JobQueueURL      string `json:"jobQueueUrl"`
	ResponseQueueURL string `json:"responseQueueUrl"`
	PreviewURL       string `json:"previewUrl,omitempty"`
}

func (c *SendCommand) sqsClient(ctx context.Context, t sendTarget) (*sqs.Client, error) {
	var opts []func(*awsconfig.LoadOptions) error
	if t.Region != "" {
		opts = append(opts, awsconfig.WithRegion(t.Region))
	}
	if t.Endpoint != "" && c.Getenv("AWS_ACCESS_KEY_ID") == "" {
		// A local emulator takes any credentials.
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("local", "local", "")))
	}
	if c.Getenv("AWS_REGION") == "" && t.Region == "" {
		opts = append(opts, awsconfig.WithRegion("us-east-1"))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	return sqs.NewFromConfig(cfg, func(o *sqs.Options) {
		if t.Endpoint != "" {
			o.BaseEndpoint = aws.String(t.Endpoint)
		}
	}), nil
}

// unreachable reports whether err is a failure to reach the endpoint at
// all (nothing listens, the connection broke), which can heal.
func unreachable(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.ErrUnexpectedEOF)
}

// missingQueue reports whether err says the queue does not exist (the
// emulator and SQS's two protocols name it differently: match the code).
func missingQueue(err error) bool {
	var api smithy.APIError
	return errors.As(err, &api) && (api.ErrorCode() == "AWS.SimpleQueueService.NonExistentQueue" || api.ErrorCode() == "QueueDoesNotExist")
}

// await reads the response queue until the job's final response arrives,
// printing its progress. Responses to other jobs are left on the queue.
func (c *SendCommand) await(ctx context.Context, client *sqs.Client, queueURL, jobID string, wait time.Duration) (jobs.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	told := false
	for {
		out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(queueURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 5,
		})
		if ctx.Err() != nil {
			return jobs.Response{}, fmt.Errorf("no final response for job %s within %s", jobID, wait)
		}
		if err != nil && (unreachable(err) || told && missingQueue(err)) {
			// `worker local` restarting, a network blip: the answer waits
			// in the queue; go on waiting. A restarted worker local answers
			// before it has put its queues back: no queue, right after
			// none could be reached, is the same restart.
			if !told {
				fmt.Fprintf(c.Stderr, "the response queue is unreachable (%v); still waiting\n", err)
				told = true
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		if err != nil {
			return jobs.Response{}, fmt.Errorf("read the response queue: %w", err)
		}
		if told {
			fmt.Fprintln(c.Stderr, "the response queue is reachable again")
			told = false
		}
		others := false
		for _, m := range out.Messages {
			var r jobs.Response
			if json.Unmarshal([]byte(aws.ToString(m.Body)), &r) != nil || r.JobID != jobID {
				others = true
				_, _ = client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
					QueueUrl: aws.String(queueURL), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0,
				}) // best effort: it comes back after its visibility timeout anyway
				continue
			}
			if _, err := client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(queueURL), ReceiptHandle: m.ReceiptHandle}); err != nil {
				return jobs.Response{}, fmt.Errorf("delete the response: %w", err)
			}
			if r.Status == jobs.StatusProgress {
				if r.Progress != nil {
					fmt.Fprintf(c.Stderr, "progress: %s %s %s\n", r.Progress.Kind, r.Progress.Tool, r.Progress.Summary)
				}
				continue
			}
			return r, nil
		}
		if others {
			time.Sleep(200 * time.Millisecond) // let the other job's reader have them
		}
	}
}
