// Package ecstask lets the worker stop its own ECS task: it reads its task
// from the task metadata endpoint (version 4) and calls ecs:StopTask.
package ecstask

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
)

// Task names a running ECS task.
type Task struct {
	Cluster string `json:"Cluster"`
	TaskARN string `json:"TaskARN"`
	// ServiceName is the ECS service that started the task, empty for a
	// standalone task; ECS documents it for tasks on EC2 (agent 1.63.1 or
	// later), not on Fargate, where ECS_TASK_MODE says it.
	ServiceName string `json:"ServiceName,omitempty"`
}

// MetadataTimeout bounds the metadata request.
const MetadataTimeout = 5 * time.Second

// FromMetadata reads the task from $ECS_CONTAINER_METADATA_URI_V4/task.
func FromMetadata(ctx context.Context, client *http.Client, metadataURI string) (Task, error) {
	if client == nil {
		client = http.DefaultClient
	}
	ctx, cancel := context.WithTimeout(ctx, MetadataTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(metadataURI, "/")+"/task", nil)
	if err != nil {
		return Task{}, fmt.Errorf("task metadata request: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return Task{}, fmt.Errorf("get task metadata: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Task{}, fmt.Errorf("read task metadata: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return Task{}, fmt.Errorf("get task metadata: status %d", resp.StatusCode)
	}
	var t Task
	if err := json.Unmarshal(body, &t); err != nil {
		return Task{}, fmt.Errorf("decode task metadata: %w", err)
	}
	if t.Cluster == "" || t.TaskARN == "" {
		return Task{}, errors.New("task metadata has no Cluster or TaskARN")
	}
	return t, nil
}

// Stopper is the ECS call Stop makes; *ecs.Client implements it.
type Stopper interface {
	StopTask(ctx context.Context, in *ecs.StopTaskInput, opts ...func(*ecs.Options)) (*ecs.StopTaskOutput, error)
}

// MaxReasonLen is the longest reason StopTask accepts.
const MaxReasonLen = 255

// Stop asks ECS to stop the task, giving reason (cut to 255 characters).
func Stop(ctx context.Context, api Stopper, t Task, reason string) error {
	if len(reason) > MaxReasonLen {
		reason = reason[:MaxReasonLen]
	}
	_, err := api.StopTask(ctx, &ecs.StopTaskInput{Cluster: aws.String(t.Cluster), Task: aws.String(t.TaskARN), Reason: aws.String(reason)})
	if err != nil {
		return fmt.Errorf("stop task %s: %w", t.TaskARN, err)
	}
	return nil
}
