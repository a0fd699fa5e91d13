package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"github.com/webordinary/claude-code-astro/internal/config"
)

// TestCheckQueueEndpoints: a queue URL the SDK would not reach as written
// (an emulator's, with no endpoint set, which would send the calls to real
// AWS; an AWS queue of another region) is refused before any call, naming
// the variable to set.
func TestCheckQueueEndpoints(t *testing.T) {
	const local = "http://127.0.0.1:4566/000000000000/jobs.fifo"
	const aws1 = "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs.fifo"
	tests := []struct {
		name       string
		env        map[string]string
		region     string
		base       string
		jobQ       string
		wantVar    string // "" for no error
		wantReason string
	}{
		{"emulator without endpoint", nil, "us-east-1", "", local, "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL=http://127.0.0.1:4566"},
		{"localhost without endpoint", nil, "us-east-1", "", "http://localhost:4566/000000000000/q", "AWS_ENDPOINT_URL", "on this machine"},
		{"compose host without endpoint", nil, "us-east-1", "", "http://localstack:4566/000000000000/q", "AWS_ENDPOINT_URL", "not an AWS queue"},
		{"emulator with endpoint", nil, "us-east-1", "http://127.0.0.1:4566", local, "", ""},
		{"emulator with the SQS endpoint", map[string]string{"AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:4566"}, "us-east-1", "", local, "", ""},
		{"endpoint not a URL", nil, "us-east-1", "127.0.0.1:4566", local, "AWS_ENDPOINT_URL", "not an http(s) URL"},
		{"AWS queue, its region", nil, "eu-west-1", "", aws1, "", ""},
		{"AWS queue, another region", nil, "us-east-1", "", aws1, "AWS_REGION", "AWS_REGION=eu-west-1"},
		{"AWS queue, no region", nil, "", "", aws1, "AWS_REGION", "AWS_REGION=eu-west-1"},
		{"legacy AWS host", nil, "eu-west-1", "", "https://eu-west-1.queue.amazonaws.com/123456789012/jobs", "", ""},
		{"not a URL", nil, "us-east-1", "", "jobs", "JOB_QUEUE_URL", "not a queue URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := aws.Config{Region: tt.region}
			if tt.base != "" {
				cfg.BaseEndpoint = aws.String(tt.base)
			}
			respQ := tt.jobQ
			err := checkQueueEndpoints(func(k string) string { return tt.env[k] }, cfg,
				map[string]string{"JOB_QUEUE_URL": tt.jobQ, "RESPONSE_QUEUE_URL": respQ})
			if tt.wantVar == "" {
				if err != nil {
					t.Errorf("refused: %v", err)
				}
				return
			}
			var fe *config.FieldError
			if !errors.As(err, &fe) || fe.Var != tt.wantVar || !strings.Contains(fe.Reason, tt.wantReason) || !errors.Is(err, config.ErrInvalid) {
				t.Errorf("err = %v; want %s: ...%s...", err, tt.wantVar, tt.wantReason)
			}
		})
	}
}

// TestRunWithoutCredentialsStopsAtStart: `worker run` with an emulator's
// queue and no AWS credentials anywhere stops at once with one line saying
// what to set, instead of retrying for ever. (The instance metadata service
// is turned off: the test sends nothing off this machine.)
func TestRunWithoutCredentialsStopsAtStart(t *testing.T) {
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "", "AWS_PROFILE": "",
		"AWS_CONFIG_FILE": "/nonexistent/config", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "", "AWS_CONTAINER_CREDENTIALS_FULL_URI": "", "AWS_WEB_IDENTITY_TOKEN_FILE": "",
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_REGION": "us-east-1",
	} {
		t.Setenv(k, v)
	}
	// The checks themselves, first: no credentials is an error naming them.
	awsCfg, err := awsconfig.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := checkCredentials(context.Background(), awsCfg); err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Fatalf("checkCredentials without credentials = %v", err)
	}

	env := map[string]string{
		"JOB_QUEUE_URL": "http://127.0.0.1:9/000000000000/jobs.fifo", "RESPONSE_QUEUE_URL": "http://127.0.0.1:9/000000000000/responses.fifo",
		"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "WORKSPACE_PATH": t.TempDir(),
	}
	var stdout, stderr bytes.Buffer
	m := &Main{Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return env[k] }}
	code := m.Run(context.Background(), []string{"run"})
	out := strings.TrimSpace(stderr.String())
	if code != 1 || strings.Count(out, "\n") != 0 || !strings.Contains(out, "AWS_ACCESS_KEY_ID") || !strings.Contains(out, "no AWS credentials") {
		t.Errorf("worker run without credentials: exit %d, stderr:\n%s\nwant exit 1 and one line naming AWS_ACCESS_KEY_ID", code, out)
	}

	// With credentials, an emulator's queue and no endpoint: one line
	// naming AWS_ENDPOINT_URL, before any call.
	t.Setenv("AWS_ACCESS_KEY_ID", "local")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "local")
	t.Setenv("AWS_ENDPOINT_URL", "")
	delete(env, "AWS_ENDPOINT_URL")
	stderr.Reset()
	code = m.Run(context.Background(), []string{"run"})
	out = strings.TrimSpace(stderr.String())
	if code != 1 || strings.Count(out, "\n") != 0 || !strings.Contains(out, "AWS_ENDPOINT_URL: not set") {
		t.Errorf("worker run with a local queue and no endpoint: exit %d, stderr:\n%s", code, out)
	}
}
