package main

// Checks made before the worker's first AWS call, so that a configuration
// that would send its calls to the wrong place (or nowhere) stops the worker
// at start with one line naming what to fix, rather than a worker retrying
// for ever against real AWS.

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/webordinary/claude-code-astro/internal/config"
)

// credentialsTimeout bounds finding the AWS credentials at start.
const credentialsTimeout = 10 * time.Second

// checkQueueEndpoints checks that the SDK will send the queues' calls where
// their URLs are: it sends SQS calls to AWS_ENDPOINT_URL_SQS or the
// configuration's endpoint (AWS_ENDPOINT_URL), or else to AWS's endpoint of
// the region, whatever host a queue URL names. With an endpoint set, any
// queue URL goes (emulators name queues after hosts of their own). It makes
// no call.
func checkQueueEndpoints(getenv func(string) string, awsCfg aws.Config, queues map[string]string) error {
	endpoint, endpointVar := getenv("AWS_ENDPOINT_URL_SQS"), "AWS_ENDPOINT_URL_SQS"
	if endpoint == "" {
		endpoint, endpointVar = aws.ToString(awsCfg.BaseEndpoint), "AWS_ENDPOINT_URL"
	}
	if endpoint != "" {
		if e, err := url.Parse(endpoint); err != nil || e.Host == "" || (e.Scheme != "http" && e.Scheme != "https") {
			return &config.FieldError{Var: endpointVar, Reason: fmt.Sprintf("not an http(s) URL: %q", endpoint)}
		}
	}
	for _, name := range []string{"JOB_QUEUE_URL", "RESPONSE_QUEUE_URL"} {
		raw := queues[name]
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return &config.FieldError{Var: name, Reason: fmt.Sprintf("not a queue URL: %q", raw)}
		}
		if endpoint != "" {
			continue
		}
		where := "not an AWS queue"
		if isLoopback(u.Hostname()) {
			where = "on this machine"
		}
		region, onAWS := awsQueueRegion(u.Hostname())
		switch {
		case !onAWS:
			return &config.FieldError{Var: "AWS_ENDPOINT_URL", Reason: fmt.Sprintf(
				"not set, but %s is %s (%s): the worker would send its calls to AWS instead; set AWS_ENDPOINT_URL=%s://%s (the emulator's address)",
				name, where, u.Host, u.Scheme, u.Host)}
		case region != awsCfg.Region:
			return &config.FieldError{Var: "AWS_REGION", Reason: fmt.Sprintf("%q, but %s is in %s: set AWS_REGION=%s", awsCfg.Region, name, region, region)}
		}
	}
	return nil
}

// awsQueueRegion returns the region of an SQS host name of AWS's
// (sqs.REGION.amazonaws.com, REGION.queue.amazonaws.com, and their .cn
// forms).
func awsQueueRegion(host string) (string, bool) {
	host = strings.ToLower(host)
	for _, suffix := range []string{".amazonaws.com", ".amazonaws.com.cn"} {
		rest, ok := strings.CutSuffix(host, suffix)
		if !ok {
			continue
		}
		if region, ok := strings.CutPrefix(rest, "sqs."); ok && region != "" && !strings.Contains(region, ".") {
			return region, true
		}
		if region, ok := strings.CutSuffix(rest, ".queue"); ok && region != "" && !strings.Contains(region, ".") {
			return region, true
		}
		if region, ok := strings.CutPrefix(rest, "sqs-fips."); ok && region != "" && !strings.Contains(region, ".") {
			return region, true
		}
	}
	return "", false
}

// isLoopback reports whether host names this machine.
func isLoopback(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// checkCredentials finds the AWS credentials the worker's calls will be
// signed with, so that having none stops the worker at start.
func checkCredentials(ctx context.Context, awsCfg aws.Config) error {
	const fix = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (any values for a local emulator), or AWS_PROFILE, or give the task an IAM role"
	if awsCfg.Credentials == nil {
		return &config.FieldError{Var: "AWS_ACCESS_KEY_ID", Reason: "no AWS credentials: " + fix}
	}
	ctx, cancel := context.WithTimeout(ctx, credentialsTimeout)
	defer cancel()
	if _, err := awsCfg.Credentials.Retrieve(ctx); err != nil {
		if ctx.Err() != nil && ctx.Err() != context.DeadlineExceeded {
			return ctx.Err()
		}
		first, _, _ := strings.Cut(err.Error(), "\n")
		return &config.FieldError{Var: "AWS_ACCESS_KEY_ID", Reason: fmt.Sprintf("no AWS credentials found (%s): %s", first, fix)}
	}
	return nil
}
